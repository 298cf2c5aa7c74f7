//! The I/O engine: what a block request means for the mapped data area.
//!
//! Pure logic over a [`Media`] — in production a [`DataArea`], the mapping of
//! exactly the data area, so the reserve and the super blocks are not merely
//! skipped by I/O — they are not mapped at all (bounds are checked per
//! request, and a request outside fails with `EIO`). The engine issues no
//! syscall itself: write-back, zeroing and the final sync are the medium's,
//! so a test can hand it a medium that fails and watch what the engine
//! reports.
//! How request data reaches the mapping is behind [`Transfer`]: the ublk glue
//! implements it with user copy (`pread`/`pwrite` on `/dev/ublkcN`, one CPU
//! copy) or with a bounce buffer when the kernel lacks user copy; tests use a
//! plain vector. So everything here runs on the host without a kernel driver.
//!
//! Durability contract:
//! * WRITE lands in the mapping and marks its chunks dirty; it is volatile
//!   until a FLUSH (the device advertises a volatile write cache).
//! * FUA WRITE is made durable before it completes.
//! * FLUSH makes every write completed before it durable, on all queues: it
//!   takes the dirty set under a lock (a second flush waits for the first, so
//!   it never reports success for ranges the first is still writing back) and
//!   persists it (one `msync` spanning the dirty chunks for page-cache
//!   mappings; CPU cache write-back per dirty range for devdax).
//! * If persisting ever fails, the engine latches failed: every later FLUSH
//!   and FUA write returns `EIO`. After a failed write-back the kernel may
//!   already consider the pages clean, so a later "successful" flush would be
//!   a lie; refusing is the only honest answer.
//! * Write-through ([`Engine::set_write_through`]; the default for devdax,
//!   where making a write durable is a cache-line write-back of just its
//!   bytes): every WRITE is persisted like a FUA write before it completes,
//!   so the device declares no volatile cache and the kernel sends no FLUSH.
//!   The direct path's form of it is in [`direct`]; over the page cache a
//!   write-through device writes `O_DIRECT` the same way (`ublk::plane::copy`),
//!   since an `msync` per write would cost far more.

pub mod direct;
pub mod dirty;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::backing::{Backing, BackingError, DataArea, MediaRange, OutOfWindow, Persistence};
use crate::format::Geometry;
use dirty::DirtyMap;

/// The engine's view of the media: the bytes of the data area and how they
/// become durable. Offsets are relative to the data area.
pub trait Media: fmt::Debug + Send + Sync {
    /// Size of the data area.
    fn len(&self) -> u64;
    /// Whether the data area is empty (a validated layout never is).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes `offset..offset+len`, or why not.
    fn range(&self, offset: u64, len: u64) -> Result<MediaRange<'_>, OutOfWindow>;
    /// How stores become durable (decides one span or each range per flush).
    fn persistence(&self) -> Persistence;
    /// Make `len` bytes at `offset` durable.
    fn persist(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Zero below any cache if the medium can; `Ok(false)`: zero the range.
    fn zero_below(&self, offset: u64, len: u64, discard: bool) -> Result<bool, BackingError>;
    /// Make everything ever written durable (a stopping server's last act).
    fn sync_all(&self) -> Result<(), BackingError>;
}

impl Media for DataArea {
    fn len(&self) -> u64 {
        self.mapping().len()
    }
    fn range(&self, offset: u64, len: u64) -> Result<MediaRange<'_>, OutOfWindow> {
        self.mapping().range(offset, len)
    }
    fn persistence(&self) -> Persistence {
        self.mapping().persistence()
    }
    fn persist(&self, offset: u64, len: u64) -> io::Result<()> {
        self.mapping().persist(offset, len)
    }
    fn zero_below(&self, offset: u64, len: u64, discard: bool) -> Result<bool, BackingError> {
        DataArea::zero_below(self, offset, len, discard)
    }
    fn sync_all(&self) -> Result<(), BackingError> {
        DataArea::sync_all(self)
    }
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Copy from the data area to the request.
    Read,
    /// Copy from the request to the data area; `fua`: durable on completion.
    Write { fua: bool },
    /// Make all completed writes durable.
    Flush,
    /// The range's contents are no longer needed (reads return zeros after).
    Discard,
    /// Set the range to zeros.
    WriteZeroes,
}

/// One block request, in bytes relative to the data area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The operation.
    pub op: Op,
    /// Byte offset in the data area.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Moves request data between the request's pages and the mapping.
