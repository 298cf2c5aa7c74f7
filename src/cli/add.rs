//! `add` and `recover`: check everything, build one [`ServeSpec`], then hand
//! it to the library's server life cycle — in the foreground, or forked into
//! the background — and print the live device or why it is not.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use pmem_stack::backing::{Backing, BackingError, BackingKind};
use pmem_stack::notify;
use pmem_stack::recovery::{self, Recovery};
use pmem_stack::registry::{Entry, Registry};
use pmem_stack::server::{self, Lifecycle, ServeSpec, Spawned};
use pmem_stack::ublk::control::{self, Attach, QueueConfig};
use pmem_stack::ublk::features::{self, CacheBacking, Features, IoPath, WriteCacheChoice};

use super::args::{AddArgs, RecoverArgs, parse_device_id};
use super::json::{DeviceJson, device_json};
use super::plan::plan_volume;
use super::usage::usage;
use super::{open_exclusive, print_json};

pub fn add(args: &AddArgs) -> Result<ExitCode> {
    let options = args.target.layout.options();
    let context = || format!("cannot add {}", args.target.backing.display());
    // A backing that is not there is the argument's fault, whatever else
    // is wrong: say so first.
    check_backing_path(&args.target.backing).with_context(context)?;
    // Fail before touching the backing when ublk cannot work here.
    control::check_driver().with_context(context)?;
    let registry = Registry::system();
    // Before anything is written: a server that formats and then cannot
    // record its device would leave a changed backing behind a failed add.
    registry.prepare_dir().with_context(context)?;
    let backing = open_exclusive(&args.target.backing, &registry)?;
    // Before anything is written, too: a path this kernel or backing cannot
    // serve is refused up front.
    let direct_io = || backing.open_direct().is_ok();
    let cache_backing = match backing.kind() {
        BackingKind::Block => CacheBacking::Block {
            direct_io: direct_io(),
        },
        BackingKind::Dax => CacheBacking::Dax,
        BackingKind::File => CacheBacking::File {
            direct_io: direct_io(),
        },
    };
    let cache_choice = args.target.device.write_cache.choice();
    let io_path =
        choose_io_path(args, &backing, cache_backing, cache_choice).with_context(context)?;
    let write_cache =
        features::choose_write_cache(cache_choice, io_path, cache_backing).with_context(context)?;
    let volume =
        plan_volume(&backing, &options, args.force, "device is deleted").with_context(context)?;
    let defaults = QueueConfig::default_for_host();
    let spec = ServeSpec {
        attach: Attach::Add {
            id: args.target.device.id,
        },
        backing,
        volume,
        queues: QueueConfig {
            queues: args.target.device.queues.unwrap_or(defaults.queues),
            depth: args.target.device.depth.unwrap_or(defaults.depth),
            io_path,
            write_cache,
            affinity: args.target.device.affinity.affinity(),
        },
    };
    let how = Announce::device(args.json);
    launch(spec, args.foreground, how, &registry).with_context(context)
}

/// Whether `path` can name a backing at all, from its metadata alone
/// (nothing is opened): a missing path or a directory is named as such.
pub(super) fn check_backing_path(path: &Path) -> Result<(), BackingError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(BackingError::Unsupported {
            path: path.to_path_buf(),
            what: "a directory",
        }),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Err(BackingError::NotFound(path.to_path_buf()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(BackingError::PermissionDenied(path.to_path_buf()))
        }
        Err(source) => Err(BackingError::Io {
            path: path.to_path_buf(),
            op: "stat",
            source,
        }),
    }
}

/// The I/O path to ask the kernel for. The direct path also needs the
/// backing to open `O_DIRECT` (an image on tmpfs cannot; `auto` takes it
/// only where it can): asked for, that is an error now, before the device
/// exists.
fn choose_io_path(
    args: &AddArgs,
    backing: &Backing,
    cache_backing: CacheBacking,
    cache_choice: WriteCacheChoice,
) -> Result<IoPath> {
    let path = features::choose(
        args.target.device.io_path.choice(),
        Features::of_kernel(),
        cache_backing,
        cache_choice,
    )?;
    if path == IoPath::Direct {
        backing.open_direct()?;
    }
    Ok(path)
}

