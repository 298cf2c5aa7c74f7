//! The engine's rules for the direct I/O path, where the kernel's driver for
//! the backing moves the data (io_uring `O_DIRECT` reads and writes of the
//! request's own pages) and the engine only decides and accounts.
//!
//! Why the engine still decides: bounds, the failure latch and FLUSH meaning
//! must be the same whichever path serves a request, and they are pure logic
//! that tests check without a kernel. The queue thread submits what
//! [`Engine::plan_direct`] returns and reports the outcome to
//! [`Engine::direct_done`].
//!
//! FLUSH on this path is a data sync of the backing (`fdatasync`: no page
//! cache to write back, only the device's cache to flush). It is skipped
//! when no write has completed since the last sync was issued and no sync is
//! in flight — a sync in flight may not cover writes acknowledged after it
//! started, so a FLUSH arriving then always issues its own.
//!
//! Write-through ([`Engine::set_write_through`], the default over a block
//! device): a write is acknowledged only once it is durable — submitted with
//! `RWF_DSYNC` when it is alone (`ublk::plane::group_commit`), else covered by the sync that ends
//! its batch of completions (`ublk::plane::group_commit`). So the device tells the kernel it
//! has no volatile cache, and the block layer completes every FLUSH (an
//! `fsync`, a journal commit) without a round trip to this server. DISCARD
//! and WRITE ZEROES, done below the cache, are followed by their own sync.
//! Nothing acknowledged is ever pending, so nothing latches: a failed write
//! fails alone.

use std::sync::atomic::Ordering;

use super::{Engine, IoError, Media, Op, Request};

/// What the queue thread submits for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectOp {
    /// Read `len` bytes at data-area offset `at` into the request's pages.
    Read { at: u64, len: u32 },
    /// Write the request's pages to `at`; `fua`: with `RWF_DSYNC`.
    Write { at: u64, len: u32, fua: bool },
    /// `fdatasync` the backing.
    Sync,
    /// Nothing to submit: the request is complete with this byte count.
    Done(u64),
}

impl<M: Media> Engine<M> {
    /// Check `req` for the direct path and say what to submit. DISCARD and
    /// WRITE ZEROES are carried out here (below the page cache), as on the
    /// mapped path.
    pub fn plan_direct(&self, req: &Request) -> Result<DirectOp, IoError> {
        let len = || u32::try_from(req.len).map_err(|_| self.out_of_range(req));
        match req.op {
            Op::Read => {
                self.range_of(req)?;
                self.stats.reads.fetch_add(1, Ordering::Relaxed);
                Ok(DirectOp::Read {
                    at: req.offset,
                    len: len()?,
                })
            }
            Op::Write { fua } => {
                self.range_of(req)?;
                if fua && self.failed.load(Ordering::Acquire) {
                    return Err(IoError::Failed);
                }
                self.stats.writes.fetch_add(1, Ordering::Relaxed);
                Ok(DirectOp::Write {
                    at: req.offset,
                    len: len()?,
                    fua,
                })
            }
            Op::Flush if self.direct.write_through => {
                // Every completed write is already durable.
                self.stats.flushes.fetch_add(1, Ordering::Relaxed);
                self.stats.empty_flushes.fetch_add(1, Ordering::Relaxed);
                Ok(DirectOp::Done(0))
            }
            Op::Flush => {
                self.stats.flushes.fetch_add(1, Ordering::Relaxed);
                if self.failed.load(Ordering::Acquire) {
                    return Err(IoError::Failed);
                }
                let written = self.direct.written.swap(false, Ordering::AcqRel);
                if !written && self.direct.syncs_in_flight.load(Ordering::Acquire) == 0 {
                    self.stats.empty_flushes.fetch_add(1, Ordering::Relaxed);
                    return Ok(DirectOp::Done(0));
                }
                self.direct.syncs_in_flight.fetch_add(1, Ordering::AcqRel);
                Ok(DirectOp::Sync)
            }
            Op::Discard | Op::WriteZeroes => {
                let done = self.execute(req, &mut NoData)?;
                if self.direct.write_through {
                    // Durable before it completes, like every write here.
                    self.direct.syncs_in_flight.fetch_add(1, Ordering::AcqRel);
                    return Ok(DirectOp::Sync);
                }
                // Zeroing below the cache needs no sync of its own, but a
                // FLUSH after it must not be skipped.
                self.direct.written.store(true, Ordering::Release);
                Ok(DirectOp::Done(done))
            }
        }
    }

    /// The outcome of a submitted `op`: `res` is the io_uring result (bytes
    /// or a negative errno). A failed sync or FUA write latches the engine
    /// failed, as a failed write-back does on the mapped path.
    pub fn direct_done(&self, op: DirectOp, res: i32) -> Result<u64, IoError> {
        let outcome = u64::try_from(res)
            .map_err(|_| IoError::Persist(std::io::Error::from_raw_os_error(-res)));
        match op {
            DirectOp::Sync => {
                self.direct.syncs_in_flight.fetch_sub(1, Ordering::AcqRel);
                if outcome.is_err() {
                    self.direct.written.store(true, Ordering::Release);
                }
            }
            DirectOp::Write { .. } if outcome.is_ok() => {
                self.direct.written.store(true, Ordering::Release);
            }
            _ => {}
        }
        // Write-back: a failed sync or FUA write may have lost writes
        // acknowledged before it. Write-through has nothing pending to lose.
        let latch = !self.direct.write_through
            && matches!(op, DirectOp::Sync | DirectOp::Write { fua: true, .. });
        outcome.map_err(|err| {
            if latch {
                self.failed.store(true, Ordering::Release);
                log::error!("direct path: {op:?} failed: {err}");
                return err;
            }
            match err {
                IoError::Persist(e) => IoError::Transfer(e),
                other => other,
            }
        })
    }
}

/// DISCARD and WRITE ZEROES move no request data.
struct NoData;

impl super::Transfer for NoData {
    fn deliver(&mut self, _src: &crate::backing::MediaRange<'_>) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EINVAL))
    }
    fn fetch(&mut self, _dst: &crate::backing::MediaRange<'_>) -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EINVAL))
    }
}
