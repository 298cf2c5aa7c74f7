//! The direct data plane (Linux 6.16+, `UBLK_F_AUTO_BUF_REG`): the kernel
//! registers each request's pages as fixed buffer number *tag* in the
//! queue's io_uring before handing the request over, and this queue reads
//! or writes them with `READ_FIXED` / `WRITE_FIXED` against the backing
//! opened `O_DIRECT`. The backing's driver (for `/dev/pmemN`, the pmem
//! driver's `memcpy_flushcache`) makes the one copy; no page of the media
//! is cached in DRAM, nothing faults, and a FLUSH is an `fdatasync` with no
//! dirty pages behind it, submitted like any other request so it never
//! stalls the queue.
//!
//! The engine still decides every request ([`Engine::plan_direct`]) and
//! hears every outcome ([`Engine::direct_done`]); this module only submits
//! and completes. A short transfer (which the pmem driver does not make,
//! but a file system may) is continued from where it stopped.

use std::fs::File;
use std::os::fd::AsRawFd;

use io_uring::{opcode, types};
use libublk::io::{UblkDev, UblkIOCtx, UblkQueue};
use libublk::{BufDesc, BufDescList, UblkIORes, sys};

use crate::engine::Engine;
use crate::engine::direct::DirectOp;

use super::queue::{completion, request_of};

/// The backing as the direct path sees it.
#[derive(Debug)]
pub struct DirectBacking {
    /// The backing, reopened `O_DIRECT`.
    pub file: File,
    /// Byte offset of the data area in it.
    pub data_offset: u64,
}

/// A request whose backing I/O is in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    op: DirectOp,
    /// Bytes already transferred (a short transfer continues from here).
    done: u32,
}

/// `tgt_data` of a group commit's sync, which belongs to no one request.
const GROUP_SYNC: u32 = 1;

/// Whether a target completion is a group commit's sync.
fn is_group_sync(user_data: u64) -> bool {
    (user_data >> 24) & 0xffff == u64::from(GROUP_SYNC)
}

/// Group commit of a write-through queue.
///
/// A write submitted with `RWF_DSYNC` costs the block layer a whole cache
/// flush after the FUA write (`generic_write_sync`), and concurrent flushes
/// queue behind one another: at depth 32 that halved random-write IOPS.
/// So a write that has company goes out plain, and when it completes it
/// waits here for one `fdatasync` issued after it, which makes it — and
/// every write that completed before that sync started — durable; only then
/// is it acknowledged. A write alone on its queue goes out `RWF_DSYNC` and
/// needs no group (one worker hop instead of two).
#[derive(Debug, Default)]
struct GroupCommit {
    /// Completed writes no sync in flight covers yet: (tag, op, result).
    waiting: Vec<(u16, DirectOp, i32)>,
    /// The writes the sync in flight covers.
    covered: Vec<(u16, DirectOp, i32)>,
    /// A sync is in flight.
    syncing: bool,
}

impl GroupCommit {
    /// A plain write completed on the backing. True: submit a sync now.
    fn write_done(&mut self, tag: u16, op: DirectOp, res: i32) -> bool {
        self.waiting.push((tag, op, res));
        self.start()
    }

    /// Cover the waiting writes with a new sync, unless one is in flight
    /// (it may have started before they completed: they wait for the next).
    fn start(&mut self) -> bool {
        if self.syncing || self.waiting.is_empty() {
            return false;
        }
        std::mem::swap(&mut self.waiting, &mut self.covered);
        self.syncing = true;
        true
    }

    /// The sync finished with `res`: hand `each` the writes it covered, each
    /// with its own result or the sync's error; true: submit the next sync.
    /// (Drained in place: the two lists keep their capacity.)
    fn sync_done(&mut self, res: i32, mut each: impl FnMut(u16, DirectOp, i32)) -> bool {
        self.syncing = false;
        for (tag, op, own) in self.covered.drain(..) {
            each(tag, op, if res < 0 { res } else { own });
        }
        self.start()
    }
}

/// One queue's requests on the direct path.
struct DirectQueue<'a> {
    engine: &'a Engine,
    backing: &'a DirectBacking,
    inflight: Vec<Option<InFlight>>,
    /// Writes submitted to the backing and not finished there.
    writes: u32,
    group: GroupCommit,
}

