//! Whether a new volume may be written, and writing it: every copy is
//! encoded and decoded by the reader's own decoder before the first write.

use crate::format::geometry::{PRIMARY_OFFSET, backup_offset_for};
use crate::format::superblock::BLOCK_LEN;
use crate::format::{Geometry, Owners, Slot, SuperBlock, Uuid};

use super::read::{Found, probe_foreign, read, read_block};
use super::{CopyState, MetadataError, MetadataIo, Refusal, check_fits, describe_copy};

/// Everything `format` checks before writing; `Ok` means writing is allowed.
///
/// Returns the generation the new volume must carry: above any copy already
/// there, so that a crash between the two writes of a re-format lets the new
/// backup win over the old primary.
pub fn check_format_allowed<M: MetadataIo + ?Sized>(
    io: &M,
    force: bool,
) -> Result<u64, MetadataError> {
    let metadata = match read(io) {
        Ok(metadata) => Some(metadata),
        // A newer version's volume: only --force may overwrite it.
        Err(MetadataError::Unsupported { .. }) if force => None,
        Err(err) => return Err(err),
    };
    if !force {
        if let Some(m) = &metadata {
            if let Some(cur) = m.current {
                return Err(Refusal::ExistingVolume {
                    uuid: cur.uuid,
                    generation: cur.generation,
                }
                .into());
            }
            if let Some((found_at, recorded)) = m.other_layout() {
                return Err(Refusal::OtherLayout { found_at, recorded }.into());
            }
            if m.has_any_copy() {
                let report = if m.primary.state == CopyState::Missing {
                    &m.backup
                } else {
                    &m.primary
                };
                return Err(Refusal::DamagedVolume {
                    detail: format!("{} {}", report.slot.name(), describe_copy(report)),
                }
                .into());
            }
        }
        let foreign = probe_foreign(io)?;
        if !foreign.is_empty() {
            return Err(Refusal::Foreign(foreign).into());
        }
    }
    // Every valid copy counts, even beside one a newer version wrote.
    let mut newest = 0;
    for offset in [Some(PRIMARY_OFFSET), backup_offset_for(io.size())]
        .into_iter()
        .flatten()
    {
        if let Found::Valid(sb) = read_block(io, offset)? {
            newest = newest.max(sb.generation);
        }
    }
    if let Some(m) = &metadata {
        for sb in [m.primary.decoded, m.backup.decoded].into_iter().flatten() {
            newest = newest.max(sb.generation);
        }
    }
    Ok(newest.saturating_add(1))
}

/// Both copies of `sb` as they are to be written, each decoded first with the
/// reader's own decoder at the place it goes and required to read back as
/// `sb`, on a volume that fits a backing of `device_size` bytes. Every
/// writer (format, reserve split, grow, repair) goes through here before
/// its first write, so nothing writes a volume its own reader would reject:
/// a check a writer missed turns into a refusal with the backing untouched.
pub fn verified_blocks(
    sb: &SuperBlock,
    device_size: u64,
) -> Result<[(u64, [u8; BLOCK_LEN]); 2], MetadataError> {
    let block = |slot: Slot| -> Result<(u64, [u8; BLOCK_LEN]), MetadataError> {
        let offset = slot.offset(&sb.geometry);
        let bytes = sb.encode(slot);
        let refuse = |detail: String| MetadataError::WouldNotRead { slot, detail };
        match SuperBlock::decode(&bytes, offset) {
            Ok(back) if back == *sb => {}
            Ok(_) => return Err(refuse("it decodes to a different volume".to_string())),
            Err(err) => return Err(refuse(err.to_string())),
        }
        check_fits(&sb.geometry, device_size).map_err(|err| refuse(err.to_string()))?;
        Ok((offset, bytes))
    };
    // Backup first: the order every writer writes in.
    Ok([block(Slot::Backup)?, block(Slot::Primary)?])
}

/// Write a new volume with `geometry`: backup first, then primary, each durable
/// before the next. The caller has run [`check_format_allowed`].
pub fn write_new_volume<M: MetadataIo + ?Sized>(
    io: &M,
    geometry: Geometry,
    generation: u64,
) -> Result<SuperBlock, MetadataError> {
    write_new_volume_with(io, geometry, Owners::NONE, generation)
}

/// The super block a new volume with `geometry` and `owners` gets (format
/// 1.1 with owners, else 1.0), checked by [`verified_blocks`] as if it were
/// about to be written; nothing is written (`format --dry-run`).
pub fn new_volume<M: MetadataIo + ?Sized>(
    io: &M,
    geometry: Geometry,
    owners: Owners,
    generation: u64,
) -> Result<SuperBlock, MetadataError> {
    let mut sb = SuperBlock {
        version_minor: SuperBlock::minor_for(&owners),
        compat_features: 0,
        incompat_features: 0,
        uuid: crate::format::random_uuid().map_err(MetadataError::Random)?,
        parent_uuid: io.namespace_uuid().unwrap_or(Uuid::NIL),
        generation,
        geometry,
        owners: Owners::NONE,
    };
    sb.set_owners(owners);
    verified_blocks(&sb, io.size())?;
    Ok(sb)
}

/// [`write_new_volume`] with the reserve split among `owners` (format 1.1;
/// the caller validated them against `geometry`). Without owners the copies
/// are version 1.0, byte for byte what a 1.0 writer writes.
pub fn write_new_volume_with<M: MetadataIo + ?Sized>(
    io: &M,
    geometry: Geometry,
    owners: Owners,
    generation: u64,
) -> Result<SuperBlock, MetadataError> {
    let sb = new_volume(io, geometry, owners, generation)?;
    for (offset, block) in verified_blocks(&sb, io.size())? {
        io.write_durable_at(offset, &block)?;
    }
    Ok(sb)
}
