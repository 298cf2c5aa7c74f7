//! Rewriting a copy that is not `ok` from the newest valid one, and checking
//! that it reads back.

use crate::format::Slot;

use super::read::read;
use super::write::verified_blocks;
use super::{CopyState, Metadata, MetadataError, MetadataIo, check_fits, describe_copy};

/// What `repair` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairOutcome {
    /// Copies rewritten (empty when both were already ok).
    pub rewritten: Vec<Slot>,
    /// The metadata after the repair.
    pub after: Metadata,
}

/// Rewrite every copy that is not `ok` from the newest valid one.
pub fn repair<M: MetadataIo + ?Sized>(io: &M) -> Result<RepairOutcome, MetadataError> {
    let before = read(io)?;
    let current = before.require_current()?;
    if current.is_newer_minor() {
        return Err(MetadataError::NewerMinor {
            minor: current.version_minor,
        });
    }
    check_fits(&current.geometry, io.size())?;
    let [backup, primary] = verified_blocks(&current, io.size())?;
    let mut rewritten = Vec::new();
    for (slot, (offset, block)) in [(Slot::Primary, primary), (Slot::Backup, backup)] {
        if before.copy(slot).state != CopyState::Ok {
            io.write_durable_at(offset, &block)?;
            rewritten.push(slot);
        }
    }
    let after = read(io)?;
    for slot in [Slot::Primary, Slot::Backup] {
        let report = after.copy(slot);
        if report.state != CopyState::Ok {
            return Err(MetadataError::RepairUnverified {
                slot,
                detail: describe_copy(report),
            });
        }
    }
    Ok(RepairOutcome { rewritten, after })
}
