//! What differs between the kinds of backing, as one trait.
//!
//! pmem-stack sits on three kinds of file that agree on almost nothing below
//! the surface: how big they are (an ioctl-free `lseek` on a block device, a
//! sysfs attribute for devdax, `st_size` for an image), what identifies them
//! across path names, how a mapping must be shaped (a page; the devdax
//! alignment), how stores through it become durable (`msync` or CPU cache
//! write-back), how a range is zeroed below the page cache, and whether they
//! answer `pread`/`pwrite` at all (devdax does not). Each kind answers these
//! for itself in its own type ([`super::block::BlockDevice`],
//! [`super::devdax::DaxDevice`], [`super::image::ImageFile`]); [`Backing`]
//! keeps what they share and never asks which kind it holds.
//!
//! The default methods are the syscall path that block devices and image
//! files share: metadata goes through `pread`/`pwrite` + `fdatasync`, so a
//! media error comes back as an error rather than a `SIGBUS` through a
//! mapping.
//!
//! [`Backing`]: super::Backing

use std::fmt;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::FallocateFlags;

use super::mapping::Persistence;
use super::{Access, BackingKind, Identity};
use crate::format::Uuid;
use crate::units::PAGE_SIZE;

/// The open file and what every kind knows about it.
#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) path: std::path::PathBuf,
    pub(crate) file: File,
    pub(crate) access: Access,
    pub(crate) size: u64,
}

impl Handle {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// See [`Kind::lock_wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LockWait {
    /// At most this long.
    pub wait: std::time::Duration,
    /// The holder, for the error when the lock stays taken.
    pub holder: &'static str,
}

/// One kind of backing. See the module docs.
pub(crate) trait Kind: fmt::Debug + Send + Sync {
    /// Which kind this is (for output only: nothing branches on it).
    fn kind(&self) -> BackingKind;

    /// Identity independent of the path used to name it.
    fn identity(&self) -> Identity;

    /// Extra `open(2)` flags for a writing (exclusive) open.
    fn exclusive_open_flags(&self) -> i32 {
        0
    }

    /// Who holds the backing when an exclusive open is refused with `EBUSY`.
    fn holder(&self) -> Option<String> {
        None
    }

    /// How long a writer waits for another process's `flock` on the backing
    /// to go, and who that process is when it does not.
    fn lock_wait(&self) -> LockWait {
        LockWait {
            wait: std::time::Duration::ZERO,
            holder: "locked by another process: a pmem-stack serving or formatting it",
        }
    }

    /// Its size in bytes.
    fn size(&self, file: &File, meta: &Metadata) -> io::Result<u64>;

    /// A mapping starts on a multiple of this many bytes.
    fn granule(&self) -> u64 {
        PAGE_SIZE
    }

    /// Whether a mapping must also end on a granule (devdax: whole granules
    /// only; page-cache mappings may end anywhere).
    fn whole_granules(&self) -> bool {
        false
    }

    /// How stores through a mapping become durable.
    fn persistence(&self) -> Persistence {
        Persistence::Msync
    }

    /// Physical address of byte 0, where sysfs describes one.
    fn phys_start(&self) -> Option<u64> {
        None
    }

    /// The kernel's name of the device (`pmem0`, `ublkb3`), if it is one.
    fn kernel_name(&self) -> Option<String> {
        None
    }

    /// UUID of the NVDIMM namespace the backing belongs to.
    fn namespace_uuid(&self) -> Option<Uuid> {
        None
    }

    /// The `fallocate` mode that zeroes (or, with `discard`, deallocates) a
    /// range below the page cache; `None` when the caller must zero through
    /// the mapping.
    fn zero_mode(&self, discard: bool) -> Option<FallocateFlags>;

    /// Read exactly `buf.len()` bytes at `offset` (already range-checked).
    fn read_at(&self, handle: &Handle, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        handle.file.read_exact_at(buf, offset)
    }

    /// Write `buf` at `offset` (already range-checked) and make it durable.
    fn write_durable_at(&self, handle: &Handle, offset: u64, buf: &[u8]) -> io::Result<()> {
        handle.file.write_all_at(buf, offset)?;
        handle.file.sync_data()
    }

    /// Make everything written through any mapping or `pwrite` durable.
    fn sync_all(&self, handle: &Handle) -> io::Result<()> {
        handle.file.sync_all()
    }
}