pub trait Transfer {
    /// READ: copy `src` (in the mapping) into the request's buffer.
    fn deliver(&mut self, src: &MediaRange<'_>) -> io::Result<()>;
    /// WRITE: copy the request's buffer into `dst` (in the mapping).
    fn fetch(&mut self, dst: &MediaRange<'_>) -> io::Result<()>;
}

/// Why a request failed; [`IoError::errno`] is what the block layer sees.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("request {offset}+{len} lies outside the {size}-byte data area")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    /// A request whose byte offset does not even fit in 64 bits, so it is
    /// reported in the sectors the kernel sent.
    #[error(
        "request at sector {start_sector} (+{nr_sectors} sectors) lies outside the {size}-byte data area"
    )]
    SectorOutOfRange {
        start_sector: u64,
        nr_sectors: u32,
        size: u64,
    },
    #[error("unsupported operation {0}")]
    Unsupported(u32),
    #[error("a request of {len} bytes is larger than the {max}-byte buffer it passes through")]
    TooLarge { len: u64, max: usize },
    #[error("copying request data failed")]
    Transfer(#[source] io::Error),
    #[error("making data durable failed")]
    Persist(#[source] io::Error),
    #[error(transparent)]
    Backing(BackingError),
    #[error("an earlier write-back failed; flushes are refused until the device is restarted")]
    Failed,
}

impl IoError {
    /// Positive errno for the completion.
    pub fn errno(&self) -> i32 {
        match self {
            IoError::Unsupported(_) => libc::EOPNOTSUPP,
            _ => libc::EIO,
        }
    }
}

/// Counters, for benchmarks and diagnostics.
#[derive(Debug, Default)]
pub struct Stats {
    /// READ requests served.
    pub reads: AtomicU64,
    /// WRITE requests served.
    pub writes: AtomicU64,
    /// FLUSH requests served.
    pub flushes: AtomicU64,
    /// FLUSH requests that found nothing dirty.
    pub empty_flushes: AtomicU64,
}

/// The counters at one moment (what `list --json` shows as `stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// READ requests served.
    pub reads: u64,
    /// WRITE requests served.
    pub writes: u64,
    /// FLUSH requests served.
    pub flushes: u64,
    /// FLUSH requests that found nothing dirty.
    pub empty_flushes: u64,
}

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            empty_flushes: self.empty_flushes.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} reads, {} writes, {} flushes ({} with nothing to do)",
            self.reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
            self.flushes.load(Ordering::Relaxed),
            self.empty_flushes.load(Ordering::Relaxed)
        )
    }
}

/// The engine for one served data area, shared by all queue threads.
#[derive(Debug)]
pub struct Engine<M: Media = DataArea> {
    media: M,
    dirty: DirtyMap,
    flush_lock: Mutex<()>,
    failed: AtomicBool,
    stats: Stats,
    direct: DirectState,
}

/// What the direct path needs to know to skip a FLUSH (see [`direct`]).
#[derive(Debug)]
struct DirectState {
    /// A write or zeroing completed since the last sync was issued.
    written: AtomicBool,
    /// Syncs submitted and not yet completed.
    syncs_in_flight: AtomicU32,
    /// Every write is submitted durable (`RWF_DSYNC`) and the device has no
    /// volatile cache: nothing is ever pending (see [`direct`]).
    write_through: bool,
}

impl Engine<DataArea> {
    /// Map the data area of `geometry` on `backing` (opened exclusively).
    pub fn new(backing: Arc<Backing>, geometry: &Geometry) -> Result<Engine, BackingError> {
        let area = DataArea::map(backing, geometry.data_offset(), geometry.data_size())?;
        Ok(Engine::with_media(area))
    }
}

impl<M: Media> Engine<M> {
    /// An engine over `media`.
    pub fn with_media(media: M) -> Engine<M> {
        Engine {
            dirty: DirtyMap::new(media.len()),
            media,
            flush_lock: Mutex::new(()),
            failed: AtomicBool::new(false),
            stats: Stats::default(),
            direct: DirectState {
                written: AtomicBool::new(true),
                syncs_in_flight: AtomicU32::new(0),
                write_through: false,
            },
        }
    }

    /// Write through: every write durable when it completes, so the device
    /// can tell the kernel it has no volatile cache (set before the engine
    /// is shared).
    pub fn set_write_through(&mut self, on: bool) {
        self.direct.write_through = on;
    }

    /// Whether writes go through (see [`Engine::set_write_through`]).
    pub fn write_through(&self) -> bool {
        self.direct.write_through
    }

    /// Size of the data area.
    pub fn size(&self) -> u64 {
        self.media.len()
    }

    /// How the data area is made durable.
    pub fn persistence(&self) -> Persistence {
        self.media.persistence()
    }

