//! A server's life: from a checked plan to a live `/dev/ublkbN` and back.
//!
//! `add` and `recover` decide *what* to serve in the CLI (which backing, which
//! volume, which queues); everything from there on is here, so the order of
//! the steps that make a device trustworthy is written once:
//!
//! 1. the kernel grants the device (the backing is still untouched, so a
//!    device that cannot be created never costs a write);
//! 2. whoever started the server learns the id ([`Lifecycle::added`]), so a
//!    failure from here on can be cleaned up;
//! 3. a blank backing is formatted, the engine maps the data area, and the
//!    device is recorded in the [`Registry`] *before* it goes live, so `list`,
//!    `del` and `recover` know it from its first moment;
//! 4. the device goes live ([`Lifecycle::live`]) and is served until stopped;
//!    every acknowledged write is made durable before the server exits.
//!
//! The [`Lifecycle`] is how a server talks to whoever started it: the
//! background server reports over the daemon's handshake pipe
//! ([`Detached`]); a foreground server's CLI prints the device itself.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::backing::direct_io::DirectBacking;
use crate::backing::{Backing, BackingError, Persistence};
use crate::daemon::{self, Forked, Reporter, StartOutcome};
use crate::engine::Engine;
use crate::format::SuperBlock;
use crate::metadata::{self, MetadataError};
use crate::registry::{Entry, Registry};
use crate::remedy::{HasRemedy, Remedy};
use crate::ublk::control::{self, Attach, Granted, PrepareFailed, QueueConfig, ServeError};
use crate::ublk::features::{IoPath, WriteCache};
use crate::ublk::run::{self, DataPlane};
use crate::volume::FormatPlan;

/// How long the caller of a background server waits for its device.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What the server serves.
#[derive(Debug)]
pub enum Volume {
    /// A formatted volume (boxed: a super block is about 1 KiB).
    Existing(Box<SuperBlock>),
    /// A blank backing, formatted once the kernel granted the device.
    Format(FormatPlan),
}

impl Volume {
    fn logical_block_size(&self) -> crate::format::LogicalBlockSize {
        match self {
            Volume::Existing(sb) => sb.geometry.logical_block_size(),
            Volume::Format(plan) => plan.plan.geometry.logical_block_size(),
        }
    }
}

/// Everything one server needs: what to attach to, what to serve, and how.
#[derive(Debug)]
pub struct ServeSpec {
    /// A new device, or a device whose server died.
    pub attach: Attach,
    /// The backing, opened exclusively.
    pub backing: Backing,
    /// The volume on it.
    pub volume: Volume,
    /// Queues and depth.
    pub queues: QueueConfig,
}

/// How a server tells whoever started it how it goes.
pub trait Lifecycle: Send {
    /// The kernel has device `id`; nothing is served yet. Returns the log
    /// file the server writes to from now on, if it has one.
    fn added(&mut self, id: u32) -> Option<PathBuf>;
    /// The device serves I/O; `entry` is its registry record.
    fn live(&mut self, entry: &Entry);
    /// The server failed before or while serving; `remedy` is the way out
    /// the error knows, if any.
    fn failed(&mut self, reason: &str, remedy: Option<Remedy>);
}

/// Why a server did not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("starting the server: {0}")]
    Fork(std::io::Error),
    #[error("waiting for the server: {0}")]
    Handshake(std::io::Error),
    #[error("{reason}")]
    Reported {
        reason: String,
        remedy: Option<Remedy>,
    },
    #[error("the server exited before the device was live{log}")]
    Died { log: String },
    #[error("the server did not bring the device up within {secs} s and was stopped{log}")]
    TimedOut { secs: u64, log: String },
}

impl HasRemedy for ServerError {
    fn remedy(&self) -> Option<Remedy> {
        match self {
            ServerError::Serve(err) => err.remedy(),
            ServerError::Reported { remedy, .. } => *remedy,
            _ => None,
        }
    }
}

/// A background server's life cycle: reports over the handshake pipe, and
/// from the moment it has a device, logs to that device's log file.
#[derive(Debug)]
pub struct Detached {
    reporter: Reporter,
    registry: Registry,
}

