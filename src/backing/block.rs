//! A block device as the backing: `/dev/pmemN` (fsdax or raw namespace), or
//! any other block device.
//!
//! It is opened with `O_EXCL` when written (the kernel refuses that while the
//! device is mounted or claimed by dm/md), its size is where `lseek(SEEK_END)`
//! lands (no ioctl needed), it maps through the page cache, and zeroing goes
//! below it with `fallocate(ZERO_RANGE)`, which also drops the cached pages so
//! every mapping sees the zeros. sysfs tells the namespace's physical address
//! and UUID.

use std::fs::{File, Metadata};
use std::io::{self, Seek, SeekFrom};
use std::path::PathBuf;

use rustix::fs::FallocateFlags;

use super::kind::{Kind, LockWait};
use super::sysfs;
use super::{BackingKind, Identity};
use crate::format::Uuid;

/// How long a writer waits for udev's probe of a block device to end (see
/// [`Kind::lock_wait`]); the error names this many seconds.
const UDEV_PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A block device.
#[derive(Debug)]
pub(crate) struct BlockDevice {
    rdev: u64,
    /// `/sys/dev/block/M:m`.
    sysfs_dir: PathBuf,
}

impl BlockDevice {
    /// The kind's facts for the device node `rdev`.
    pub(crate) fn new(rdev: u64) -> BlockDevice {
        BlockDevice {
            rdev,
            sysfs_dir: sysfs::device_dir(true, libc::major(rdev), libc::minor(rdev)),
        }
    }
}

impl Kind for BlockDevice {
    fn kind(&self) -> BackingKind {
        BackingKind::Block
    }

    fn identity(&self) -> Identity {
        Identity::Device { rdev: self.rdev }
    }

    fn exclusive_open_flags(&self) -> i32 {
        // The kernel refuses O_EXCL while the device is mounted or claimed
        // by another exclusive opener (dm, md, another pmem-stack).
        libc::O_EXCL
    }

    fn holder(&self) -> Option<String> {
        sysfs::block_holder(libc::major(self.rdev), libc::minor(self.rdev))
    }

    /// udev holds a shared `flock` on a block device while it probes it:
    /// at boot's add event, and after every writer closes it (systemd's
    /// "Locking Block Device Access"), for milliseconds. Another pmem-stack
    /// is never the holder here (`O_EXCL` refused it already), so the lock
    /// is waited for: taking it at once failed a unit's start at boot while
    /// udev was still probing `/dev/pmem0`.
    fn lock_wait(&self) -> LockWait {
        LockWait {
            wait: UDEV_PROBE_WAIT,
            holder: "locked for more than 5 s by another program: not udev's probe, perhaps a partitioning or formatting tool",
        }
    }

    /// The end of the device (all I/O here is positional, so moving the
    /// file offset is harmless).
    fn size(&self, mut file: &File, _meta: &Metadata) -> io::Result<u64> {
        file.seek(SeekFrom::End(0))
    }

    fn kernel_name(&self) -> Option<String> {
        sysfs::kernel_name(&self.sysfs_dir)
    }

    fn phys_start(&self) -> Option<u64> {
        sysfs::block_phys_start(&self.sysfs_dir)
    }

    fn namespace_uuid(&self) -> Option<Uuid> {
        sysfs::namespace_uuid(&self.sysfs_dir.join("device"))
    }

    fn zero_mode(&self, _discard: bool) -> Option<FallocateFlags> {
        // Discard and write-zeroes alike: reads after a discard return zeros.
        Some(FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_error_names_the_wait_it_gave_up_after() {
        let lock = BlockDevice::new(libc::makedev(259, 0)).lock_wait();
        assert_eq!(lock.wait, UDEV_PROBE_WAIT);
        let said = format!("more than {} s", UDEV_PROBE_WAIT.as_secs());
        assert!(lock.holder.contains(&said), "{}", lock.holder);
    }
}
