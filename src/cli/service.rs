//! `serve` and `restart`: a server's life under a service manager.
//!
//! `serve BACKING` is what the `pmem-stack@.service` unit runs: a foreground
//! server that adds the backing's device — or, when a device still serves
//! the backing but its server died (a crash, or a hand-over), recovers that
//! device, so a mounted file system only ever sees its I/O wait.
//!
//! `restart N` is a live upgrade: the running server flushes and exits
//! without removing the device (the kernel quiesces it), and a server of the
//! binary now installed recovers it — started here, or by the service
//! manager when the old server ran under one.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use pmem_stack::backing::{Access, Backing};
use pmem_stack::daemon;
use pmem_stack::registry::{Entry, Registry};
use pmem_stack::retry;
use pmem_stack::ublk::control::{self, DeviceState};

use super::add::Announce;
use super::args::{RecoverArgs, RestartArgs, ServeArgs, parse_device_id};
use super::{attachment, print_json};

/// How long `restart` waits for the old server to flush and exit.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `restart` waits for a service manager to start the successor.
const SUCCESSOR_TIMEOUT: Duration = Duration::from_secs(120);

pub fn serve(args: &ServeArgs) -> Result<ExitCode> {
    let context = || format!("cannot serve {}", args.target.backing.display());
    control::check_driver().with_context(context)?;
    let registry = Registry::system();
    // Read-only: a live server holds the backing exclusively.
    let probe = Backing::open(&args.target.backing, Access::ReadOnly).with_context(context)?;
    let Some(entry) = attachment(&registry, &probe) else {
        drop(probe);
        return super::add::add(&args.as_add());
    };
    drop(probe);
    let info = control::device_info(entry.id).with_context(context)?;
    if !daemon::server_gone(info.pid) {
        bail!(
            "{}: is already served as /dev/ublkb{} by pid {}; 'pmem-stack del {}' stops that server",
            args.target.backing.display(),
            entry.id,
            info.pid,
            entry.id
        );
    }
    if daemon::is_this_process(info.pid) {
        log::info!(
            "/dev/ublkb{}: re-executed to hand over to itself; recovering it",
            entry.id
        );
    } else {
        log::warn!(
            "/dev/ublkb{}: its server (pid {}) is gone; recovering it",
            entry.id,
            info.pid
        );
    }
    super::add::recover(&RecoverArgs {
        device: entry.id.to_string(),
        foreground: true,
        json: false,
    })
}

pub fn restart(args: &RestartArgs) -> Result<ExitCode> {
    let id = parse_device_id(&args.device)
        .ok_or_else(|| anyhow!("'{}' is not a device: give N or /dev/ublkbN", args.device))?;
    let context = || format!("cannot restart /dev/ublkb{id}");
    control::check_driver().with_context(context)?;
    if !control::device_ids().contains(&id) {
        bail!(
            "cannot restart /dev/ublkb{id}: it does not exist ('pmem-stack list' shows the devices)"
        );
    }
    let registry = Registry::system();
    let entry = registry.load(id).with_context(context)?.ok_or_else(|| {
        anyhow!(
            "cannot restart /dev/ublkb{id}: no pmem-stack record of it in {}",
            registry.dir().display()
        )
    })?;
    let info = control::device_info(id).with_context(context)?;
    if info.state != DeviceState::Live || daemon::process_gone(info.pid) {
        bail!(
            "cannot restart /dev/ublkb{id}: its server is not running (device {}); 'pmem-stack recover {id}' attaches a new one",
            info.state.name()
        );
    }
    if !entry.recovery {
        bail!(
            "cannot restart /dev/ublkb{id}: the kernel did not grant it user recovery, so its server cannot be replaced without removing it"
        );
    }
    hand_over(id, info.pid, entry.supervised).with_context(context)?;
    let how = Announce::device(args.json);
    attach_successor(id, &entry, entry.supervised, how, &registry)
}

/// Ask the server `pid` of device `id` to flush and exit without removing the
/// device (which then waits quiesced: I/O queues in the kernel), and wait
/// until it has — or, under a service manager (`supervised`), re-executed
/// itself to become its own successor (same pid, a new program).
pub(super) fn hand_over(id: u32, pid: i32, supervised: bool) -> Result<()> {
    match daemon::request_handover(pid) {
        // It died on its own meanwhile: the device waits all the same.
        Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {}
        other => other.with_context(|| format!("signalling the server (pid {pid})"))?,
    }
    let gone = if supervised {
        daemon::wait_image_gone(pid, HANDOVER_TIMEOUT)
    } else {
        daemon::wait_gone(pid, HANDOVER_TIMEOUT)
    };
    if !gone {
        bail!(
            "its server (pid {pid}) has not exited {} s after being asked to hand over (/dev/ublkb{id} still runs on it)",
            HANDOVER_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

/// Bring the successor of the server recorded in `old` that handed device
/// `id` over: under a service manager the server itself (re-executed) or the
/// manager's, else one started here.
pub(super) fn attach_successor(
    id: u32,
    old: &Entry,
    supervised: bool,
    how: Announce,
    registry: &Registry,
) -> Result<ExitCode> {
    if supervised {
        return await_successor(id, old, how, registry);
    }
    super::add::recover_device(id, false, how, registry).with_context(|| {
        format!(
            "/dev/ublkb{id} was handed over but no new server attached (the device waits quiesced, its I/O held; fix the cause, then 'pmem-stack recover {id}')"
        )
    })
}

/// The old server ran under a service manager: it re-executed itself, or the
/// manager starts the successor (`serve` recovers the quiesced device). Wait
/// until the device is live under a server that recorded itself after the
/// old one (the pid stays the same when it re-executed).
fn await_successor(id: u32, old: &Entry, how: Announce, registry: &Registry) -> Result<ExitCode> {
    let what = format!("waiting for the service manager to start /dev/ublkb{id}'s new server");
    let start = Instant::now();
    let live = retry::until(SUCCESSOR_TIMEOUT, Duration::from_millis(50), |last| {
        pmem_stack::progress::update(
            &what,
            u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            u64::try_from(SUCCESSOR_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
        );
        if let Ok(info) = control::device_info(id)
            && info.state == DeviceState::Live
            && !daemon::process_gone(info.pid)
            && let Ok(Some(now)) = registry.load(id)
            && now.started != old.started
            && now.pid == info.pid
        {
            return Some(true);
        }
        last.then_some(false)
    });
    pmem_stack::progress::finish(&what);
    if !live {
        bail!(
            "/dev/ublkb{id}: handed over, but its service manager did not bring a new server up within {} s (its device waits quiesced; 'pmem-stack recover {id}' attaches one)",
            SUCCESSOR_TIMEOUT.as_secs()
        );
    }
    let entry = registry
        .load(id)?
        .ok_or_else(|| anyhow!("/dev/ublkb{id}: the new server left no record"))?;
    match how {
        Announce::Json => print_json(&super::json::device_json(&entry))?,
        Announce::Path => println!("/dev/ublkb{id}"),
        Announce::Nothing => {}
    }
    Ok(ExitCode::SUCCESS)
}