impl Lifecycle for Detached {
    fn added(&mut self, id: u32) -> Option<PathBuf> {
        self.reporter.added(id);
        let path = self.registry.log_path(id);
        // From here on stderr is the device's log file, which records the
        // server's life at info level (unless RUST_LOG says more).
        match self
            .registry
            .open_log(id)
            .and_then(|log| self.reporter.log_to(&log))
        {
            Ok(()) => {
                log_its_life();
                Some(path)
            }
            Err(err) => {
                log::warn!("cannot open the log file {}: {err}", path.display());
                None
            }
        }
    }

    fn live(&mut self, entry: &Entry) {
        self.reporter.live(entry.id);
    }

    fn failed(&mut self, reason: &str, remedy: Option<Remedy>) {
        self.reporter
            .failed(reason, remedy.map(Remedy::name).as_deref());
    }
}

/// From the moment a server has a device, it logs its life at info level
/// (formatted, live, recovered, stopped) — to its log file in the
/// background, to stderr (the journal, under systemd) in the foreground —
/// unless `RUST_LOG` chose a level. The command-line tool stays at warnings.
pub fn log_its_life() {
    if std::env::var_os("RUST_LOG").is_none() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// What [`spawn`] returns, in each of the two processes it leaves.
#[derive(Debug)]
pub enum Spawned {
    /// The caller: the server runs in the background and its device is live.
    Live {
        /// N of `/dev/ublkbN`.
        id: u32,
        /// The server's pid.
        pid: i32,
    },
    /// The forked server, which has served and stopped: exit with this.
    Exited(Result<(), ServerError>),
}

/// Fork a background server for `spec` and wait until its device is live —
/// or say why it is not, after removing a half-made device. Must be called
/// while the process has a single thread.
pub fn spawn(spec: ServeSpec, registry: &Registry) -> Result<Spawned, ServerError> {
    let attach = spec.attach;
    match daemon::fork_server().map_err(ServerError::Fork)? {
        Forked::Child(reporter) => {
            // The parent's control ring came along with the fork: the same
            // kernel io_uring, shared. Both would take each other's
            // completions the moment both sent control commands (the parent
            // does, announcing the device), so the child drops its copy
            // and makes its own on first use.
            control::forget_inherited_ring();
            let lifecycle = Detached {
                reporter,
                registry: registry.clone(),
            };
            Ok(Spawned::Exited(run(spec, registry, Box::new(lifecycle))))
        }
        Forked::Parent(handshake) => {
            // The child holds the backing now.
            drop(spec);
            let child = handshake.child();
            let outcome = handshake
                .wait(START_TIMEOUT)
                .map_err(ServerError::Handshake)?;
            let log = |id: Option<u32>| match id {
                Some(id) => format!(" (see {})", registry.log_path(id).display()),
                None => String::new(),
            };
            let (id, err) = match outcome {
                StartOutcome::Live { id } => return Ok(Spawned::Live { id, pid: child }),
                StartOutcome::Failed { id, reason, remedy } => (
                    id,
                    ServerError::Reported {
                        reason,
                        remedy: remedy.as_deref().and_then(Remedy::from_name),
                    },
                ),
                StartOutcome::Died { id } => (id, ServerError::Died { log: log(id) }),
                StartOutcome::TimedOut { id } => (
                    id,
                    ServerError::TimedOut {
                        secs: START_TIMEOUT.as_secs(),
                        log: log(id),
                    },
                ),
            };
            remove_half_made(attach, id, child);
            Err(err)
        }
    }
}

/// A new device that never went live must not stay behind. (A device being
/// recovered stays: it is the user's, and quiesced again.) Only a device the
/// kernel records as added by our server is removed.
fn remove_half_made(attach: Attach, id: Option<u32>, server: i32) {
    if let (Attach::Add { .. }, Some(id)) = (attach, id)
        && control::device_info(id).is_ok_and(|info| info.pid == server)
        && let Err(err) = control::delete(id)
    {
        log::warn!("could not remove the half-made /dev/ublkb{id}: {err}");
    }
}

/// The registry record of a device about to go live.
fn registry_entry(
    backing: &Backing,
    sb: &SuperBlock,
    granted: &Granted,
    log: Option<PathBuf>,
) -> Entry {
    let g = &sb.geometry;
    Entry {
        id: granted.id,
        backing: backing.path().to_path_buf(),
        identity: backing.identity(),
        uuid: sb.uuid,
        pid: own_pid(),
        queues: granted.queues,
        depth: granted.depth,
        user_copy: granted.user_copy(),
        recovery: granted.recovery(),
        mode: g.mode(),
        reserve_offset: g.reserve_offset(),
        reserve_size: g.reserve_size(),
        data_offset: g.data_offset(),
        data_size: g.data_size(),
        log,
        supervised: crate::notify::enabled(),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            }),
        affinity: granted.affinity,
    }
}

