//! A devdax character device as the backing: `/dev/daxX.Y`.
//!
//! devdax maps the media itself, with no page cache and no `read`/`write`
//! syscalls. So its size and alignment come from sysfs, a mapping must cover
//! whole alignment granules, stores become durable by CPU cache write-back
//! (`clwb`/`clflushopt` + `sfence`) unless the region's persistence domain
//! already includes the CPU cache, there is no `fallocate` (zeroing goes
//! through the mapping), and metadata I/O goes through one mapping of the
//! whole device, made on first use.

use std::fs::{File, Metadata};
use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;

use rustix::fs::FallocateFlags;

use super::kind::{Handle, Kind};
use super::mapping::{Mapping, Persistence};
use super::{BackingKind, Identity, sysfs};
use crate::format::Uuid;

/// A devdax device.
#[derive(Debug)]
pub(crate) struct DaxDevice {
    rdev: u64,
    /// `/sys/dev/char/M:m`.
    sysfs_dir: PathBuf,
    /// Its mapping granule (the namespace's alignment).
    align: u64,
    /// The whole device mapped, for metadata I/O.
    window: OnceLock<Mapping>,
}

impl DaxDevice {
    /// The kind's facts for the character device `rdev`, or `None` when it is
    /// not a devdax device.
    pub(crate) fn probe(rdev: u64) -> Option<DaxDevice> {
        let sysfs_dir = sysfs::device_dir(false, libc::major(rdev), libc::minor(rdev));
        sysfs::is_dax_char(&sysfs_dir).then(|| DaxDevice {
            rdev,
            align: sysfs::dax_align(&sysfs_dir),
            sysfs_dir,
            window: OnceLock::new(),
        })
    }

    fn window(&self, handle: &Handle) -> io::Result<&Mapping> {
        if let Some(window) = self.window.get() {
            return Ok(window);
        }
        let window = super::map_window(handle, self, 0, handle.size).map_err(io::Error::other)?;
        Ok(self.window.get_or_init(|| window))
    }
}

impl Kind for DaxDevice {
    fn kind(&self) -> BackingKind {
        BackingKind::Dax
    }

    fn identity(&self) -> Identity {
        Identity::Device { rdev: self.rdev }
    }

    /// From sysfs: a devdax device has no `st_size` and no `lseek`.
    fn size(&self, _file: &File, _meta: &Metadata) -> io::Result<u64> {
        sysfs::dax_size(&self.sysfs_dir).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "sysfs does not say the devdax size",
            )
        })
    }

    fn granule(&self) -> u64 {
        self.align
    }

    fn whole_granules(&self) -> bool {
        true
    }

    fn persistence(&self) -> Persistence {
        if sysfs::persistence_domain(&self.sysfs_dir).as_deref() == Some("cpu_cache") {
            return Persistence::CpuCache;
        }
        #[cfg(target_arch = "x86_64")]
        {
            Persistence::CacheFlush(super::mapping::FlushInstruction::detect())
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Persistence::Msync
        }
    }

    fn phys_start(&self) -> Option<u64> {
        sysfs::dax_phys_start(&self.sysfs_dir)
    }

    fn namespace_uuid(&self) -> Option<Uuid> {
        sysfs::namespace_uuid(&self.sysfs_dir.join(".."))
    }

    fn zero_mode(&self, _discard: bool) -> Option<FallocateFlags> {
        None
    }

    fn read_at(&self, handle: &Handle, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.window(handle)?
            .range(offset, buf.len() as u64)
            .map_err(io::Error::other)?
            .read_into(buf)
    }

    fn write_durable_at(&self, handle: &Handle, offset: u64, buf: &[u8]) -> io::Result<()> {
        let window = self.window(handle)?;
        window
            .range(offset, buf.len() as u64)
            .map_err(io::Error::other)?
            .write_from(buf)?;
        window.persist(offset, buf.len() as u64)
    }

    fn sync_all(&self, handle: &Handle) -> io::Result<()> {
        self.window(handle)?.persist_all()
    }
}
