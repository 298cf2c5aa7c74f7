//! The thing pmem-stack sits on: a pmem block device, a devdax character
//! device, or a regular image file.
//!
//! [`Backing`] hides the three kinds from everything above it. What they
//! share lives here: opening (read-only and shared for `info`, exclusive for
//! everything that writes or serves), bounds checks, and shaping a mapping
//! window. What differs — size, identity, mapping granule, persistence,
//! zeroing, metadata I/O and sync — each kind answers in its own type behind
//! the [`kind::Kind`] trait (`block.rs`, `devdax.rs`, `image.rs`), so no
//! method here branches on the kind.
//!
//! Exclusivity is enforced twice: `O_EXCL` on block devices (the kernel
//! refuses it while the device is mounted or claimed by dm/md or another
//! `O_EXCL` opener) and an `flock` on every kind (two pmem-stack processes
//! never serve the same image file or devdax device). On a block device the
//! `flock` also keeps udev from probing media that is being written, and
//! udev's own brief shared lock while it probes is waited out
//! ([`kind::Kind::lock_wait`]), not taken for another pmem-stack.

mod block;
mod data_area;
mod devdax;
pub mod direct_io;
mod image;
mod kind;
pub mod mapping;
pub mod sysfs;

use std::fs::{Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use data_area::DataArea;
pub use mapping::{FlushInstruction, Mapping, MediaRange, OutOfWindow, Persistence};

use crate::format::Uuid;
use block::BlockDevice;
use devdax::DaxDevice;
use image::ImageFile;
use kind::{Handle, Kind};

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

    /// The identity whose [`Identity::to_key`] is `key`.
    pub fn from_key(key: &str) -> Option<Identity> {
        let (kind, rest) = key.split_once(':')?;
        let (a, b) = rest.split_once(':')?;
        match kind {
            "dev" => Some(Identity::Device {
                rdev: libc::makedev(a.parse().ok()?, b.parse().ok()?),
            }),
            "file" => Some(Identity::File {
                dev: a.parse().ok()?,
                ino: b.parse().ok()?,
            }),
            _ => None,
        }
    }
}

impl Serialize for Identity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_key())
    }
}

impl<'de> serde::Deserialize<'de> for Identity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Identity, D::Error> {
        let key = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Identity::from_key(&key)
            .ok_or_else(|| serde::de::Error::custom(format!("not a backing identity: {key}")))
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
    #[error("{}: {op} failed", .path.display())]
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
    #[error(
        "{}: cannot be opened O_DIRECT ({why}); serve it with --io-path user-copy",
        .path.display()
    )]
    NoDirectIo { path: PathBuf, why: String },
}

/// An open backing.
#[derive(Debug)]
pub struct Backing {
    handle: Handle,
    kind: Box<dyn Kind>,
}

/// The error a failed open or stat becomes: a missing path and a refused
/// permission are the user's to fix and say so.
fn open_error<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> BackingError + 'a {
    move |source| match source.kind() {
        io::ErrorKind::NotFound => BackingError::NotFound(path.to_path_buf()),
        io::ErrorKind::PermissionDenied => BackingError::PermissionDenied(path.to_path_buf()),
        _ => BackingError::Io {
            path: path.to_path_buf(),
            op,
            source,
        },
    }
}

/// The kind of the file at `path`, from its metadata, or why it is none.
fn probe_kind(path: &Path, meta: &Metadata) -> Result<Box<dyn Kind>, BackingError> {
    let unsupported = |what| BackingError::Unsupported {
        path: path.to_path_buf(),
        what,
    };
    let file_type = meta.file_type();
    if file_type.is_block_device() {
        Ok(Box::new(BlockDevice::new(meta.rdev())))
    } else if file_type.is_char_device() {
        match DaxDevice::probe(meta.rdev()) {
            Some(dax) => Ok(Box::new(dax)),
            None => Err(unsupported(
                "a character device that is not a devdax device",
            )),
        }
    } else if file_type.is_file() {
        Ok(Box::new(ImageFile::from_metadata(meta)))
    } else if file_type.is_dir() {
        Err(unsupported("a directory"))
    } else {
        Err(unsupported("neither a device nor a regular file"))
    }
}