/// Why preparing a granted device failed.
#[derive(Debug, thiserror::Error)]
enum PrepareError {
    #[error(transparent)]
    Format(#[from] MetadataError),
    #[error(transparent)]
    Map(#[from] BackingError),
    #[error("cannot record the device in {dir}")]
    Record {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

impl HasRemedy for PrepareError {
    fn remedy(&self) -> Option<Remedy> {
        match self {
            PrepareError::Format(err) => err.remedy(),
            PrepareError::Map(_) | PrepareError::Record { .. } => None,
        }
    }
}

/// The backing reopened `O_DIRECT` for the queues, its cached pages of the
/// data area dropped first.
fn open_direct(backing: &Backing, engine: &Engine) -> Result<Arc<DirectBacking>, BackingError> {
    let file = backing.open_direct()?;
    backing.drop_cached(engine.media().offset(), engine.size());
    Ok(Arc::new(DirectBacking {
        file,
        data_offset: engine.media().offset(),
    }))
}

/// Steps 3 and the record of step 4 (see the module docs): format if
/// needed, map, record. Returns the engine and the record to announce.
fn prepare(
    backing: &Arc<Backing>,
    volume: Volume,
    granted: &Granted,
    log: Option<PathBuf>,
    registry: &Registry,
    recovering: bool,
) -> Result<(DataPlane, Entry), PrepareError> {
    let sb = match volume {
        Volume::Existing(sb) => *sb,
        Volume::Format(plan) => {
            let sb = metadata::write_new_volume(&**backing, plan.plan.geometry, plan.generation)?;
            log::info!("formatted {}: volume {}", backing.path().display(), sb.uuid);
            sb
        }
    };
    let mut engine = Engine::new(Arc::clone(backing), &sb.geometry)?;
    engine.set_write_through(granted.write_cache == WriteCache::WriteThrough);
    if recovering {
        engine.assume_all_dirty();
    }
    let direct = match granted.io_path() {
        IoPath::Direct => Some(open_direct(backing, &engine)?),
        // Write-through over the page cache writes O_DIRECT (`ublk::plane::copy`).
        IoPath::UserCopy | IoPath::Batch
            if engine.write_through() && engine.persistence() == Persistence::Msync =>
        {
            Some(open_direct(backing, &engine)?)
        }
        IoPath::UserCopy | IoPath::Batch | IoPath::BounceBuffer => None,
    };
    let entry = registry_entry(backing, &sb, granted, log);
    registry
        .save(&entry)
        .map_err(|source| PrepareError::Record {
            dir: registry.dir().display().to_string(),
            source,
        })?;
    log::info!(
        "/dev/ublkb{}: serving {} bytes at offset {} of {} ({} queues x {}, {})",
        granted.id,
        sb.geometry.data_size(),
        sb.geometry.data_offset(),
        backing.path().display(),
        granted.queues,
        granted.depth,
        granted.io_path().name()
    );
    Ok((
        DataPlane {
            engine: Arc::new(engine),
            direct,
        },
        entry,
    ))
}

/// Serve `spec` here until the device stops (`del`, SIGINT, SIGTERM),
/// telling `lifecycle` how it goes.
pub fn run(
    spec: ServeSpec,
    registry: &Registry,
    lifecycle: Box<dyn Lifecycle>,
) -> Result<(), ServerError> {
    // Under a service manager a server hands over by becoming its own
    // successor (see run::HandOver); otherwise the caller starts one.
    let handover = if crate::notify::enabled() {
        daemon::remember_invocation();
        run::HandOver::Reexec(daemon::reexec)
    } else {
        run::HandOver::Exit
    };
    if let Err(err) = daemon::private_mount_namespace() {
        log::warn!(
            "no private mount namespace ({err}); do not let this server outlive a mount of its device"
        );
    }
    // Before the queue threads start: they inherit the I/O flusher mark.
    for missed in daemon::serve_under_memory_pressure() {
        log::warn!("{missed}");
    }
    let ServeSpec {
        attach,
        backing,
        volume,
        queues,
    } = spec;
    let lbs = volume.logical_block_size();
    let backing = Arc::new(backing);
    let lifecycle = Arc::new(Mutex::new(lifecycle));
    // The record, once the volume is ready: announced when live, removed
    // when the server stops.
    let record: Arc<Mutex<Option<Entry>>> = Arc::new(Mutex::new(None));

    let on_granted = {
        let (lifecycle, record, registry) = (
            Arc::clone(&lifecycle),
            Arc::clone(&record),
            registry.clone(),
        );
        move |granted: &Granted| -> Result<DataPlane, PrepareFailed> {
            let log = lock(&lifecycle).added(granted.id);
            let recovering = matches!(attach, Attach::Recover { .. });
            let (plane, entry) = prepare(&backing, volume, granted, log, &registry, recovering)
                .map_err(PrepareFailed::new)?;
            publish_stats(granted.id, Arc::downgrade(&plane.engine), registry.clone());
            *lock(&record) = Some(entry);
            Ok(plane)
        }
    };
    let on_live = {
        let (lifecycle, record) = (Arc::clone(&lifecycle), Arc::clone(&record));
        move |granted: &Granted| {
            log::info!("/dev/ublkb{}: live", granted.id);
            if let Some(entry) = lock(&record).as_ref() {
                lock(&lifecycle).live(entry);
            }
        }
    };

    let result = run::serve(attach, queues, lbs, handover, on_granted, on_live);
    // A stopped server's device is gone (or going): forget it. A recovered
    // device whose new server failed to start stays quiesced and recorded.
    let forget = result.is_ok() || matches!(attach, Attach::Add { .. });
    if let (Some(entry), true) = (lock(&record).as_ref(), forget) {
        let _ = registry.remove(entry.id);
    }
    result.map_err(|err| {
        lock(&lifecycle).failed(&crate::error_chain(&err), err.remedy());
        ServerError::Serve(err)
    })
}

/// How often a server publishes its request counters.
const STATS_INTERVAL: Duration = Duration::from_millis(250);

/// Publish the engine's counters in the registry (`list --json`'s `stats`)
/// while the engine lives, whenever they changed.
fn publish_stats(id: u32, engine: std::sync::Weak<Engine>, registry: Registry) {
    let spawned = std::thread::Builder::new()
        .name("stats".into())
        .spawn(move || {
            let mut last = None;
            while let Some(engine) = engine.upgrade() {
                let now = engine.stats().snapshot();
                drop(engine);
                if last != Some(now) {
                    if let Err(err) = registry.save_stats(id, &now) {
                        log::debug!("/dev/ublkb{id}: cannot publish counters: {err}");
                    }
                    last = Some(now);
                }
                std::thread::sleep(STATS_INTERVAL);
            }
        });
    if let Err(err) = spawned {
        log::warn!("/dev/ublkb{id}: no counters in 'list --json': {err}");
    }
}

/// This process's pid as the kernel's ublk records hold it.
fn own_pid() -> i32 {
    i32::try_from(std::process::id()).expect("invariant: Linux pids fit in i32 (pid_max <= 2^22)")
}

fn lock<T: ?Sized>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