pub fn recover(args: &RecoverArgs) -> Result<ExitCode> {
    // The argument first: a bad name is wrong whether or not ublk works here.
    let Some(id) = parse_device_id(&args.device) else {
        usage!("'{}' is not a device: give N or /dev/ublkbN", args.device);
    };
    let registry = Registry::system();
    let announce = Announce::device(args.json);
    recover_device(id, args.foreground, announce, &registry)
}

/// Attach a new server to device `id`, whose server died or handed it over:
/// the library checks every rule ([`recovery::plan`]); this only words it.
pub(super) fn recover_device(
    id: u32,
    foreground: bool,
    announce: Announce,
    registry: &Registry,
) -> Result<ExitCode> {
    let context = || format!("cannot recover /dev/ublkb{id}");
    let Recovery { spec, lock } = match recovery::plan(id, registry) {
        Ok(checked) => checked,
        Err(err) if err.names_the_device() => return Err(err.into()),
        Err(err) => return Err(err).with_context(context),
    };
    // Before the server forks or runs: it must not hold the lock.
    drop(lock);
    launch(spec, foreground, announce, registry).with_context(context)
}

/// What a command prints once its device is live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Announce {
    /// `/dev/ublkbN`.
    Path,
    /// `list`'s JSON object of the device.
    Json,
    /// Nothing: the caller reports.
    Nothing,
}

impl Announce {
    /// The device as `--json` asks: its object, else its path.
    pub(super) fn device(json: bool) -> Announce {
        if json { Announce::Json } else { Announce::Path }
    }
}

/// A foreground server's life cycle: it logs to stderr and prints the live
/// device itself (as `list`'s JSON object with `--json`).
struct Printer {
    announce: Announce,
}

impl Lifecycle for Printer {
    fn added(&mut self, id: u32) -> Option<PathBuf> {
        server::log_its_life();
        notify::status(&format!("starting /dev/ublkb{id}"));
        None
    }

    fn live(&mut self, entry: &Entry) {
        if let Err(err) = announce(entry, self.announce) {
            log::error!("cannot print the device: {err:#}");
        }
        notify::ready(&format!(
            "serving /dev/ublkb{} (volume {}, {} bytes of {})",
            entry.id,
            entry.uuid,
            entry.data_size,
            entry.backing.display()
        ));
    }

    fn failed(&mut self, _reason: &str, _remedy: Option<pmem_stack::remedy::Remedy>) {
        // The error comes back from server::run and is printed by main.
    }
}

/// Run the server here (foreground) or in a forked child, and report.
fn launch(
    spec: ServeSpec,
    foreground: bool,
    how: Announce,
    registry: &Registry,
) -> Result<ExitCode> {
    if foreground {
        // Under systemd (Type=notify): READY=1 once live, STOPPING=1.
        if let Some(notifier) = notify::Notifier::from_env()? {
            notify::install(notifier);
        }
        server::run(spec, registry, Box::new(Printer { announce: how }))?;
        return Ok(ExitCode::SUCCESS);
    }
    match server::spawn(spec, registry)? {
        Spawned::Live { id, pid } => {
            match (registry.load(id), how) {
                (_, Announce::Nothing) => {}
                (Ok(Some(entry)), _) => announce(&entry, how)?,
                (_, Announce::Json) => {
                    print_json(&DeviceJson::minimal(id, pid))?;
                }
                (_, Announce::Path) => println!("/dev/ublkb{id}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        // The server: its outcome was reported through the pipe; the exit
        // status is for the log only.
        Spawned::Exited(Ok(())) => Ok(ExitCode::SUCCESS),
        Spawned::Exited(Err(err)) => {
            log::error!("{}", pmem_stack::error_chain(&err));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Print the live device: its path, or with `--json` its `list` object.
fn announce(entry: &Entry, how: Announce) -> Result<()> {
    match how {
        Announce::Json => print_json(&device_json(entry)),
        Announce::Path => {
            println!("/dev/ublkb{}", entry.id);
            Ok(())
        }
        Announce::Nothing => Ok(()),
    }
}
