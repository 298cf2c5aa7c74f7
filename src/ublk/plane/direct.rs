//! The direct data plane (Linux 6.16+, `UBLK_F_AUTO_BUF_REG`; the default
//! over a block device writing through, `features::choose`): the kernel
//! registers each request's pages as fixed buffer number *tag* in the
//! queue's io_uring before handing the request over, and this queue reads
//! or writes them with `READ_FIXED` / `WRITE_FIXED` against the backing
//! opened `O_DIRECT`. The backing's driver (for `/dev/pmemN`, the pmem
//! driver's `memcpy_flushcache`) makes the one copy; no page of the media
//! is cached in DRAM, nothing faults, and a FLUSH is an `fdatasync` with no
//! dirty pages behind it, submitted like any other request. Writing
//! through, the writes that finish in one batch of completions are made
//! durable together by one `fdatasync` in this thread at the batch's end
//! ([`super::group_commit`]).
//!
//! But the pmem driver takes no I/O that must not block (`REQ_NOWAIT`), so
//! io_uring hands every such read or write to a worker thread: a hop that
//! costs more than a 4 KiB copy. So, writing through, a READ or WRITE under
//! [`REGISTERED_FROM`] is served as on the user-copy path instead, in this
//! thread (`UBLK_F_USER_COPY`, asked for beside `UBLK_F_AUTO_BUF_REG`):
//! between the request and a staging buffer, and between that and the
//! backing opened `O_DIRECT` — two copies, no hop. Its writes share the
//! batch's sync with the others.
//!
//! The engine still decides every request ([`Engine::plan_direct`]) and
//! hears every outcome ([`Engine::direct_done`]); this module only submits
//! and completes. A short transfer (which the pmem driver does not make,
//! but a file system may) is continued from where it stopped.

use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, types};
use libublk::helpers::IoBuf;
use libublk::io::{UblkDev, UblkIOCtx, UblkQueue};
use libublk::{BufDesc, BufDescList, UblkIORes, sys};

use crate::backing::direct_io::DirectBacking;
use crate::engine::direct::DirectOp;
use crate::engine::{Engine, Op, Request};
use crate::ublk::tuning::ReadSource;

use super::copy::serve_request;
use super::group_commit::BatchSync;
use super::request::{completion, request_of};
use super::transfer::UserCopy;

/// Writing through, a READ or WRITE shorter than this is copied by the
/// queue thread itself, as on the user-copy path; from this size up the
/// backing's driver copies into the registered pages on an io_uring worker.
/// Measured (bench/README.md, "Large requests through registered pages"):
/// at 4 KiB the worker hop costs more than the second copy saves, at
/// 128 KiB the one copy wins; sizes between are not measured.
pub const REGISTERED_FROM: u64 = 64 << 10;

/// What a queue needs to copy a small request itself: the char device (for
/// user copy) and a staging buffer between it and the backing.
struct Copier {
    cdev: RawFd,
    staging: IoBuf<u8>,
}

/// A request whose backing I/O is in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    op: DirectOp,
    /// Bytes already transferred (a short transfer continues from here).
    done: u32,
}

/// One queue's requests on the direct path.
struct DirectQueue<'a> {
    qid: u16,
    engine: &'a Engine,
    backing: &'a DirectBacking,
    inflight: Vec<Option<InFlight>>,
    /// Writes submitted to the backing and not finished there.
    writes: u32,
    /// Write-through: plain writes finished in this batch of completions,
    /// waiting for its sync (a write that is alone goes `RWF_DSYNC`
    /// instead and waits for nothing: see [`super::group_commit`]).
    unsynced: BatchSync,
    /// Writing through: small requests' way (see [`REGISTERED_FROM`]).
    copier: Option<Copier>,
}