impl DirectQueue<'_> {
    fn handle(&mut self, q: &UblkQueue, tag: u16, ctx: &UblkIOCtx) {
        if ctx.is_tgt_io() && is_group_sync(ctx.user_data()) {
            self.finish_group_sync(q, ctx.result());
            return;
        }
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
                            if self.group.write_done(tag, io.op, res) {
                                self.submit_group_sync(q);
                            }
                            return;
                        }
                    }
                    completion(self.engine.direct_done(io.op, res))
                }
            }
        } else {
            let planned = request_of(q, tag, self.engine.size())
                .and_then(|req| self.engine.plan_direct(&req));
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

    fn submit_group_sync(&mut self, q: &UblkQueue) {
        let sqe = opcode::Fsync::new(types::Fd(self.backing.file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(UblkIOCtx::build_user_data(
                0,
                sys::UBLK_IO_OP_FLUSH,
                GROUP_SYNC,
                true,
            ));
        if let Err(err) = q.ublk_submit_sqe_sync(sqe) {
            log::error!("cannot submit a group sync: {err:?}");
            // Its writes fail; any waiting since get a sync of their own.
            self.finish_group_sync(q, -libc::EIO);
        }
    }

    /// The group sync ended with `res`: acknowledge the writes it covered,
    /// and cover those waiting since with the next.
    fn finish_group_sync(&mut self, q: &UblkQueue, res: i32) {
        let engine = self.engine;
        let again = self.group.sync_done(res, |tag, op, res| {
            commit(q, tag, completion(engine.direct_done(op, res)));
        });
        if again {
            self.submit_group_sync(q);
        }
    }
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

/// Serve queue `qid` on the direct path until the device stops.
pub fn serve_queue(qid: u16, dev: &UblkDev, engine: &Engine, backing: &DirectBacking) {
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
    let mut state = DirectQueue {
        engine,
        backing,
        inflight: vec![None; regs.len()],
        writes: 0,
        group: GroupCommit::default(),
    };
    queue.wait_and_handle_io(|q: &UblkQueue, tag: u16, ctx: &UblkIOCtx| {
        state.handle(q, tag, ctx);
    });
    log::info!("queue {qid}: stopped");
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

    fn write(tag: u16) -> (u16, DirectOp) {
        (
            tag,
            DirectOp::Write {
                at: u64::from(tag) * 4096,
                len: 4096,
                fua: false,
            },
        )
    }

    /// `sync_done`, with the writes it hands over collected.
    fn finish(g: &mut GroupCommit, res: i32) -> (Vec<(u16, DirectOp, i32)>, bool) {
        let mut done = Vec::new();
        let again = g.sync_done(res, |tag, op, res| done.push((tag, op, res)));
        (done, again)
    }

    #[test]
    fn group_commit_acknowledges_a_write_only_after_a_sync_that_began_after_it() {
        let mut g = GroupCommit::default();
        let (a, op) = write(1);
        assert!(g.write_done(a, op, 4096), "the first write starts a sync");
        let (b, op_b) = write(2);
        assert!(
            !g.write_done(b, op_b, 4096),
            "a sync is in flight: the second waits for the next"
        );
        let (done, again) = finish(&mut g, 0);
        assert_eq!(done, vec![(1, op, 4096)]);
        assert!(again, "the waiting write needs its own sync");
        let (done, again) = finish(&mut g, 0);
        assert_eq!(done, vec![(2, op_b, 4096)]);
        assert!(!again);
        assert!(g.covered.is_empty() && g.waiting.is_empty() && !g.syncing);
    }

    #[test]
    fn a_failed_group_sync_fails_every_write_it_covered() {
        let mut g = GroupCommit::default();
        let (a, op) = write(1);
        g.write_done(a, op, 4096);
        let (done, again) = finish(&mut g, -libc::EIO);
        assert_eq!(done, vec![(1, op, -libc::EIO)]);
        assert!(!again);
    }

    #[test]
    fn writes_waiting_behind_a_failed_sync_get_one_of_their_own() {
        let mut g = GroupCommit::default();
        let (a, op) = write(1);
        let (b, op_b) = write(2);
        g.write_done(a, op, 4096);
        g.write_done(b, op_b, 4096);
        let (done, again) = finish(&mut g, -libc::EIO);
        assert_eq!(done, vec![(1, op, -libc::EIO)]);
        assert!(again, "never stranded: the waiting write is covered next");
        let (done, _) = finish(&mut g, 0);
        assert_eq!(done, vec![(2, op_b, 4096)]);
    }

    #[test]
    fn a_group_sync_is_recognised_by_its_user_data() {
        let sync = UblkIOCtx::build_user_data(0, sys::UBLK_IO_OP_FLUSH, GROUP_SYNC, true);
        assert!(is_group_sync(sync));
        assert!(!is_group_sync(user_data(0, DirectOp::Sync)));
        assert!(!is_group_sync(user_data(7, write(7).1)));
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
