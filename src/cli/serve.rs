//! `add` and `recover`: check everything, then fork a server (or stay in the
//! foreground) and return once the device is live — or say why it is not.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use pmem_stack::backing::Backing;
use pmem_stack::daemon::{self, Forked, Reporter, StartOutcome};
use pmem_stack::engine::Engine;
use pmem_stack::format::{Geometry, SuperBlock};
use pmem_stack::metadata;
use pmem_stack::registry::{Entry, Registry};
use pmem_stack::ublk::control::{self, Attach, Granted, QueueConfig};
use pmem_stack::volume::{self, AddPlan, FormatPlan};

use super::args::{AddArgs, RecoverArgs, parse_device_id};
use super::devices::{DeviceJson, device_json};
use super::{open_exclusive, print_json};

/// How long `add` waits for the server before giving up on it.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the server runs and how it announces the live device.
#[derive(Clone, Copy)]
enum ServerMode {
    /// Forked into the background: reports through the handshake pipe and
    /// logs to the device's log file.
    Detached,
    /// Attached to the terminal: prints the device itself (as JSON with
    /// `--json`) and logs to stderr.
    Foreground { json: bool },
}

/// What the server serves.
enum Volume {
    /// A formatted volume.
    Existing(SuperBlock),
    /// A blank backing to format once the kernel granted the device.
    Format(FormatPlan),
}

pub fn add(args: &AddArgs) -> Result<ExitCode> {
    let options = args.layout.options();
    let context = || format!("cannot add {}", args.backing.display());
    // Fail before touching the backing when ublk cannot work here.
    control::check_driver().with_context(context)?;
    let registry = Registry::system();
    let backing = open_exclusive(&args.backing, &registry)?;
    let volume = match volume::plan_add(&backing, &options, args.force).with_context(context)? {
        AddPlan::Existing {
            superblock,
            metadata,
        } => {
            for report in [&metadata.primary, &metadata.backup] {
                if report.state != metadata::CopyState::Ok {
                    eprintln!(
                        "warning: the {} super block copy is {}; run 'pmem-stack check --repair' once the device is deleted",
                        report.slot.name(),
                        metadata::describe_copy(report)
                    );
                }
            }
            Volume::Existing(superblock)
        }
        AddPlan::Format(plan) => {
            for warning in &plan.plan.warnings {
                eprintln!("warning: {warning}");
            }
            Volume::Format(plan)
        }
    };
    let defaults = QueueConfig::default_for_host();
    let cfg = QueueConfig {
        queues: args.queues.unwrap_or(defaults.queues),
        depth: args.depth.unwrap_or(defaults.depth),
    };
    launch(
        Attach::Add { id: args.id },
        backing,
        volume,
        cfg,
        args.foreground,
        args.json,
        &registry,
    )
    .with_context(context)
}

pub fn recover(args: &RecoverArgs) -> Result<ExitCode> {
    let id = parse_device_id(&args.device)
        .ok_or_else(|| anyhow!("'{}' is not a device: give N or /dev/ublkbN", args.device))?;
    let context = || format!("cannot recover /dev/ublkb{id}");
    control::check_driver().with_context(context)?;
    if !control::device_ids().contains(&id) {
        bail!(
            "cannot recover /dev/ublkb{id}: it does not exist ('pmem-stack list' shows the devices)"
        );
    }
    let registry = Registry::system();
    let entry = registry
        .load(id)
        .with_context(context)?
        .ok_or_else(|| anyhow!("no pmem-stack record of /dev/ublkb{id} in {}: recover only re-attaches devices pmem-stack served", registry.dir().display()))
        .with_context(context)?;
    let info = control::device_info(id).with_context(context)?;
    if info.state == control::DeviceState::Live && !daemon::process_gone(info.pid) {
        bail!(
            "/dev/ublkb{id}: its server (pid {}) is running; there is nothing to recover",
            info.pid
        );
    }
    // Not open_exclusive(): that refuses exactly this case, a backing attached
    // to a device whose server died.
    let backing = Backing::open(&entry.backing, pmem_stack::backing::Access::Exclusive)
        .with_context(context)?;
    if backing.identity().to_key() != entry.identity {
        bail!(
            "cannot recover /dev/ublkb{id}: {} is no longer the backing it served ({})",
            entry.backing.display(),
            entry.identity
        );
    }
    let (sb, _) = metadata::open_volume(&backing).with_context(context)?;
    if sb.uuid.to_string() != entry.uuid || sb.geometry.data_size() != entry.data_size {
        bail!(
            "cannot recover /dev/ublkb{id}: {} now holds volume {} (served: {}); refusing to serve different data",
            entry.backing.display(),
            sb.uuid,
            entry.uuid
        );
    }
    let cfg = QueueConfig {
        queues: info.queues,
        depth: info.depth,
    };
    launch(
        Attach::Recover { id },
        backing,
        Volume::Existing(sb),
        cfg,
        args.foreground,
        args.json,
        &registry,
    )
    .with_context(context)
}

