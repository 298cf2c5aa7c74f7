//! The command-line edge: parses arguments, calls the library, turns its typed
//! errors into one-line messages and exit codes (0 ok, 1 failure or unhealthy,
//! 2 usage).

mod add;
pub mod args;
mod devices;
mod docs;
mod json;
mod manual;
mod map;
mod plan;
pub mod progress_line;
pub mod remedy;
mod render;
mod reserve_cmds;
mod scan;
mod service;
pub mod usage;
mod volume_cmds;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use pmem_stack::backing::{Access, Backing, BackingError, Identity};
use pmem_stack::dm;
use pmem_stack::registry::{Entry, Registry};
use pmem_stack::ublk::control;
use pmem_stack::ublk::features::{Features, IoPath};
use pmem_stack::ublk::tuning::Tuning;

use args::{Cli, Command};

/// Run one command.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Format(a) => volume_cmds::format(&a),
        Command::Info(a) => volume_cmds::info(&a),
        Command::Scan(a) => scan::scan(&a),
        Command::Check(a) => volume_cmds::check(&a),
        Command::Add(a) => server_env()
            .and_then(|()| require_root("add"))
            .and_then(|()| add::add(&a)),
        Command::Recover(a) => server_env()
            .and_then(|()| require_root("recover"))
            .and_then(|()| add::recover(&a)),
        Command::Del(a) => require_root("del").and_then(|()| devices::del(&a)),
        Command::List(a) => devices::list(&a),
        Command::Map(a) => require_root("map").and_then(|()| map::map(&a)),
        Command::Unmap(a) => require_root("unmap").and_then(|()| map::unmap(&a)),
        Command::Reserved(a) => reserve_cmds::reserved(&a),
        Command::Reserve(args::ReserveCommand::Split(a)) => reserve_cmds::split(&a),
        Command::Reserve(args::ReserveCommand::List(a)) => reserve_cmds::list(&a),
        Command::Grow(a) => reserve_cmds::grow(&a),
        Command::Restart(a) => require_root("restart").and_then(|()| service::restart(&a)),
        Command::Serve(a) => server_env()
            .and_then(|()| require_root("serve"))
            .and_then(|()| service::serve(&a)),
        Command::Completions(a) => docs::completions(&a),
        Command::Man(a) => docs::man(&a),
        Command::UdevId(a) => devices::udev_id(&a),
    }
}

/// Refuse a command that starts a server up front when a setting the server
/// reads from its environment (`PMEM_STACK_RING`, `PMEM_STACK_IO_THREADS`)
/// is wrong, or asks for what this kernel does not offer: the server would
/// only find out after the device exists. A usage error (exit 2).
fn server_env() -> Result<()> {
    if let Err(why) = Tuning::for_this_kernel() {
        usage::usage!("{why}");
    }
    Ok(())
}

/// Refuse `command` up front unless running as root: ublk devices are made
/// and controlled through /dev/ublk-control, and their records live in
/// root's /run/pmem-stack; maps through /dev/mapper/control. Saying so
/// beats whichever EACCES comes first.
fn require_root(command: &str) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let what = match command {
        "map" | "unmap" => "device-mapper devices",
        _ => "ublk devices",
    };
    bail!("pmem-stack {command} needs root: it creates and controls {what} (run it with sudo)")
}

/// The registry record of a device the kernel still has that serves `backing`.
fn attachment(registry: &Registry, backing: &Backing) -> Option<Entry> {
    let identity = backing.identity();
    let live = control::device_ids();
    registry
        .all()
        .into_iter()
        .find(|e| e.identity == identity && live.contains(&e.id))
}

/// When `backing` is one of pmem-stack's own `/dev/ublkbN`: the backing that
/// device serves. Stacking on ourselves would serve the same media twice and
/// can deadlock a server on its own device.
fn own_device(registry: &Registry, backing: &Backing) -> Option<std::path::PathBuf> {
    let name = backing.kernel_name()?;
    // ublkbN, or a partition of it, ublkbNpM.
    let digits = name.strip_prefix("ublkb")?;
    let id: u32 = digits.split('p').next()?.parse().ok()?;
    match registry.load(id) {
        Ok(Some(entry)) => Some(entry.backing),
        Ok(None) => None,
        // A record that cannot be read: rather refuse than stack on ourselves.
        Err(_) => Some(std::path::PathBuf::from(format!(
            "/dev/ublkb{id}'s backing"
        ))),
    }
}

/// Open `path` for writing, refusing it when anything else holds it — with a
/// message naming the holder, including a pmem-stack device whose server died
/// (the kernel no longer sees an exclusive opener then, but the backing is
/// still attached to that device).
fn open_exclusive(path: &Path, registry: &Registry) -> Result<Backing> {
    match Backing::open(path, Access::Exclusive) {
        Ok(backing) => {
            if let Some(served) = own_device(registry, &backing) {
                bail!(
                    "{}: is a pmem-stack device (it serves {}); pmem-stack does not stack on itself: give that backing instead",
                    path.display(),
                    served.display()
                );
            }
            if let Some(entry) = attachment(registry, &backing) {
                bail!(
                    "{}: is attached to /dev/ublkb{} whose server (pid {}) is not running; 'pmem-stack recover {}' re-attaches it, 'pmem-stack del {}' removes it",
                    path.display(),
                    entry.id,
                    entry.pid,
                    entry.id,
                    entry.id
                );
            }
            Ok(backing)
        }
        Err(BackingError::Busy { path, holder }) => {
            // Name the pmem-stack device when it is ours.
            let shared = Backing::open(&path, Access::ReadOnly).ok();
            if let Some(map) = shared.as_ref().and_then(map_of) {
                bail!(
                    "{}: is in use: mapped as {}; 'pmem-stack unmap {}' first",
                    path.display(),
                    map.node().display(),
                    map.name
                );
            }
            let served = shared.and_then(|b| attachment(registry, &b));
            match served {
                Some(entry) => bail!(
                    "{}: is in use: served as /dev/ublkb{} (pid {}); 'pmem-stack del {}' stops it",
                    path.display(),
                    entry.id,
                    entry.pid,
                    entry.id
                ),
                None => Err(BackingError::Busy { path, holder }.into()),
            }
        }
        Err(err) => Err(err.into()),
    }
}

/// The pmem-stack map of `backing`, if it is mapped.
fn map_of(backing: &Backing) -> Option<dm::Map> {
    match backing.identity() {
        Identity::Device { rdev } => dm::map_of(dm::DevNum::of(rdev)),
        Identity::File { .. } => None,
    }
}

/// The device serving `backing` and how, if any (for `info`).
fn served_by(registry: &Registry, backing: &Backing) -> Option<render::Serving> {
    if let Some(map) = map_of(backing) {
        return Some(render::Serving {
            device: map.node().display().to_string(),
            kind: render::ServedKind::Dm,
            io_path: None,
            write_cache: None,
            dax: map.dax,
        });
    }
    attachment(registry, backing).map(|e| render::Serving {
        device: format!("/dev/ublkb{}", e.id),
        kind: render::ServedKind::Ublk,
        io_path: pmem_stack::ublk::control::device_info(e.id)
            .ok()
            .map(|info| IoPath::of(Features(info.flags))),
        write_cache: pmem_stack::ublk::control::device_write_cache(e.id).ok(),
        dax: false,
    })
}

/// Print `value` as pretty JSON on stdout.
fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("encoding JSON")?
    );
    Ok(())
}
