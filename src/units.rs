//! The few sizes the kernel interfaces count in, named once: sectors, pages,
//! PMD and PUD mappings. They live in the format crate
//! (`pmem_stack_format::units`, which says why they are named) because the
//! layout rules count in them too; re-exported here for the server's code.

pub use pmem_stack_format::units::{
    PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, PUD_SIZE, SECTOR_SHIFT, SECTOR_SIZE,
};

/// A byte count, offset or index as `usize`: the one place that converts.
/// pmem-stack runs on 64-bit Linux only (ublk, io_uring, DAX), where every
/// `u64` fits a `usize`; a narrower target does not compile. Replaces
/// `usize::try_from(n).expect(…)` scattered over every buffer and index.
pub const fn usize_of(n: u64) -> usize {
    const _: () = assert!(usize::BITS >= u64::BITS, "pmem-stack needs a 64-bit target");
    #[expect(
        clippy::cast_possible_truncation,
        reason = "usize is at least 64 bits wide, asserted at compile time"
    )]
    let wide = n as usize;
    wide
}