impl DirectQueue<'_> {
    fn handle(&mut self, q: &UblkQueue, tag: u16, ctx: &UblkIOCtx) {
        self.serve(q, tag, ctx);
        if ctx.is_last_cqe() {
            let qid = self.qid;
            self.unsynced
                .sync(qid, self.engine, self.backing, |tag, res| {
                    commit(q, tag, res)
                });
        }
    }

    /// One completion: a new request (submitted to the backing, or answered
    /// at once) or its backing I/O's (continued, answered, or left for the
    /// batch's sync).
    fn serve(&mut self, q: &UblkQueue, tag: u16, ctx: &UblkIOCtx) {
        let res = if ctx.is_tgt_io() {
            let Some(mut io) = self
                .inflight
                .get_mut(usize::from(tag))
                .and_then(Option::take)
            else {
                log::error!("tag {tag}: completion without a request");
                return;
            };
            match progress(&mut io, ctx.result()) {
                Progress::More => {
                    self.submit(q, tag, io);
                    return;
                }
                Progress::Finished(res) => {
                    if let DirectOp::Write { fua, .. } = io.op {
                        self.writes = self.writes.saturating_sub(1);
                        if self.engine.write_through() && !fua && res >= 0 {
                            self.unsynced.wait(tag, io.op, res);
                            return;
                        }
                    }
                    completion(self.engine.direct_done(io.op, res))
                }
            }
        } else {
            let req = match request_of(q, tag, self.engine.size()) {
                Ok(req) => req,
                Err(err) => return commit(q, tag, completion(Err(err))),
            };
            if let Some(copier) = self.copier.as_mut().filter(|_| copied_in_thread(&req)) {
                let alone = self.unsynced.alone(ctx.is_last_cqe());
                let mut xfer = UserCopy::new(copier.cdev, self.qid, tag);
                let through = Some((self.backing, &mut copier.staging));
                let result = serve_request(
                    self.engine,
                    through,
                    ReadSource::Direct,
                    &mut xfer,
                    &req,
                    alone,
                );
                self.unsynced
                    .settle(tag, result, |tag, res| commit(q, tag, res));
                return;
            }
            let planned = self.engine.plan_direct(&req);
            match planned {
                Ok(DirectOp::Done(bytes)) => completion(Ok(bytes)),
                Ok(mut op) => {
                    if let DirectOp::Write { fua, .. } = &mut op {
                        // Alone on the queue: carry its own barrier.
                        *fua |= self.engine.write_through() && self.writes == 0;
                        self.writes += 1;
                    }
                    self.submit(q, tag, InFlight { op, done: 0 });
                    return;
                }
                Err(err) => completion(Err(err)),
            }
        };
        commit(q, tag, res);
    }

    /// Submit the (rest of the) backing I/O for `io` and park it; a request
    /// that cannot be submitted completes as failed.
    fn submit(&mut self, q: &UblkQueue, tag: u16, io: InFlight) {
        let Some(slot) = self.inflight.get_mut(usize::from(tag)) else {
            log::error!("tag {tag} out of range");
            return;
        };
        let submitted = backing_sqe(self.backing, tag, io)
            .map(|sqe| q.ublk_submit_sqe_sync(sqe.user_data(user_data(tag, io.op))));
        match submitted {
            Some(Ok(())) => *slot = Some(io),
            failed => {
                log::error!("tag {tag}: cannot submit {:?}: {failed:?}", io.op);
                if matches!(io.op, DirectOp::Write { .. }) {
                    self.writes = self.writes.saturating_sub(1);
                }
                // Accounted as a failed I/O: a sync that never ran latches.
                commit(
                    q,
                    tag,
                    completion(self.engine.direct_done(io.op, -libc::EIO)),
                );
            }
        }
    }
}

/// Whether `req` is a READ or WRITE the queue thread copies itself.
fn copied_in_thread(req: &Request) -> bool {
    matches!(req.op, Op::Read | Op::Write { .. }) && req.len < REGISTERED_FROM
}

