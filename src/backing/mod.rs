//! The thing pmem-stack sits on: a pmem block device, a devdax character
//! device, or a regular image file.
//!
//! One type, [`Backing`], hides the three kinds from everything above it. It
//! knows how to open them (read-only and shared for `info`, exclusive for
//! everything that writes or serves), how big they are, how to read and durably
//! write a few metadata blocks, and how to map a window of them for the I/O
//! engine. Exclusivity is enforced twice: `O_EXCL` on block devices (the kernel
//! refuses it while the device is mounted or claimed by dm/md or another
//! `O_EXCL` opener) and an `flock` on every kind (two pmem-stack processes
//! never serve the same image file or devdax device).
//!
//! Metadata I/O on block devices and files uses `pread`/`pwrite` + `fdatasync`,
//! so a media error comes back as an error rather than a `SIGBUS` through a
//! mapping; devdax has no read/write syscalls, so its metadata goes through a
//! mapping of the whole device.

pub mod mapping;
pub mod sysfs;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

pub use mapping::{FlushInstruction, Mapping, MediaRange, OutOfWindow, Persistence};

use crate::format::Uuid;
use crate::units::PAGE_SIZE;

/// What kind of file the backing is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackingKind {
    /// A block device such as `/dev/pmem0` (mapped through the page cache).
    Block,
    /// A devdax character device such as `/dev/dax0.0` (mapped directly).
    Dax,
    /// A regular file (an image).
    File,
}

/// How to open the backing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read-only and shared: works while the backing is being served.
    ReadOnly,
    /// Read-write and exclusive: refused while anyone else holds it.
    Exclusive,
}

/// Identity of a backing independent of the path used to name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A device node: its `st_rdev`.
    Device { rdev: u64 },
    /// A regular file: file system and inode.
    File { dev: u64, ino: u64 },
}

impl Identity {
    /// Stable text form, used in the registry of served devices.
    pub fn to_key(self) -> String {
        match self {
            Identity::Device { rdev } => {
                format!("dev:{}:{}", libc::major(rdev), libc::minor(rdev))
            }
            Identity::File { dev, ino } => format!("file:{dev}:{ino}"),
        }
    }
}

