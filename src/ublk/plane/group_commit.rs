//! Group commit: how a write-through queue on the direct path acknowledges
//! plain `O_DIRECT` writes, which finish before the device's cache behind
//! them is flushed.
//!
//! Making each such write durable alone costs a whole sync per write, and
//! syncs queue behind one another: at depth 32 that halved random-write
//! IOPS on the direct path. So a finished write waits here for one
//! `fdatasync` of the backing submitted after it finished, which makes it —
//! and every write that finished before that sync started — durable; only
//! then is it acknowledged. A sync in flight may have started before a write
//! finished, so writes finishing meanwhile wait for the next one.
//!
//! The sync is an io_uring `FSYNC` on the queue's own ring, tagged with
//! [`GROUP_SYNC`] in its `tgt_data` because it belongs to no one request.
//! [`GroupCommit`] is the pure bookkeeping (generic over what a queue keeps
//! per write, so its properties are tested on plain numbers); the queue
//! submits and commits.
//!
//! The queues that write in their own thread (user copy and batch, writing
//! through) need no sync in flight: they sync once at the end of a batch of
//! requests, through `ublk::plane::copy::BatchSync`.

use io_uring::{opcode, squeue, types};
use libublk::io::UblkIOCtx;
use libublk::sys;

/// `tgt_data` of a group commit's sync.
const GROUP_SYNC: u32 = 1;

/// Whether a target completion (its `user_data`) is a group commit's sync.
pub fn is_group_sync(user_data: u64) -> bool {
    (user_data >> 24) & 0xffff == u64::from(GROUP_SYNC)
}

/// The group sync of the backing open as `fd`, ready to submit.
pub fn group_sync_sqe(fd: std::os::fd::RawFd) -> squeue::Entry {
    opcode::Fsync::new(types::Fd(fd))
        .flags(types::FsyncFlags::DATASYNC)
        .build()
        .user_data(UblkIOCtx::build_user_data(
            0,
            sys::UBLK_IO_OP_FLUSH,
            GROUP_SYNC,
            true,
        ))
}

/// The writes of one queue waiting for a group sync, each as (tag, what the
/// queue needs to complete it, its own result).
#[derive(Debug)]
pub struct GroupCommit<T> {
    /// Finished writes no sync in flight covers yet.
    waiting: Vec<(u16, T, i32)>,
    /// The writes the sync in flight covers.
    covered: Vec<(u16, T, i32)>,
    /// A sync is in flight.
    syncing: bool,
}

impl<T> Default for GroupCommit<T> {
    fn default() -> Self {
        GroupCommit {
            waiting: Vec::new(),
            covered: Vec::new(),
            syncing: false,
        }
    }
}

impl<T> GroupCommit<T> {
    /// A write finished with `res` and waits for durability. True: submit a
    /// sync now.
    pub fn write_done(&mut self, tag: u16, what: T, res: i32) -> bool {
        self.waiting.push((tag, what, res));
        self.start()
    }

    /// Cover the waiting writes with a new sync, unless one is in flight.
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
    /// (Drained in place: the two lists keep their capacity, so a queue
    /// allocates nothing per group.)
    pub fn sync_done(&mut self, res: i32, mut each: impl FnMut(u16, T, i32)) -> bool {
        self.syncing = false;
        for (tag, what, own) in self.covered.drain(..) {
            each(tag, what, if res < 0 { res } else { own });
        }
        self.start()
    }