/// Take the advisory lock every pmem-stack writer holds, waiting at most
/// `wait` for another process to let go of it; `false` when it did not.
fn lock_exclusive(file: &std::fs::File, wait: std::time::Duration) -> io::Result<bool> {
    let start = std::time::Instant::now();
    loop {
        match rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) if start.elapsed() < wait => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(rustix::io::Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
}

impl Backing {
    /// Open `path` for `access`.
    pub fn open(path: &Path, access: Access) -> Result<Backing, BackingError> {
        let meta = std::fs::metadata(path).map_err(open_error(path, "stat"))?;
        let kind = probe_kind(path, &meta)?;
        let mut options = OpenOptions::new();
        options.read(true);
        if access == Access::Exclusive {
            options
                .write(true)
                .custom_flags(kind.exclusive_open_flags());
        }
        let file = options.open(path).map_err(|source| {
            if source.raw_os_error() == Some(libc::EBUSY) {
                BackingError::Busy {
                    path: path.to_path_buf(),
                    holder: kind.holder().unwrap_or_else(|| {
                        "opened exclusively by another program: a mounted file system, a device-mapper or md device, or another pmem-stack".to_string()
                    }),
                }
            } else {
                open_error(path, "open")(source)
            }
        })?;
        let lock = kind.lock_wait();
        if access == Access::Exclusive
            && !lock_exclusive(&file, lock.wait).map_err(open_error(path, "flock"))?
        {
            return Err(BackingError::Busy {
                path: path.to_path_buf(),
                holder: lock.holder.to_string(),
            });
        }
        let size = kind
            .size(&file, &meta)
            .map_err(open_error(path, "reading its size"))?;
        Ok(Backing {
            handle: Handle {
                path: path.to_path_buf(),
                file,
                access,
                size,
            },
            kind,
        })
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        self.handle.path()
    }

    /// Its kind.
    pub fn kind(&self) -> BackingKind {
        self.kind.kind()
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.handle.size
    }

    /// Its identity.
    pub fn identity(&self) -> Identity {
        self.kind.identity()
    }

    /// Whether it was opened for writing.
    pub fn access(&self) -> Access {
        self.handle.access
    }

    /// Physical address of byte 0, when the backing is an NVDIMM namespace (or
    /// devdax device) that sysfs describes.
    pub fn phys_start(&self) -> Option<u64> {
        self.kind.phys_start()
    }

    /// The kernel's name of the device (`pmem0`, `ublkb3`), for block
    /// devices.
    pub fn kernel_name(&self) -> Option<String> {
        self.kind.kernel_name()
    }

    /// UUID of the NVDIMM namespace the backing belongs to, if it has one.
    pub fn namespace_uuid(&self) -> Option<Uuid> {
        self.kind.namespace_uuid()
    }

    /// How a mapping of this backing is made durable.
    pub fn persistence(&self) -> Persistence {
        self.kind.persistence()
    }

    fn check_range(&self, op: &'static str, offset: u64, len: u64) -> Result<(), BackingError> {
        check_range(&self.handle, op, offset, len)
    }

    fn io_error(&self, op: &'static str) -> impl FnOnce(io::Error) -> BackingError + '_ {
        move |source| BackingError::Io {
            path: self.path().to_path_buf(),
            op,
            source,
        }
    }

    fn check_writable(&self) -> Result<(), BackingError> {
        match self.handle.access {
            Access::Exclusive => Ok(()),
            Access::ReadOnly => Err(BackingError::ReadOnly(self.path().to_path_buf())),
        }
    }

    /// Read exactly `buf.len()` bytes at `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        self.check_range("read", offset, buf.len() as u64)?;
        self.kind
            .read_at(&self.handle, offset, buf)
            .map_err(self.io_error("read"))
    }

    /// Write `buf` at `offset` and make it durable before returning.
    pub fn write_durable_at(&self, offset: u64, buf: &[u8]) -> Result<(), BackingError> {
        self.check_writable()?;
        self.check_range("write", offset, buf.len() as u64)?;
        self.kind
            .write_durable_at(&self.handle, offset, buf)
            .map_err(self.io_error("durable write"))
    }

    /// Map `len` bytes at `offset` (`MAP_SHARED`; writable when opened
    /// exclusively). The mapping is rounded out to the granule the kind needs
    /// (a page; the devdax alignment), but only the asked-for window is usable.
    pub fn map(&self, offset: u64, len: u64) -> Result<Mapping, BackingError> {
        map_window(&self.handle, self.kind.as_ref(), offset, len)
    }

    /// Zero `len` bytes at `offset` below the page cache, if the kind allows:
    /// `fallocate(ZERO_RANGE)` on a block device (the kernel drops the cached
    /// pages, so every mapping sees the zeros), `PUNCH_HOLE` (`discard`) or
    /// `ZERO_RANGE` on a file. Returns `Ok(false)` when the caller must zero
    /// through the mapping instead (devdax, or no kernel support).
    pub fn zero_range(&self, offset: u64, len: u64, discard: bool) -> Result<bool, BackingError> {
        self.check_writable()?;
        self.check_range("zero", offset, len)?;
        let Some(mode) = self.kind.zero_mode(discard) else {
            return Ok(false);
        };
        match rustix::fs::fallocate(&self.handle.file, mode, offset, len) {
            Ok(()) => Ok(true),
            Err(
                rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOTTY | rustix::io::Errno::INVAL,
            ) => Ok(false),
            Err(err) => Err(self.io_error("fallocate")(err.into())),
        }
    }

    /// A second descriptor of the same open backing, read-write and
    /// `O_DIRECT`, for the direct I/O path. Reopened through
    /// `/proc/self/fd`, so it is the very device or inode already opened
    /// (and locked) here, whatever happened to the path since.
    pub fn open_direct(&self) -> Result<std::fs::File, BackingError> {
        let refuse = |why: String| BackingError::NoDirectIo {
            path: self.handle.path.clone(),
            why,
        };
        if self.kind() == BackingKind::Dax {
            return Err(refuse(
                "a devdax namespace has no read/write path".to_string(),
            ));
        }
        if self.handle.access != Access::Exclusive {
            return Err(BackingError::ReadOnly(self.handle.path.clone()));
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.handle.file);
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(format!("/proc/self/fd/{fd}"))
            .map_err(|err| match err.raw_os_error() {
                Some(libc::EINVAL) => {
                    refuse("its file system does not support O_DIRECT".to_string())
                }
                _ => refuse(err.to_string()),
            })
    }

    /// Drop the page cache's clean copies of `len` bytes at `offset`
    /// (`POSIX_FADV_DONTNEED`). The direct path calls it once before
    /// serving: cached pages left by an earlier mapped server are useless to
    /// it and would make every `O_DIRECT` write invalidate them first.
    /// Best effort, logged: the kernel keeps O_DIRECT coherent either way.
    pub fn drop_cached(&self, offset: u64, len: u64) {
        let result = rustix::fs::fadvise(
            &self.handle.file,
            offset,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::DontNeed,
        );
        if let Err(err) = result {
            log::info!(
                "{}: dropping cached pages failed: {err}",
                self.handle.path.display()
            );
        }
    }

    /// Make everything written to the backing (through any mapping or `pwrite`)
    /// durable: `fsync`, or for devdax a write-back of the whole device.
    pub fn sync_all(&self) -> Result<(), BackingError> {
        self.kind
            .sync_all(&self.handle)
            .map_err(self.io_error("sync"))
    }
}

fn check_range(
    handle: &Handle,
    op: &'static str,
    offset: u64,
    len: u64,
) -> Result<(), BackingError> {
    match offset.checked_add(len) {
        Some(end) if end <= handle.size => Ok(()),
        _ => Err(BackingError::OutOfRange {
            path: handle.path.clone(),
            op,
            offset,
            len,
            size: handle.size,
        }),
    }
}

/// Map the window `offset..offset+len` of the backing, rounded out to the
/// kind's granule (the rounding is mapped but never handed out).
fn map_window(
    handle: &Handle,
    kind: &dyn Kind,
    offset: u64,
    len: u64,
) -> Result<Mapping, BackingError> {
    check_range(handle, "map", offset, len)?;
    let too_big = |_| BackingError::OutOfRange {
        path: handle.path.clone(),
        op: "map",
        offset,
        len,
        size: handle.size,
    };
    let granule = kind.granule();
    let map_start = offset & !(granule - 1);
    // No overflow: check_range proved offset + len <= size.
    let end = offset + len;
    // A devdax size is a multiple of its alignment, so rounding up stays inside.
    let map_end = if kind.whole_granules() {
        end.div_ceil(granule)
            .checked_mul(granule)
            .ok_or(())
            .map_err(too_big)?
    } else {
        end
    };
    let map_len = usize::try_from(map_end - map_start).map_err(|_| too_big(()))?;
    let skip = usize::try_from(offset - map_start).map_err(|_| too_big(()))?;
    let window = usize::try_from(len).map_err(|_| too_big(()))?;
    let mut options = memmap2::MmapOptions::new();
    options.offset(map_start).len(map_len);
    let writable = handle.access == Access::Exclusive;
    let io_error = |source| BackingError::Io {
        path: handle.path.clone(),
        op: "mmap",
        source,
    };
    let map = if writable {
        options.map_raw(&handle.file)
    } else {
        options.map_raw_read_only(&handle.file)
    }
    .map_err(io_error)?;
    Mapping::new(map, skip, window, kind.persistence(), writable).map_err(io_error)
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
    fn a_brief_lock_is_waited_out_and_a_held_one_is_not() {
        use std::time::{Duration, Instant};
        let img = image(4096);
        let open = || std::fs::File::open(img.path()).expect("open");
        let shared = rustix::fs::FlockOperation::NonBlockingLockShared;
        // A probe's shared lock, let go of after 200 ms.
        let prober = open();
        rustix::fs::flock(&prober, shared).expect("shared lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(prober);
        });
        let writer = open();
        assert!(
            !lock_exclusive(&writer, Duration::ZERO).expect("flock"),
            "taken at once"
        );
        let start = Instant::now();
        assert!(lock_exclusive(&writer, Duration::from_secs(5)).expect("flock"));
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
        release.join().expect("released");
        // A holder that stays: given up after the wait, not before.
        let other = open();
        let start = Instant::now();
        assert!(!lock_exclusive(&other, Duration::from_millis(300)).expect("flock"));
        assert!(start.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn identity_keys_round_trip() {
        for id in [
            Identity::Device {
                rdev: libc::makedev(259, 3),
            },
            Identity::File {
                dev: 64769,
                ino: 12,
            },
        ] {
            assert_eq!(Identity::from_key(&id.to_key()), Some(id));
        }
        assert_eq!(
            Identity::Device {
                rdev: libc::makedev(259, 0)
            }
            .to_key(),
            "dev:259:0"
        );
        for bad in ["", "dev:1", "pipe:1:2", "file:x:2"] {
            assert_eq!(Identity::from_key(bad), None, "{bad}");
        }
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
