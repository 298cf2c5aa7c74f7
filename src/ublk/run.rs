//! Serving a device: from the control object the kernel granted to the
//! queues running, and back — the serve loop. The control commands
//! (add, recover, stop, delete, describe) are `control`'s; this module runs a
//! device between them: sets its parameters, prepares the data plane,
//! starts one queue thread per hardware queue, goes live, and on SIGINT,
//! SIGTERM or a hand-over request stops durably (flush first) — removing the
//! device, or leaving it quiesced for a successor (`restart`, `grow`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use libublk::ctrl::UblkCtrl;
use libublk::io::UblkDev;
use libublk::sys;

use crate::backing::direct_io::DirectBacking;
use crate::engine::Engine;
use crate::format::LogicalBlockSize;
use crate::units::{PAGE_SHIFT, SECTOR_SHIFT};

use super::control::{
    Attach, Granted, HANDOVER_EXIT, HANDOVER_SIGNAL, PrepareFailed, QueueConfig, ServeError,
    build_control, checked, match_disk_size, stop,
};
use super::features::{Features, IoPath, WriteCache};
use super::plane;
use super::plane::ring::RingSetup;
use super::tuning::{ReadSource, Tuning};

/// Largest discard / write-zeroes request: 1 GiB, in sectors.
const MAX_ZERO_SECTORS: u32 = 1 << 21;

fn set_params(dev: &mut UblkDev, size: u64, lbs: LogicalBlockSize, cache: WriteCache) {
    let max_sectors = dev.dev_info.max_io_buf_bytes >> SECTOR_SHIFT;
    dev.tgt.dev_size = size;
    dev.tgt.params = sys::ublk_params {
        types: sys::UBLK_PARAM_TYPE_BASIC | sys::UBLK_PARAM_TYPE_DISCARD,
        basic: sys::ublk_param_basic {
            attrs: cache.attrs(),
            logical_bs_shift: lbs.shift(),
            physical_bs_shift: PAGE_SHIFT,
            io_opt_shift: PAGE_SHIFT,
            io_min_shift: PAGE_SHIFT,
            max_sectors,
            dev_sectors: size >> SECTOR_SHIFT,
            ..Default::default()
        },
        discard: sys::ublk_param_discard {
            discard_alignment: 0,
            discard_granularity: 1 << PAGE_SHIFT,
            max_discard_sectors: MAX_ZERO_SECTORS,
            max_write_zeroes_sectors: MAX_ZERO_SECTORS,
            max_discard_segments: 1,
            reserved0: 0,
        },
        ..Default::default()
    };
}

/// Say what the kernel offers, what the device got, and every fallback taken.
fn log_features(granted: &Granted) {
    let id = granted.id;
    match Features::of_kernel() {
        Some(kernel) => log::info!(
            "/dev/ublkb{id}: kernel ublk features: {}",
            kernel.names().join(", ")
        ),
        None => log::info!("/dev/ublkb{id}: the kernel does not report its ublk features"),
    }
    log::info!(
        "/dev/ublkb{id}: granted {}; I/O path {}, {}, queue threads on their {} CPUs",
        granted.features.names().join(", "),
        granted.io_path().name(),
        granted.write_cache.name(),
        granted.affinity.name()
    );
    if granted.io_path() == IoPath::BounceBuffer {
        log::warn!("/dev/ublkb{id}: copying through bounce buffers (slowest path)");
    }
    if !granted.recovery() {
        log::warn!(
            "/dev/ublkb{id}: the kernel did not grant user recovery with reissue; 'pmem-stack recover' will not work"
        );
    }
}

/// What the queues serve: the engine, and for the direct path (and
/// write-through on user copy) the backing reopened `O_DIRECT`.
#[derive(Debug)]
pub struct DataPlane {
    /// The engine (shared by all queues).
    pub engine: Arc<Engine>,
    /// The backing opened `O_DIRECT`, when the queues write through it.
    pub direct: Option<Arc<DirectBacking>>,
}

/// How a server hands its device over once it has flushed (`restart`,
/// `grow`): the device waits quiesced either way.
#[derive(Clone, Copy, Debug)]
pub enum HandOver {
    /// Exit with [`HANDOVER_EXIT`]; whoever asked (or the service manager)
    /// starts the successor.
    Exit,
    /// Become the successor: replace this process's program with a fresh
    /// start of its own command line (the binary on disk, upgraded or not),
    /// which recovers the device under the same pid. A service manager sees
    /// no exit, so it restarts nothing (systemd would restart the units that
    /// require the service with it: an idle file system in fstab would be
    /// unmounted, with no server to write it back). The function returns
    /// only when it could not; the server then exits as with `Exit`.
    Reexec(fn() -> std::io::Error),
}