/// Acknowledge request `tag` with `res` and fetch its next.
fn commit(q: &UblkQueue, tag: u16, res: i32) {
    if let Err(err) = q.complete_io_cmd_unified(
        tag,
        BufDesc::AutoReg(buf_reg(tag)),
        Ok(UblkIORes::Result(res)),
    ) {
        log::error!("tag {tag}: commit failed: {err}");
    }
}

/// The registration the kernel makes for `tag`: buffer index = tag.
fn buf_reg(tag: u16) -> sys::ublk_auto_buf_reg {
    sys::ublk_auto_buf_reg {
        index: tag,
        flags: 0,
        reserved0: 0,
        reserved1: 0,
    }
}

/// Serve queue `qid` on the direct path until the device stops; its
/// io_uring workers run on `worker_cpus`.
pub fn serve_queue(
    qid: u16,
    worker_cpus: &[usize],
    dev: &UblkDev,
    engine: &Engine,
    backing: &DirectBacking,
) {
    let queue = match UblkQueue::new(qid, dev) {
        Ok(queue) => queue,
        Err(err) => {
            log::error!("queue {qid}: setup failed: {err}");
            return;
        }
    };
    let regs: Vec<sys::ublk_auto_buf_reg> = (0..queue.get_depth())
        .map(|tag| buf_reg(u16::try_from(tag).expect("invariant: queue depth <= 4096 fits u16")))
        .collect();
    let queue = match queue.submit_fetch_commands_unified(BufDescList::AutoRegs(&regs)) {
        Ok(queue) => queue,
        Err(err) => {
            log::error!("queue {qid}: fetch failed: {err}");
            return;
        }
    };
    // Every request it does not copy itself hops to an io_uring worker.
    crate::ublk::affinity::pin_io_workers(qid, worker_cpus);
    let mut state = DirectQueue {
        qid,
        engine,
        backing,
        inflight: vec![None; regs.len()],
        writes: 0,
        unsynced: BatchSync::default(),
        copier: copies_small(engine.write_through(), dev.dev_info.flags).then(|| Copier {
            cdev: dev.tgt.fds[0],
            staging: IoBuf::new(
                usize::try_from(REGISTERED_FROM).expect("invariant: 64 KiB fits usize"),
            ),
        }),
    };
    queue.wait_and_handle_io(|q: &UblkQueue, tag: u16, ctx: &UblkIOCtx| {
        state.handle(q, tag, ctx);
    });
    log::info!("queue {qid}: stopped");
}

/// Whether a queue copies small requests itself: writing through, on a
/// device granted user copy. A device added by an older pmem-stack, which
/// asked only for `UBLK_F_AUTO_BUF_REG`, keeps its flags when this one
/// recovers it (a live upgrade), and there user copy fails with `EACCES`:
/// every request goes through the registered pages, as it did.
fn copies_small(write_through: bool, granted: u64) -> bool {
    write_through && granted & u64::from(sys::UBLK_F_USER_COPY) != 0
}

/// Where a request stands after one backing completion.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// Part of the transfer is left: submit the rest.
    More,
    /// Complete the request with this result (bytes or -errno).
    Finished(i32),
}

/// Account one completion with result `res` to `io`.
fn progress(io: &mut InFlight, res: i32) -> Progress {
    let total = match io.op {
        DirectOp::Read { len, .. } | DirectOp::Write { len, .. } => len,
        DirectOp::Sync | DirectOp::Done(_) => return Progress::Finished(res),
    };
    let Ok(moved) = u32::try_from(res) else {
        return Progress::Finished(res);
    };
    if moved == 0 {
        // No progress at all: the backing ended or refused; never spin.
        return Progress::Finished(-libc::EIO);
    }
    io.done = io.done.saturating_add(moved).min(total);
    if io.done < total {
        Progress::More
    } else {
        Progress::Finished(i32::try_from(total).unwrap_or(-libc::EIO))
    }
}