    /// The medium served.
    pub fn media(&self) -> &M {
        &self.media
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Serve one request; returns the byte count to complete it with.
    pub fn execute(&self, req: &Request, xfer: &mut dyn Transfer) -> Result<u64, IoError> {
        match req.op {
            Op::Flush => {
                self.stats.flushes.fetch_add(1, Ordering::Relaxed);
                self.flush()?;
                Ok(0)
            }
            Op::Read => {
                self.stats.reads.fetch_add(1, Ordering::Relaxed);
                xfer.deliver(&self.range_of(req)?)
                    .map_err(IoError::Transfer)?;
                Ok(req.len)
            }
            Op::Write { fua } => {
                self.stats.writes.fetch_add(1, Ordering::Relaxed);
                xfer.fetch(&self.range_of(req)?)
                    .map_err(IoError::Transfer)?;
                if fua || self.direct.write_through {
                    self.persist_now(req.offset, req.len)?;
                } else {
                    self.dirty.mark(req.offset, req.len);
                }
                Ok(req.len)
            }
            Op::Discard | Op::WriteZeroes => {
                let range = self.range_of(req)?;
                let below = self
                    .media
                    .zero_below(req.offset, req.len, req.op == Op::Discard)
                    .map_err(IoError::Backing)?;
                if !below {
                    range.zero().map_err(IoError::Transfer)?;
                }
                self.dirty.mark(req.offset, req.len);
                Ok(0)
            }
        }
    }

    fn out_of_range(&self, req: &Request) -> IoError {
        IoError::OutOfRange {
            offset: req.offset,
            len: req.len,
            size: self.size(),
        }
    }

    /// The mapped bytes a request addresses, or `EIO` outside the data area.
    fn range_of(&self, req: &Request) -> Result<MediaRange<'_>, IoError> {
        self.media
            .range(req.offset, req.len)
            .map_err(|_| self.out_of_range(req))
    }

    fn persist_now(&self, offset: u64, len: u64) -> Result<(), IoError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(IoError::Failed);
        }
        self.media.persist(offset, len).map_err(|err| {
            self.failed.store(true, Ordering::Release);
            log::error!("write-back of {len} bytes at data offset {offset} failed: {err}");
            IoError::Persist(err)
        })
    }

    /// Make every write completed so far durable.
    pub fn flush(&self) -> Result<(), IoError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(IoError::Failed);
        }
        let _serialised = self
            .flush_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ranges = self.dirty.take();
        let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
            self.stats.empty_flushes.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let result = match self.media.persistence() {
            // One msync over the span: the kernel writes back only the dirty
            // pages in it, and the device cache is flushed once.
            Persistence::Msync => self.persist_now(first.start, last.end - first.start),
            Persistence::CacheFlush(_) | Persistence::CpuCache => ranges
                .iter()
                .try_for_each(|r| self.persist_now(r.start, r.end - r.start)),
        };
        if result.is_err() {
            self.dirty.restore(&ranges);
        }
        result
    }

    /// Treat the whole data area as written: the first FLUSH then makes all
    /// of it durable. A server that recovers a device calls this, since the
    /// server before it may have acknowledged writes it never flushed (it
    /// was killed, or wrote after its last flush), and this engine's own
    /// dirty tracking knows nothing of them.
    pub fn assume_all_dirty(&self) {
        self.dirty.mark(0, self.media.len());
    }

    /// Flush, then write back the whole backing: the last thing a stopping
    /// server does.
    pub fn shutdown_flush(&self) -> Result<(), IoError> {
        self.flush()?;
        self.media.sync_all().map_err(IoError::Backing)
    }
}

/// For tests here and in the ublk glue: a 16 MiB image, filled with 0xEE
/// so untouched bytes are recognisable, with a 2 MiB reserve; its geometry,
/// and the image opened exclusively.
#[cfg(test)]
pub(crate) fn test_image() -> (tempfile::NamedTempFile, Geometry, Arc<Backing>) {
    use crate::backing::Access;
    use crate::format::{Alignment, LogicalBlockSize, ReserveMode};
    const MIB: u64 = 1 << 20;
    let image = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(image.path(), vec![0xEE; 16 << 20]).expect("fill");
    let geometry = Geometry::derive(
        16 * MIB,
        Alignment::M2,
        LogicalBlockSize::B512,
        ReserveMode::Hypervisor,
        2 * MIB,
    )
    .expect("valid");
    let backing = Arc::new(Backing::open(image.path(), Access::Exclusive).expect("open"));
    (image, geometry, backing)
}

#[cfg(test)]
mod tests;
