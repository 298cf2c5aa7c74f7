//! The few sizes the kernel interfaces count in, named once.
//!
//! Why a module for a handful of numbers: `512` and `4096` turn up wherever
//! pmem-stack talks to the kernel — ublk sectors, sysfs partition starts,
//! mapping granules, the page size that Linux's and Xen's reserve rules count
//! in — and a bare literal does not say which of those facts it is. With a
//! name, a reader knows why the number is what it is, and a grep for the name
//! finds everything that depends on that fact. The on-media format's own
//! structure (the untouched head, the super block size) keeps its constants in
//! `format::geometry`: `docs/FORMAT.md` fixes those, not the kernel.

/// Bytes per sector: the unit of ublk's `start_sector`, `nr_sectors` and
/// `dev_sectors`, and of a partition's `start` in sysfs — whatever the logical
/// block size of the device.
pub const SECTOR_SIZE: u64 = 512;
/// log2 of [`SECTOR_SIZE`].
pub const SECTOR_SHIFT: u8 = 9;
/// The page size: the page cache's mapping granule and the frame size Linux's
/// page array and Xen's frame table describe.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u8 = 12;
/// A PMD (huge page) mapping with 4 KiB pages: 2 MiB. devdax's default
/// alignment, Xen's allocation chunk and pmem-stack's default alignment.
pub const PMD_SIZE: u64 = 2 << 20;
/// A PUD (gigantic page) mapping with 4 KiB pages: 1 GiB.
pub const PUD_SIZE: u64 = 1 << 30;

const _: () = assert!(1 << SECTOR_SHIFT == SECTOR_SIZE);
const _: () = assert!(1 << PAGE_SHIFT == PAGE_SIZE);
