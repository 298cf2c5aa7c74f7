//! The served window of a backing: the mapping of exactly the data area, and
//! the backing it came from (for zeroing below the page cache and the final
//! sync).
//!
//! It is the I/O engine's one view of the media (`engine::Media`), so the
//! engine holds no `Backing` and never issues a syscall itself; a test can put
//! a faulty medium in its place.

use std::sync::Arc;

use super::{Backing, BackingError, Mapping};

/// A mapped data area.
#[derive(Debug)]
pub struct DataArea {
    backing: Arc<Backing>,
    mapping: Mapping,
    /// Byte offset of the data area in the backing.
    offset: u64,
}

impl DataArea {
    /// Map `len` bytes at `offset` of `backing` (opened exclusively).
    pub fn map(backing: Arc<Backing>, offset: u64, len: u64) -> Result<DataArea, BackingError> {
        let mapping = backing.map(offset, len)?;
        Ok(DataArea {
            backing,
            mapping,
            offset,
        })
    }

    /// Byte offset of the data area in the backing.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The mapping.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Zero `len` bytes at `offset` (relative to the data area) below the page
    /// cache, if the backing allows; `Ok(false)` when the caller must zero
    /// through the mapping.
    pub fn zero_below(&self, offset: u64, len: u64, discard: bool) -> Result<bool, BackingError> {
        let media_offset =
            self.offset
                .checked_add(offset)
                .ok_or_else(|| BackingError::OutOfRange {
                    path: self.backing.path().to_path_buf(),
                    op: "zero",
                    offset,
                    len,
                    size: self.backing.size(),
                })?;
        self.backing.zero_range(media_offset, len, discard)
    }

    /// Make everything written to the backing durable.
    pub fn sync_all(&self) -> Result<(), BackingError> {
        self.backing.sync_all()
    }
}