/// Serve a device until it is stopped (by `del`, or SIGINT/SIGTERM here).
///
/// `prepare` runs once the kernel has granted the device, before any I/O can
/// arrive: it formats the backing if needed and builds the engine, so a device
/// that cannot be created never costs a write to the backing. `on_live` runs
/// once `/dev/ublkbN` serves I/O. On return the device is removed and every
/// write the server acknowledged is durable.
pub fn serve<P, L>(
    attach: Attach,
    cfg: QueueConfig,
    lbs: LogicalBlockSize,
    handover: HandOver,
    prepare: P,
    on_live: L,
) -> Result<(), ServeError>
where
    P: FnOnce(&Granted) -> Result<DataPlane, PrepareFailed>,
    L: FnOnce(&Granted) + Send + Sync + 'static,
{
    // Before the device exists: a setting that is wrong costs nothing.
    let tuning = Tuning::for_this_kernel().map_err(ServeError::Environment)?;
    let ctrl = build_control(attach, cfg, tuning.io_threads)?;
    let info = ctrl.dev_info();
    let granted = Granted {
        id: info.dev_id,
        features: Features(info.flags),
        queues: info.nr_hw_queues,
        depth: info.queue_depth,
        write_cache: cfg.write_cache,
        affinity: cfg.affinity,
    };
    let DataPlane { engine, direct } = prepare(&granted).map_err(ServeError::Prepare)?;
    if engine.write_through() != (granted.write_cache == WriteCache::WriteThrough) {
        return Err(ServeError::Prepare(PrepareFailed::invariant(
            "invariant: the engine's write-through differs from the device's write cache",
        )));
    }
    // After prepare: a background server's log file is open from there on.
    log_features(&granted);
    let size = engine.size();

    let signals = StopOnSignal::install(&granted, Arc::clone(&engine), handover);

    if let Some(tuned) = tuning.describe() {
        log::info!("/dev/ublkb{}: {tuned}", granted.id);
    }
    let io_path = granted.io_path();
    if io_path == IoPath::Direct && direct.is_none() {
        return Err(ServeError::Prepare(PrepareFailed::invariant(
            "invariant: the direct path was granted but no O_DIRECT backing was prepared",
        )));
    }
    // Where each queue's thread and (on the direct path) io_uring workers run.
    let queue_cpus = super::affinity::queue_cpus(&ctrl, granted.queues);
    let queues = Queues {
        engine: Arc::clone(&engine),
        direct,
        io_path,
        ring: tuning.ring,
        reads: tuning.reads,
        worker_cpus: super::affinity::io_worker_cpus(&queue_cpus, granted.affinity),
    };
    let write_cache = granted.write_cache;
    let went_live = Arc::new(AtomicBool::new(false));
    let live_flag = Arc::clone(&went_live);
    let result = ctrl.run_target(
        move |dev: &mut UblkDev| {
            set_params(dev, size, lbs, write_cache);
            Ok(())
        },
        move |qid, dev: &UblkDev| queues.serve(qid, dev),
        move |ctrl: &UblkCtrl| {
            if matches!(attach, Attach::Recover { .. })
                && let Err(err) = match_disk_size(ctrl, granted.id, size)
            {
                log::error!("/dev/ublkb{}: cannot resize: {err}", granted.id);
            }
            super::affinity::apply(ctrl, &queue_cpus, granted.affinity);
            live_flag.store(true, Ordering::Release);
            on_live(&granted);
        },
    );
    drop(signals);
    // Whatever ended the queues, the data acknowledged so far goes to media.
    let flushed = engine.shutdown_flush();
    log::info!("/dev/ublkb{}: served {}", granted.id, engine.stats());
    // A server that stops on purpose removes its device (`del` may have done
    // so already, which is fine), and so does a failed add. A recovery that
    // failed before the device was live again leaves it quiesced for another
    // attempt. Asynchronously: the kernel frees the device once its last
    // opener (perhaps a mounted file system) lets go; the server must not
    // wait for that.
    if went_live.load(Ordering::Acquire) || matches!(attach, Attach::Add { .. }) {
        let _ = ctrl.del_dev_async();
    }
    if let Err(err) = &flushed {
        log::error!(
            "/dev/ublkb{}: the final flush failed: {}",
            granted.id,
            crate::error_chain(err)
        );
    }
    checked("serving", result)?;
    flushed.map_err(ServeError::Flush)?;
    log::info!("/dev/ublkb{}: stopped", granted.id);
    Ok(())
}

/// What every queue thread needs: each serves its queue with [`Queues::serve`].
#[derive(Clone)]
struct Queues {
    engine: Arc<Engine>,
    /// The backing opened `O_DIRECT` (the direct path; writing through).
    direct: Option<Arc<DirectBacking>>,
    io_path: IoPath,
    ring: RingSetup,
    /// Where a writing-through user-copy queue reads from.
    reads: ReadSource,
    /// Per queue: the CPUs of its io_uring workers (the direct path).
    worker_cpus: Vec<Vec<usize>>,
}

