//! Group commit: how a write-through queue acknowledges writes that reach
//! the backing plain (without `RWF_DSYNC`), which finish before the
//! device's cache behind them is flushed.
//!
//! Making each such write durable alone costs a whole flush per write. So a
//! write that finished waits in its queue's [`BatchSync`] until the end of
//! the batch of completions it arrived in; there the queue thread calls
//! `fdatasync` once on the backing, which makes durable every write that
//! finished before it — and only then are they acknowledged, each with its
//! own result or the sync's error. A write that is alone goes `RWF_DSYNC`
//! instead and waits for nothing: written in the queue thread, the last of
//! its batch with no write waiting ([`BatchSync::alone`]); handed to the
//! pmem driver on the direct path, no other write in flight on its queue.
//!
//! The sync runs when the queue sees its batch's last completion. libublk
//! drops a ublk command's completion whose result is not a request (an
//! abort as the device stops); writes waiting then are never acknowledged
//! by this server — never lost, as nothing was promised.
//!
//! Every data plane does it the same way, in its own thread. The user-copy
//! and batch queues write in that thread anyway. The direct path's writes
//! run on io_uring workers (the pmem driver takes no `REQ_NOWAIT` I/O), and
//! it used to make its sync one more io_uring operation, with a second sync
//! queued behind one in flight: a second worker hop for every group.
//! Syncing in the queue thread at the end of the batch instead, same boot,
//! 7.3, 3 rounds (bench/README.md, "The direct path's sync in its own
//! thread"): 128 KiB writes 1.17× the throughput at 0.90× the CPU per I/O,
//! 4 KiB QD32 writes 1.25× at 0.71×. Over `/dev/pmemN` the sync has no dirty
//! page behind it (every write went `O_DIRECT`) and is a flush of the
//! namespace: the queue thread waits microseconds for it.

use crate::backing::direct_io::DirectBacking;
use crate::engine::direct::DirectOp;
use crate::engine::{Engine, IoError};

use super::request::completion;

/// A write-through request's fate once served.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    /// Complete it with this byte count.
    Done(u64),
    /// Written, not yet durable: complete it after the batch's sync.
    Unsynced(DirectOp, i32),
}

/// Write-through writes of one batch, written plain and waiting for the
/// batch's one sync: (tag, what was written, result). Shared by every
/// queue, so the rule "nothing is acknowledged before it is durable" lives
/// in one place.
#[derive(Debug, Default)]
pub(super) struct BatchSync(Vec<(u16, DirectOp, i32)>);

impl BatchSync {
    /// Whether no write waits.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a write served now is alone: its completion ends the batch
    /// (`last_cqe`) and no write of the batch waits for a sync. Such a
    /// write carries its own barrier (`RWF_DSYNC`) instead of costing the
    /// batch a sync; any other waits for the one at the batch's end.
    pub(super) fn alone(&self, last_cqe: bool) -> bool {
        last_cqe && self.is_empty()
    }

    /// A write of `op` finished on the backing with `res` (bytes), not yet
    /// durable: it waits for the sync.
    pub(super) fn wait(&mut self, tag: u16, op: DirectOp, res: i32) {
        self.0.push((tag, op, res));
    }

    /// A served request: a write left for the sync waits here; anything
    /// else is `answer`ed now (bytes done, or a negative errno).
    pub(super) fn settle(
        &mut self,
        tag: u16,
        result: Result<Written, IoError>,
        mut answer: impl FnMut(u16, i32),
    ) {
        match result {
            Ok(Written::Unsynced(op, res)) => self.wait(tag, op, res),
            Ok(Written::Done(bytes)) => answer(tag, completion(Ok(bytes))),
            Err(err) => answer(tag, completion(Err(err))),
        }
    }

    /// End of a batch: one `fdatasync` makes every waiting write durable
    /// (each was complete on the backing before it started); then each is
    /// accounted by `engine` and `answer`ed, or fails with the sync.
    pub(super) fn sync(
        &mut self,
        qid: u16,
        engine: &Engine,
        direct: &DirectBacking,
        mut answer: impl FnMut(u16, i32),
    ) {
        if self.0.is_empty() {
            return;
        }
        let synced = direct.file.sync_data();
        if let Err(err) = &synced {
            log::error!("queue {qid}: sync of a batch of writes failed: {err}");
        }
        self.finish(synced, |tag, op, res| {
            answer(tag, completion(engine.direct_done(op, res)));
        });
    }

