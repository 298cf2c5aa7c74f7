//! The few sizes the kernel interfaces count in, named once: sectors, pages,
//! PMD and PUD mappings. They live in the format crate
//! (`pmem_stack_format::units`, which says why they are named) because the
//! layout rules count in them too; re-exported here for the server's code.

pub use pmem_stack_format::units::{
    PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, PUD_SIZE, SECTOR_SHIFT, SECTOR_SIZE,
};