impl Queues {
    /// Serve queue `qid` on this thread until the device stops.
    fn serve(&self, qid: u16, dev: &UblkDev) {
        if let Err(err) = plane::ring::prepare(dev, self.ring) {
            log::error!("queue {qid}: {} ring setup failed: {err}", self.ring.name());
            return;
        }
        let engine = &self.engine;
        match self.direct.as_deref() {
            Some(direct) if self.io_path == IoPath::Direct => {
                let cpus = self
                    .worker_cpus
                    .get(usize::from(qid))
                    .map_or(&[][..], Vec::as_slice);
                plane::direct::serve_queue(qid, cpus, dev, engine, direct);
            }
            direct if self.io_path == IoPath::Batch => {
                plane::batch::serve_queue(qid, dev, engine, direct);
            }
            direct => plane::copy::serve_queue(qid, dev, engine, self.io_path, direct, self.reads),
        }
    }
}

/// Stops the device when SIGINT or SIGTERM arrives, from a helper thread;
/// hands it over (see [`HANDOVER_SIGNAL`]) on SIGUSR1 — and on SIGINT or
/// SIGTERM too while the device is in use (mounted, or held by dm or md),
/// when the kernel granted recovery: removing it would fail every later
/// write of the file system on it, and `systemctl restart` of the unit is a
/// SIGTERM and a new `serve` (which recovers the device) while the file
/// system stays mounted. A plain stop of a device in use leaves it quiesced:
/// its I/O waits for the next server (`pmem-stack recover N`, the unit's
/// next start) instead of failing.
struct StopOnSignal {
    handle: Option<signal_hook::iterator::Handle>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StopOnSignal {
    fn install(granted: &Granted, engine: Arc<Engine>, how: HandOver) -> StopOnSignal {
        let (id, recovery) = (granted.id, granted.recovery());
        let mut signals = match signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            HANDOVER_SIGNAL,
        ]) {
            Ok(signals) => signals,
            Err(err) => {
                log::warn!("cannot watch SIGINT/SIGTERM/SIGUSR1: {err}");
                return StopOnSignal {
                    handle: None,
                    thread: None,
                };
            }
        };
        let handle = signals.handle();
        let thread = std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                if signal == HANDOVER_SIGNAL {
                    hand_over(id, &engine, how);
                } else if recovery && let Some(holder) = super::control::claimed(id) {
                    log::warn!(
                        "/dev/ublkb{id} is in use ({holder}): handing it over instead of removing it; the next server ('pmem-stack recover {id}', or the unit's next start) serves it, 'pmem-stack del {id}' removes it once released"
                    );
                    // Stopping: the service manager starts the next server
                    // (a restart) or nobody does (a stop) — not this one.
                    hand_over(id, &engine, HandOver::Exit);
                }
                log::info!("/dev/ublkb{id}: signal {signal}, stopping");
                crate::notify::stopping(&format!("stopping /dev/ublkb{id}: flushing"));
                if let Err(err) = stop(id) {
                    log::error!("/dev/ublkb{id}: stop failed: {err}");
                }
            }
        });
        StopOnSignal {
            handle: Some(handle),
            thread: Some(thread),
        }
    }
}

/// Flush everything acknowledged so far and exit without removing the
/// device: with user recovery the kernel quiesces it (I/O waits; requests
/// this server held are re-issued to the next one), and `recover` — run by
/// `restart`, or by the unit's next `serve` — attaches the successor. The
/// process exits at once, so no destructor deletes the device. Returns only
/// when the flush failed: then the device is stopped as on SIGTERM rather
/// than handed over with data the successor cannot vouch for.
fn hand_over(id: u32, engine: &Engine, how: HandOver) {
    log::info!("/dev/ublkb{id}: handing over to a new server");
    crate::notify::status(&format!("handing /dev/ublkb{id} over to a new server"));
    match engine.shutdown_flush() {
        Ok(()) => {
            if let HandOver::Reexec(reexec) = how {
                log::info!(
                    "/dev/ublkb{id}: flushed ({}); re-executing as the successor",
                    engine.stats()
                );
                let err = reexec();
                log::error!("/dev/ublkb{id}: cannot re-execute ({err}); exiting for a successor");
            } else {
                log::info!(
                    "/dev/ublkb{id}: flushed ({}); exiting for the successor",
                    engine.stats()
                );
            }
            crate::notify::stopping(&format!("handed /dev/ublkb{id} over"));
            std::process::exit(HANDOVER_EXIT);
        }
        Err(err) => log::error!(
            "/dev/ublkb{id}: flush before the hand-over failed, stopping instead: {}",
            crate::error_chain(&err)
        ),
    }
}

impl Drop for StopOnSignal {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.close();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