/// The io_uring operation for (the rest of) `io` against the backing.
fn backing_sqe(backing: &DirectBacking, tag: u16, io: InFlight) -> Option<io_uring::squeue::Entry> {
    let fd = types::Fd(backing.file.as_raw_fd());
    let at = |offset: u64| {
        backing
            .data_offset
            .checked_add(offset)
            .and_then(|o| o.checked_add(u64::from(io.done)))
    };
    // For a kernel-registered buffer the address is the offset into the
    // request's pages, not a pointer into this process.
    let buf_at = io.done as usize as *mut u8;
    match io.op {
        DirectOp::Read { at: offset, len } => at(offset).map(|pos| {
            opcode::ReadFixed::new(fd, buf_at, len - io.done, tag)
                .offset(pos)
                .build()
        }),
        DirectOp::Write {
            at: offset,
            len,
            fua,
        } => at(offset).map(|pos| {
            opcode::WriteFixed::new(fd, buf_at.cast_const(), len - io.done, tag)
                .offset(pos)
                .rw_flags(if fua { libc::RWF_DSYNC } else { 0 })
                .build()
        }),
        DirectOp::Sync => Some(
            opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        ),
        DirectOp::Done(_) => None,
    }
}

/// `user_data` of request `tag`'s backing I/O.
fn user_data(tag: u16, op: DirectOp) -> u64 {
    let op = match op {
        DirectOp::Read { .. } => sys::UBLK_IO_OP_READ,
        DirectOp::Write { .. } => sys::UBLK_IO_OP_WRITE,
        _ => sys::UBLK_IO_OP_FLUSH,
    };
    UblkIOCtx::build_user_data(tag, op, 0, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(len: u32) -> InFlight {
        InFlight {
            op: DirectOp::Read { at: 0, len },
            done: 0,
        }
    }

    #[test]
    fn a_full_transfer_finishes_with_its_length() {
        let mut io = read(4096);
        assert_eq!(progress(&mut io, 4096), Progress::Finished(4096));
    }

    #[test]
    fn a_short_transfer_continues_where_it_stopped() {
        let mut io = read(8192);
        assert_eq!(progress(&mut io, 4096), Progress::More);
        assert_eq!(io.done, 4096);
        assert_eq!(progress(&mut io, 4096), Progress::Finished(8192));
    }

    #[test]
    fn small_requests_are_copied_only_writing_through_with_user_copy_granted() {
        let auto_reg = u64::from(sys::UBLK_F_AUTO_BUF_REG);
        let both = auto_reg | u64::from(sys::UBLK_F_USER_COPY);
        assert!(copies_small(true, both));
        assert!(!copies_small(false, both), "write-back registers all");
        assert!(
            !copies_small(true, auto_reg),
            "a device added by an older pmem-stack has no user copy"
        );
        let small = |op, len| Request { op, offset: 0, len };
        assert!(copied_in_thread(&small(Op::Read, 4096)));
        assert!(copied_in_thread(&small(
            Op::Write { fua: true },
            REGISTERED_FROM - 512
        )));
        assert!(!copied_in_thread(&small(
            Op::Write { fua: false },
            REGISTERED_FROM
        )));
        assert!(!copied_in_thread(&small(Op::Flush, 0)));
        assert!(!copied_in_thread(&small(Op::Discard, 4096)));
    }

    #[test]
    fn errors_and_stalls_finish_with_an_error() {
        let mut io = read(8192);
        assert_eq!(
            progress(&mut io, -libc::EIO),
            Progress::Finished(-libc::EIO)
        );
        let mut io = read(8192);
        assert_eq!(progress(&mut io, 0), Progress::Finished(-libc::EIO));
        let mut sync = InFlight {
            op: DirectOp::Sync,
            done: 0,
        };
        assert_eq!(progress(&mut sync, 0), Progress::Finished(0));
    }
}