/// Run the server here (foreground) or in a forked child, and report.
fn launch(
    attach: Attach,
    backing: Backing,
    volume: Volume,
    cfg: QueueConfig,
    foreground: bool,
    json: bool,
    registry: &Registry,
) -> Result<ExitCode> {
    if foreground {
        run_server(
            attach,
            backing,
            volume,
            cfg,
            Reporter::foreground(),
            registry.clone(),
            ServerMode::Foreground { json },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    match daemon::fork_server().context("starting the server")? {
        Forked::Child(reporter) => {
            // The server: its outcome was reported through the pipe; the exit
            // status is for the log only.
            match run_server(
                attach,
                backing,
                volume,
                cfg,
                reporter,
                registry.clone(),
                ServerMode::Detached,
            ) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(err) => {
                    log::error!("{err:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Forked::Parent(handshake) => {
            // The child holds the backing now.
            drop(backing);
            let child = handshake.child();
            let outcome = handshake
                .wait(START_TIMEOUT)
                .context("waiting for the server")?;
            match outcome {
                StartOutcome::Live { id } => {
                    announce(registry, id, child, json)?;
                    Ok(ExitCode::SUCCESS)
                }
                StartOutcome::Failed { id, reason } => {
                    cleanup(attach, id, child);
                    Err(anyhow!("{reason}"))
                }
                StartOutcome::Died { id } => {
                    cleanup(attach, id, child);
                    Err(anyhow!(
                        "the server exited before the device was live{}",
                        log_hint(registry, id)
                    ))
                }
                StartOutcome::TimedOut { id } => {
                    cleanup(attach, id, child);
                    Err(anyhow!(
                        "the server did not bring the device up within {} s and was stopped{}",
                        START_TIMEOUT.as_secs(),
                        log_hint(registry, id)
                    ))
                }
            }
        }
    }
}

/// Print the live device: its path, or with `--json` its `list` object.
fn announce(registry: &Registry, id: u32, pid: i32, json: bool) -> Result<()> {
    if !json {
        println!("/dev/ublkb{id}");
        return Ok(());
    }
    match registry.load(id) {
        Ok(Some(entry)) => print_json(&device_json(&entry)),
        _ => print_json(&DeviceJson::minimal(id, pid)),
    }
}

fn log_hint(registry: &Registry, id: Option<u32>) -> String {
    match id {
        Some(id) => format!(" (see {})", registry.log_path(id).display()),
        None => String::new(),
    }
}

/// A new device that never went live must not stay behind. (A device being
/// recovered stays: it is the user's, and quiesced again.) Only a device the
/// kernel records as added by our server is removed.
fn cleanup(attach: Attach, id: Option<u32>, server: i32) {
    if let (Attach::Add { .. }, Some(id)) = (attach, id) {
        if control::device_info(id).is_ok_and(|info| info.pid == server) {
            if let Err(err) = control::delete(id) {
                eprintln!("warning: could not remove the half-made /dev/ublkb{id}: {err}");
            }
        }
    }
}

fn registry_entry(
    backing: &Backing,
    sb: &SuperBlock,
    granted: &Granted,
    log: Option<PathBuf>,
) -> Entry {
    let g: &Geometry = &sb.geometry;
    Entry {
        id: granted.id,
        backing: backing.path().to_path_buf(),
        identity: backing.identity().to_key(),
        uuid: sb.uuid.to_string(),
        pid: i32::try_from(std::process::id()).unwrap_or(0),
        queues: granted.queues,
        depth: granted.depth,
        user_copy: granted.user_copy,
        recovery: granted.recovery,
        mode: g.mode().to_string(),
        reserve_offset: g.reserve_offset(),
        reserve_size: g.reserve_size(),
        data_offset: g.data_offset(),
        data_size: g.data_size(),
        log,
    }
}

/// The server itself, until its device stops.
fn run_server(
    attach: Attach,
    backing: Backing,
    volume: Volume,
    cfg: QueueConfig,
    reporter: Reporter,
    registry: Registry,
    mode: ServerMode,
) -> Result<()> {
    let detached = matches!(mode, ServerMode::Detached);
    if let Err(err) = daemon::private_mount_namespace() {
        log::warn!(
            "no private mount namespace ({err}); do not let this server outlive a mount of its device"
        );
    }

    let lbs = match &volume {
        Volume::Existing(sb) => sb.geometry.logical_block_size(),
        Volume::Format(plan) => plan.plan.geometry.logical_block_size(),
    };
    let backing = Arc::new(backing);
    let reporter = Arc::new(Mutex::new(reporter));
    // The device id, once the kernel granted it and the volume is ready.
    let served: Arc<Mutex<Option<u32>>> = Arc::new(Mutex::new(None));

    let prepare = {
        let backing = Arc::clone(&backing);
        let reporter = Arc::clone(&reporter);
        let served = Arc::clone(&served);
        let registry = registry.clone();
        move |granted: &Granted| -> Result<Arc<Engine>, Box<dyn std::error::Error + Send + Sync>> {
            let mut rep = reporter.lock().unwrap_or_else(PoisonError::into_inner);
            rep.added(granted.id);
            if detached {
                // From here on stderr is the device's log file, which records
                // the server's life at info level (unless RUST_LOG says more).
                match rep.log_to(&registry.log_path(granted.id)) {
                    Ok(()) if std::env::var_os("RUST_LOG").is_none() => {
                        log::set_max_level(log::LevelFilter::Info);
                    }
                    Ok(()) => {}
                    Err(err) => log::warn!("cannot open the log file: {err}"),
                }
            }
            drop(rep);
            let sb = match volume {
                Volume::Existing(sb) => sb,
                Volume::Format(plan) => {
                    let sb =
                        metadata::write_new_volume(&*backing, plan.plan.geometry, plan.generation)?;
                    log::info!("formatted {}: volume {}", backing.path().display(), sb.uuid);
                    sb
                }
            };
            let engine = Engine::new(Arc::clone(&backing), &sb.geometry)?;
            // Recorded before the device goes live, so `list`, `del` and
            // `recover` know it from the first moment; failing to record is
            // a failed start, not a device nobody can manage.
            let log = detached.then(|| registry.log_path(granted.id));
            let entry = registry_entry(&backing, &sb, granted, log);
            registry.save(&entry).map_err(|err| {
                format!(
                    "cannot record the device in {}: {err}",
                    registry.dir().display()
                )
            })?;
            *served.lock().unwrap_or_else(PoisonError::into_inner) = Some(granted.id);
            log::info!(
                "/dev/ublkb{}: serving {} bytes at offset {} of {} ({} queues x {}, {})",
                granted.id,
                sb.geometry.data_size(),
                sb.geometry.data_offset(),
                backing.path().display(),
                granted.queues,
                granted.depth,
                if granted.user_copy {
                    "user copy"
                } else {
                    "bounce buffers"
                }
            );
            Ok(Arc::new(engine))
        }
    };

    let on_live = {
        let reporter = Arc::clone(&reporter);
        let registry = registry.clone();
        move |granted: &Granted| {
            if let ServerMode::Foreground { json } = mode {
                let pid = i32::try_from(std::process::id()).unwrap_or(0);
                if let Err(err) = announce(&registry, granted.id, pid, json) {
                    log::error!("cannot print the device: {err:#}");
                }
            }
            log::info!("/dev/ublkb{}: live", granted.id);
            reporter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .live(granted.id);
        }
    };

    let result = control::serve(attach, cfg, lbs, prepare, on_live);
    let id = *served.lock().unwrap_or_else(PoisonError::into_inner);
    // A stopped server's device is gone (or going): forget it. A recovered
    // device whose new server failed to start stays quiesced and recorded.
    let forget = result.is_ok() || matches!(attach, Attach::Add { .. });
    if let (Some(id), true) = (id, forget) {
        let _ = registry.remove(id);
    }
    match result {
        Ok(()) => Ok(()),
        Err(err) => {
            reporter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .failed(&err.to_string());
            Err(err.into())
        }
    }
}