    /// Whether nothing waits and no sync is in flight.
    #[cfg(test)]
    fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.covered.is_empty() && !self.syncing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sync_done`, with the writes it hands over collected.
    fn finish(g: &mut GroupCommit<u64>, res: i32) -> (Vec<(u16, u64, i32)>, bool) {
        let mut done = Vec::new();
        let again = g.sync_done(res, |tag, what, res| done.push((tag, what, res)));
        (done, again)
    }

    #[test]
    fn a_write_is_acknowledged_only_after_a_sync_that_began_after_it() {
        let mut g = GroupCommit::default();
        assert!(g.write_done(1, 10, 4096), "the first write starts a sync");
        assert!(
            !g.write_done(2, 20, 4096),
            "a sync is in flight: the second waits for the next"
        );
        let (done, again) = finish(&mut g, 0);
        assert_eq!(done, vec![(1, 10, 4096)]);
        assert!(again, "the waiting write needs its own sync");
        let (done, again) = finish(&mut g, 0);
        assert_eq!(done, vec![(2, 20, 4096)]);
        assert!(!again);
        assert!(g.is_idle());
    }

    #[test]
    fn a_failed_sync_fails_every_write_it_covered() {
        let mut g = GroupCommit::default();
        g.write_done(1, 10, 4096);
        let (done, again) = finish(&mut g, -libc::EIO);
        assert_eq!(done, vec![(1, 10, -libc::EIO)]);
        assert!(!again);
    }

    #[test]
    fn writes_waiting_behind_a_failed_sync_get_one_of_their_own() {
        let mut g = GroupCommit::default();
        g.write_done(1, 10, 4096);
        g.write_done(2, 20, 4096);
        let (done, again) = finish(&mut g, -libc::EIO);
        assert_eq!(done, vec![(1, 10, -libc::EIO)]);
        assert!(again, "never stranded: the waiting write is covered next");
        let (done, _) = finish(&mut g, 0);
        assert_eq!(done, vec![(2, 20, 4096)]);
    }

    #[test]
    fn a_group_sync_is_recognised_by_its_user_data() {
        assert!(is_group_sync(group_sync_sqe(3).get_user_data()));
        for op in [sys::UBLK_IO_OP_READ, sys::UBLK_IO_OP_FLUSH] {
            assert!(!is_group_sync(UblkIOCtx::build_user_data(7, op, 0, true)));
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the interleaving of finished writes and sync
            /// results: every write is handed back exactly once, never by a
            /// sync that was submitted before the write finished, and a
            /// successful sync hands back the write's own result.
            #[test]
            fn every_write_is_acknowledged_once_by_a_later_sync(
                events in proptest::collection::vec(prop_oneof![
                    Just(None),
                    Just(Some(0i32)),
                    Just(Some(-libc::EIO)),
                ], 1..64),
            ) {
                let mut g: GroupCommit<u64> = GroupCommit::default();
                // Sync number n is submitted at event `submitted[n]`.
                let mut submitted: Vec<usize> = Vec::new();
                let mut finished_at = std::collections::HashMap::new();
                let mut acked = std::collections::HashMap::new();
                let mut next_tag = 0u16;
                let mut in_flight = false;
                for (step, event) in events.iter().enumerate() {
                    match event {
                        None => {
                            finished_at.insert(next_tag, step);
                            if g.write_done(next_tag, u64::from(next_tag), 4096) {
                                prop_assert!(!in_flight);
                                in_flight = true;
                                submitted.push(step);
                            }
                            next_tag += 1;
                        }
                        Some(res) if in_flight => {
                            in_flight = false;
                            let sync_started = *submitted.last().expect("a sync");
                            let mut handed = Vec::new();
                            if g.sync_done(*res, |tag, what, r| handed.push((tag, what, r))) {
                                in_flight = true;
                                submitted.push(step);
                            }
                            for (tag, what, r) in handed {
                                prop_assert_eq!(what, u64::from(tag));
                                prop_assert!(finished_at[&tag] <= sync_started);
                                prop_assert_eq!(r, if *res < 0 { *res } else { 4096 });
                                prop_assert!(acked.insert(tag, r).is_none(), "twice");
                            }
                        }
                        Some(_) => {}
                    }
                }
                // Drain: every write is handed back in the end.
                while in_flight {
                    in_flight = g.sync_done(0, |tag, _, r| {
                        acked.insert(tag, r);
                    });
                }
                prop_assert_eq!(acked.len(), usize::from(next_tag));
                prop_assert!(g.is_idle());
            }
        }
    }
}