    /// The sync ended with `synced`: hand `each` every waiting write, with
    /// its own result or the sync's error (a negative errno), and wait for
    /// nothing more. (Drained in place: the list keeps its capacity, so a
    /// queue allocates nothing per batch.)
    fn finish(&mut self, synced: std::io::Result<()>, mut each: impl FnMut(u16, DirectOp, i32)) {
        let failed = synced.err().map(|e| -e.raw_os_error().unwrap_or(libc::EIO));
        for (tag, op, res) in self.0.drain(..) {
            each(tag, op, failed.unwrap_or(res));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(at: u64) -> DirectOp {
        DirectOp::Write {
            at,
            len: 4096,
            fua: false,
        }
    }

    /// `finish`, with the writes it hands over collected.
    fn finish(batch: &mut BatchSync, synced: std::io::Result<()>) -> Vec<(u16, DirectOp, i32)> {
        let mut done = Vec::new();
        batch.finish(synced, |tag, op, res| done.push((tag, op, res)));
        done
    }

    #[test]
    fn a_write_waits_for_the_sync_and_anything_else_is_answered_at_once() {
        let mut batch = BatchSync::default();
        let mut answered = Vec::new();
        batch.settle(3, Ok(Written::Unsynced(write(0), 4096)), |t, r| {
            answered.push((t, r));
        });
        batch.settle(4, Ok(Written::Done(512)), |t, r| answered.push((t, r)));
        batch.settle(5, Err(IoError::Failed), |t, r| answered.push((t, r)));
        assert_eq!(answered.len(), 2, "only the unsynced write waits");
        assert_eq!(answered[0], (4, 512));
        assert!(answered[1].1 < 0, "an error is answered as one");
        assert!(!batch.is_empty());
        assert_eq!(finish(&mut batch, Ok(())), vec![(3, write(0), 4096)]);
        assert!(batch.is_empty());
    }

    #[test]
    fn a_failed_sync_fails_every_write_it_covered() {
        let mut batch = BatchSync::default();
        for tag in 0..3 {
            batch.settle(tag, Ok(Written::Unsynced(write(0), 4096)), |_, _| {
                panic!("nothing is answered before the sync")
            });
        }
        let done = finish(
            &mut batch,
            Err(std::io::Error::from_raw_os_error(libc::EIO)),
        );
        assert_eq!(done.len(), 3);
        assert!(done.iter().all(|&(_, _, res)| res == -libc::EIO));
        assert!(batch.is_empty(), "the next batch starts empty");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the batches, their writes and their syncs' results:
            /// every write is handed back exactly once, by the sync of its
            /// own batch, never before it, with its own result if that sync
            /// succeeded and the sync's error if not.
            #[test]
            fn every_write_is_acknowledged_once_by_its_batchs_sync(
                batches in proptest::collection::vec(
                    (proptest::collection::vec(1i32..=131_072, 0..16), any::<bool>()),
                    1..16,
                ),
            ) {
                let mut batch = BatchSync::default();
                let mut next_tag = 0u16;
                let mut acked = std::collections::HashMap::new();
                for (writes, sync_ok) in &batches {
                    let first = next_tag;
                    for &res in writes {
                        let at = u64::from(next_tag);
                        batch.settle(next_tag, Ok(Written::Unsynced(write(at), res)), |_, _| {});
                        next_tag += 1;
                    }
                    prop_assert_eq!(acked.len(), usize::from(first), "nothing early");
                    let synced = if *sync_ok {
                        Ok(())
                    } else {
                        Err(std::io::Error::from_raw_os_error(libc::EIO))
                    };
                    for (tag, op, res) in finish(&mut batch, synced) {
                        prop_assert!((first..next_tag).contains(&tag), "its own batch");
                        prop_assert_eq!(op, write(u64::from(tag)));
                        let own = writes[usize::from(tag - first)];
                        prop_assert_eq!(res, if *sync_ok { own } else { -libc::EIO });
                        prop_assert!(acked.insert(tag, res).is_none(), "twice");
                    }
                    prop_assert_eq!(acked.len(), usize::from(next_tag), "all of the batch");
                    prop_assert!(batch.is_empty());
                }
            }
        }
    }
}