/// Why a backing cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackingError {
    #[error("{}: no such file or device", .0.display())]
    NotFound(PathBuf),
    #[error("{}: permission denied (pmem-stack needs root to open devices)", .0.display())]
    PermissionDenied(PathBuf),
    #[error("{}: is in use ({holder}); stop what holds it first", .path.display())]
    Busy { path: PathBuf, holder: String },
    #[error(
        "{}: is {what}; pmem-stack needs a block device (/dev/pmemN), a devdax device (/dev/daxX.Y) or an image file",
        .path.display()
    )]
    Unsupported { path: PathBuf, what: &'static str },
    #[error("{}: {op} failed: {source}", .path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{}: {op} at byte {offset} (+{len}) is beyond its {size} bytes", .path.display())]
    OutOfRange {
        path: PathBuf,
        op: &'static str,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("{}: opened read-only", .0.display())]
    ReadOnly(PathBuf),
}

/// An open backing.
#[derive(Debug)]
pub struct Backing {
    path: PathBuf,
    file: File,
    kind: BackingKind,
    access: Access,
    size: u64,
    identity: Identity,
    /// sysfs directory of the device node (`/sys/dev/{block,char}/M:m`).
    sysfs_dir: Option<PathBuf>,
    /// devdax only: the whole device mapped, for metadata I/O.
    dax_window: OnceLock<Mapping>,
}

/// `BLKGETSIZE64` from `<linux/fs.h>`: `_IOR(0x12, 114, size_t)`.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

fn block_device_size(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to
    // a live local of that type; the fd is open for the duration of the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if rc == 0 {
        Ok(size)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a valid, open fd has no memory-safety preconditions.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

impl Backing {
    /// Open `path` for `access`.
    pub fn open(path: &Path, access: Access) -> Result<Backing, BackingError> {
        let io_err = |op: &'static str| {
            move |source: io::Error| match source.kind() {
                io::ErrorKind::NotFound => BackingError::NotFound(path.to_path_buf()),
                io::ErrorKind::PermissionDenied => {
                    BackingError::PermissionDenied(path.to_path_buf())
                }
                _ => BackingError::Io {
                    path: path.to_path_buf(),
                    op,
                    source,
                },
            }
        };
        let meta = std::fs::metadata(path).map_err(io_err("stat"))?;
        let file_type = meta.file_type();
        let rdev = meta.rdev();
        let (kind, sysfs_dir) = if file_type.is_block_device() {
            let dir = sysfs::device_dir(true, libc::major(rdev), libc::minor(rdev));
            (BackingKind::Block, Some(dir))
        } else if file_type.is_char_device() {
            let dir = sysfs::device_dir(false, libc::major(rdev), libc::minor(rdev));
            if !sysfs::is_dax_char(&dir) {
                return Err(BackingError::Unsupported {
                    path: path.to_path_buf(),
                    what: "a character device that is not a devdax device",
                });
            }
            (BackingKind::Dax, Some(dir))
        } else if file_type.is_file() {
            (BackingKind::File, None)
        } else if file_type.is_dir() {
            return Err(BackingError::Unsupported {
                path: path.to_path_buf(),
                what: "a directory",
            });
        } else {
            return Err(BackingError::Unsupported {
                path: path.to_path_buf(),
                what: "neither a device nor a regular file",
            });
        };

        let mut options = OpenOptions::new();
        options.read(true);
        if access == Access::Exclusive {
            options.write(true);
            if kind == BackingKind::Block {
                // The kernel refuses O_EXCL while the device is mounted or
                // claimed by another exclusive opener.
                options.custom_flags(libc::O_EXCL);
            }
        }
        let file = options.open(path).map_err(|source| {
            if source.raw_os_error() == Some(libc::EBUSY) {
                BackingError::Busy {
                    path: path.to_path_buf(),
                    holder: sysfs::block_holder(libc::major(rdev), libc::minor(rdev))
                        .unwrap_or_else(|| {
                            "opened exclusively by another program: a mounted file system, a device-mapper or md device, or another pmem-stack".to_string()
                        }),
                }
            } else {
                io_err("open")(source)
            }
        })?;
        if access == Access::Exclusive && !try_lock_exclusive(&file).map_err(io_err("flock"))? {
            return Err(BackingError::Busy {
                path: path.to_path_buf(),
                holder: "locked by another process: a pmem-stack serving or formatting it"
                    .to_string(),
            });
        }

        let size = match kind {
            BackingKind::Block => block_device_size(&file).map_err(io_err("BLKGETSIZE64"))?,
            BackingKind::Dax => {
                sysfs_dir
                    .as_deref()
                    .and_then(sysfs::dax_size)
                    .ok_or_else(|| BackingError::Io {
                        path: path.to_path_buf(),
                        op: "reading the devdax size from sysfs",
                        source: io::Error::from(io::ErrorKind::NotFound),
                    })?
            }
            BackingKind::File => meta.len(),
        };
        let identity = match kind {
            BackingKind::Block | BackingKind::Dax => Identity::Device { rdev },
            BackingKind::File => Identity::File {
                dev: meta.dev(),
                ino: meta.ino(),
            },
        };
        Ok(Backing {
            path: path.to_path_buf(),
            file,
            kind,
            access,
            size,
            identity,
            sysfs_dir,
            dax_window: OnceLock::new(),
        })
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its kind.
    pub fn kind(&self) -> BackingKind {
        self.kind
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Its identity.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// Whether it was opened for writing.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Physical address of byte 0, when the backing is an NVDIMM namespace (or
    /// devdax device) that sysfs describes.
    pub fn phys_start(&self) -> Option<u64> {
        let dir = self.sysfs_dir.as_deref()?;
        match self.kind {
            BackingKind::Block => sysfs::block_phys_start(dir),
            BackingKind::Dax => sysfs::dax_phys_start(dir),
            BackingKind::File => None,
        }
    }

    /// UUID of the NVDIMM namespace the backing belongs to, if it has one.
    pub fn namespace_uuid(&self) -> Option<Uuid> {
        let dir = self.sysfs_dir.as_deref()?;
        match self.kind {
            BackingKind::Block => sysfs::namespace_uuid(&dir.join("device")),
            BackingKind::Dax => sysfs::namespace_uuid(&dir.join("..")),
            BackingKind::File => None,
        }
    }

    /// How a mapping of this backing is made durable.
    pub fn persistence(&self) -> Persistence {
        match self.kind {
            BackingKind::Block | BackingKind::File => Persistence::Msync,
            BackingKind::Dax => {
                let domain = self
                    .sysfs_dir
                    .as_deref()
                    .and_then(sysfs::persistence_domain);
                if domain.as_deref() == Some("cpu_cache") {
                    Persistence::CpuCache
                } else {
                    #[cfg(target_arch = "x86_64")]
                    {
                        Persistence::CacheFlush(FlushInstruction::detect())
                    }
                    #[cfg(not(target_arch = "x86_64"))]
                    {
                        Persistence::Msync
                    }
                }
            }
        }
    }

    fn check_range(&self, op: &'static str, offset: u64, len: u64) -> Result<(), BackingError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(BackingError::OutOfRange {
                path: self.path.clone(),
                op,
                offset,
                len,
                size: self.size,
            }),
        }
    }

    fn io_error(&self, op: &'static str) -> impl FnOnce(io::Error) -> BackingError + '_ {
        move |source| BackingError::Io {
            path: self.path.clone(),
            op,
            source,
        }
    }

    fn dax_window(&self) -> Result<&Mapping, BackingError> {
        if let Some(window) = self.dax_window.get() {
            return Ok(window);
        }
        let window = self.map(0, self.size)?;
        Ok(self.dax_window.get_or_init(|| window))
    }

    /// Read exactly `buf.len()` bytes at `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        self.check_range("read", offset, buf.len() as u64)?;
        match self.kind {
            BackingKind::Block | BackingKind::File => self
                .file
                .read_exact_at(buf, offset)
                .map_err(self.io_error("read")),
            BackingKind::Dax => self
                .dax_window()?
                .range(offset, buf.len() as u64)
                .map_err(|e| self.io_error("read")(io::Error::other(e)))?
                .read_into(buf)
                .map_err(self.io_error("read")),
        }
    }

    /// Write `buf` at `offset` and make it durable before returning.
    pub fn write_durable_at(&self, offset: u64, buf: &[u8]) -> Result<(), BackingError> {
        if self.access != Access::Exclusive {
            return Err(BackingError::ReadOnly(self.path.clone()));
        }
        self.check_range("write", offset, buf.len() as u64)?;
        match self.kind {
            BackingKind::Block | BackingKind::File => {
                self.file
                    .write_all_at(buf, offset)
                    .map_err(self.io_error("write"))?;
                self.file.sync_data().map_err(self.io_error("fdatasync"))
            }
            BackingKind::Dax => {
                let window = self.dax_window()?;
                window
                    .range(offset, buf.len() as u64)
                    .map_err(|e| self.io_error("write")(io::Error::other(e)))?
                    .write_from(buf)
                    .map_err(self.io_error("write"))?;
                window
                    .persist(offset, buf.len() as u64)
                    .map_err(self.io_error("cache write-back"))
            }
        }
    }

    /// Map `len` bytes at `offset` (`MAP_SHARED`; writable when opened
    /// exclusively). The mapping is rounded out to the granule the kind needs
    /// (a page; the devdax alignment), but only the asked-for window is usable.
    pub fn map(&self, offset: u64, len: u64) -> Result<Mapping, BackingError> {
        self.check_range("map", offset, len)?;
        let granule = match self.kind {
            BackingKind::Block | BackingKind::File => PAGE_SIZE,
            // Without sysfs there is nothing to ask: the kernel's default.
            BackingKind::Dax => self
                .sysfs_dir
                .as_deref()
                .map_or(sysfs::DAX_DEFAULT_ALIGN, sysfs::dax_align),
        };
        let map_start = offset & !(granule - 1);
        let end = offset + len; // no overflow: checked by check_range
        // Page-cache mappings may end anywhere; devdax wants whole granules
        // (its size is a multiple of its alignment, so this stays inside).
        let map_end = match self.kind {
            BackingKind::Dax => end.div_ceil(granule) * granule,
            BackingKind::Block | BackingKind::File => end,
        };
        let map_len = map_end - map_start;
        let too_big = |_| BackingError::OutOfRange {
            path: self.path.clone(),
            op: "map",
            offset,
            len,
            size: self.size,
        };
        let map_len_usize = usize::try_from(map_len).map_err(too_big)?;
        let skip = usize::try_from(offset - map_start).map_err(too_big)?;
        let window = usize::try_from(len).map_err(too_big)?;
        let mut options = memmap2::MmapOptions::new();
        options.offset(map_start).len(map_len_usize);
        let writable = self.access == Access::Exclusive;
        let map = if writable {
            options.map_raw(&self.file)
        } else {
            options.map_raw_read_only(&self.file)
        }
        .map_err(self.io_error("mmap"))?;
        Mapping::new(map, skip, window, self.persistence(), writable).map_err(self.io_error("mmap"))
    }

    /// Zero `len` bytes at `offset` below the page cache, if the kind allows:
    /// `fallocate(ZERO_RANGE)` on a block device (the kernel drops the cached
    /// pages, so every mapping sees the zeros), `PUNCH_HOLE` (`discard`) or
    /// `ZERO_RANGE` on a file. Returns `Ok(false)` when the caller must zero
    /// through the mapping instead (devdax, or no kernel support).
    pub fn zero_range(&self, offset: u64, len: u64, discard: bool) -> Result<bool, BackingError> {
        if self.access != Access::Exclusive {
            return Err(BackingError::ReadOnly(self.path.clone()));
        }
        self.check_range("zero", offset, len)?;
        let mode = match (self.kind, discard) {
            (BackingKind::Dax, _) => return Ok(false),
            (BackingKind::File, true) => libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            (BackingKind::Block | BackingKind::File, _) => {
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
            }
        };
        let out_of_range = |_| BackingError::OutOfRange {
            path: self.path.clone(),
            op: "zero",
            offset,
            len,
            size: self.size,
        };
        let off = libc::off_t::try_from(offset).map_err(out_of_range)?;
        let n = libc::off_t::try_from(len).map_err(out_of_range)?;
        // SAFETY: fallocate on an open fd with integer arguments has no
        // memory-safety preconditions.
        let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, n) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL) => Ok(false),
            _ => Err(self.io_error("fallocate")(err)),
        }
    }

    /// Make everything written to the backing (through any mapping or `pwrite`)
    /// durable: `fsync`, or for devdax a write-back of the whole device.
    pub fn sync_all(&self) -> Result<(), BackingError> {
        match self.kind {
            BackingKind::Block | BackingKind::File => {
                self.file.sync_all().map_err(self.io_error("fsync"))
            }
            BackingKind::Dax => self
                .dax_window()?
                .persist_all()
                .map_err(self.io_error("cache write-back")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(size: u64) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("tempfile");
        file.as_file().set_len(size).expect("set_len");
        file
    }

    #[test]
    fn opens_an_image_file() {
        let img = image(8 << 20);
        let b = Backing::open(img.path(), Access::Exclusive).expect("open");
        assert_eq!(b.kind(), BackingKind::File);
        assert_eq!(b.size(), 8 << 20);
        assert_eq!(b.phys_start(), None);
        assert_eq!(b.namespace_uuid(), None);
        assert_eq!(b.persistence(), Persistence::Msync);
        assert!(b.identity().to_key().starts_with("file:"));
    }

    #[test]
    fn exclusive_opens_exclude_each_other_but_not_readers() {
        let img = image(1 << 20);
        let first = Backing::open(img.path(), Access::Exclusive).expect("first");
        let err = Backing::open(img.path(), Access::Exclusive).expect_err("second");
        assert!(matches!(err, BackingError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("in use"));
        Backing::open(img.path(), Access::ReadOnly).expect("readers are fine");
        drop(first);
        Backing::open(img.path(), Access::Exclusive).expect("free again");
    }

    #[test]
    fn clear_errors_for_bad_paths() {
        let err =
            Backing::open(Path::new("/nonexistent/pmem9"), Access::ReadOnly).expect_err("missing");
        assert!(matches!(err, BackingError::NotFound(_)));
        assert_eq!(
            err.to_string(),
            "/nonexistent/pmem9: no such file or device"
        );
        let dir = tempfile::tempdir().expect("dir");
        let err = Backing::open(dir.path(), Access::ReadOnly).expect_err("dir");
        assert!(err.to_string().contains("is a directory"), "{err}");
        let err = Backing::open(Path::new("/dev/null"), Access::ReadOnly).expect_err("chr");
        assert!(err.to_string().contains("not a devdax"), "{err}");
    }

    #[test]
    fn read_write_and_bounds() {
        let img = image(64 << 10);
        let b = Backing::open(img.path(), Access::Exclusive).expect("open");
        b.write_durable_at(4096, b"abc").expect("write");
        let mut buf = [0u8; 3];
        b.read_at(4096, &mut buf).expect("read");
        assert_eq!(&buf, b"abc");
        assert!(matches!(
            b.read_at((64 << 10) - 2, &mut buf),
            Err(BackingError::OutOfRange { .. })
        ));
        assert!(b.write_durable_at(u64::MAX, b"x").is_err());
        let ro = Backing::open(img.path(), Access::ReadOnly).expect("ro");
        assert!(matches!(
            ro.write_durable_at(0, b"x"),
            Err(BackingError::ReadOnly(_))
        ));
    }

    #[test]
    fn map_exposes_only_the_window() {
        let img = image(64 << 10);
        let b = Backing::open(img.path(), Access::Exclusive).expect("open");
        assert!(b.map(60 << 10, 8192).is_err(), "beyond the end");
        // Page-aligned, and a window that does not start on a page.
        for (offset, len, data) in [(12288u64, 8192u64, &b"data"[..]), (5000, 100, &b"xyz"[..])] {
            let m = b.map(offset, len).expect("map");
            assert_eq!(m.len(), len);
            m.range(0, data.len() as u64)
                .expect("in")
                .write_from(data)
                .expect("write");
            m.persist_all().expect("msync");
            let mut buf = vec![0u8; data.len()];
            b.read_at(offset, &mut buf).expect("read");
            assert_eq!(buf, data);
        }
    }
}
