//! Super block v1: one 4096-byte little-endian block, kept in two copies.
//!
//! The raw struct below is the byte layout and nothing else; [`SuperBlock`] is
//! the validated form the rest of the program uses. Decoding trusts no field
//! before the magic and the CRC32C have passed, then checks in the order
//! FORMAT.md §5 lists: the version, unknown incompatible features (both mean
//! "a newer format": unsupported, never corrupt), the location and layout
//! rules, reserved bytes. Each failure has its own variant so `check` can say
//! exactly what is wrong with a copy.
//!
//! Version rule: a reader accepts any minor version of the major it knows. A
//! newer minor may only add fields in the reserved area (and compat features),
//! so the reserved bytes are checked only when the minor is not newer than the
//! reader's; a writer never rewrites a copy with a newer minor (it would drop
//! fields it does not know). A newer major, or an unknown incompatible feature
//! bit, makes the copy unusable: the reader refuses it and must not write.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::crc::{crc32c, crc32c_append};
use crate::geometry::{
    Alignment, Geometry, GeometryError, LogicalBlockSize, PRIMARY_OFFSET, ReserveMode,
    SUPERBLOCK_SIZE, backup_offset_for,
};
use crate::owners::{
    COMPAT_RESERVE_OWNERS, ENTRIES_OFFSET, ENTRY_LEN, OWNERS_MINOR, OwnerError, Owners, RawTable,
    TABLE_END, TABLE_OFFSET,
};
use crate::uuid::Uuid;

/// The magic at byte 0 of each copy. Distinct from the signatures Linux probes
/// at the same offsets (`NVDIMM_PFN_INFO\0`, `NVDIMM_DAX_INFO\0`,
/// `BTT_ARENA_INFO\0`).
pub const MAGIC: [u8; 16] = *b"PMEM-STACK-SUPER";
/// Major version this code reads and writes.
pub const VERSION_MAJOR: u16 = 1;
/// The newest minor version this code reads in full and writes: 1.1, which
/// adds the reserve's owner table ([`crate::owners`]). A volume without an
/// owner table is still written as 1.0 (byte for byte what a 1.0 writer
/// writes), so every 1.0 tool can also repair it.
pub const VERSION_MINOR: u16 = OWNERS_MINOR;
/// Compatible feature bits this version knows: the owner table. Unknown ones
/// are ignored and preserved.
pub const KNOWN_COMPAT_FEATURES: u64 = COMPAT_RESERVE_OWNERS;
/// Incompatible feature bits this version knows (none yet). Any unknown one
/// makes the super block unusable for this reader.
pub const KNOWN_INCOMPAT_FEATURES: u64 = 0;

/// Length of a super block in bytes, as `usize` for buffers.
pub const BLOCK_LEN: usize = 4096;

/// Byte offset of the checksum field inside a copy.
pub const CHECKSUM_OFFSET: usize = 0x14;
/// Byte offset of the reserved (zero) tail.
pub const RESERVED_OFFSET: usize = 0xA0;

/// The on-media bytes. Field order and widths are the format; see
/// `docs/FORMAT.md` for the table this mirrors.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawSuperBlock {
    magic: [u8; 16],                             // 0x000
    version_major: U16,                          // 0x010
    version_minor: U16,                          // 0x012
    checksum: U32,                               // 0x014
    compat_features: U64,                        // 0x018
    incompat_features: U64,                      // 0x020
    uuid: [u8; 16],                              // 0x028
    parent_uuid: [u8; 16],                       // 0x038
    generation: U64,                             // 0x048
    self_offset: U64,                            // 0x050
    primary_offset: U64,                         // 0x058
    backup_offset: U64,                          // 0x060
    device_size: U64,                            // 0x068
    align: U64,                                  // 0x070
    logical_block_size: U32,                     // 0x078
    reserve_mode: U32,                           // 0x07C
    reserve_offset: U64,                         // 0x080
    reserve_size: U64,                           // 0x088
    data_offset: U64,                            // 0x090
    data_size: U64,                              // 0x098
    reserved: [u8; BLOCK_LEN - RESERVED_OFFSET], // 0x0A0..0x1000
}

const _: () = assert!(core::mem::size_of::<RawSuperBlock>() == BLOCK_LEN);
const _: () = assert!(SUPERBLOCK_SIZE == BLOCK_LEN as u64);
const _: () = assert!(core::mem::offset_of!(RawSuperBlock, checksum) == CHECKSUM_OFFSET);
const _: () = assert!(core::mem::offset_of!(RawSuperBlock, reserved) == RESERVED_OFFSET);
const _: () = assert!(core::mem::offset_of!(RawSuperBlock, data_size) == 0x98);

/// The fixed fields of a block as they are, nothing validated: what a
/// reader that must show a damaged copy (the C ABI's `psf_read_fields`)
/// needs. Read through [`RawSuperBlock`], so the offsets have one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFields {
    pub magic: [u8; 16],
    pub version_major: u16,
    pub version_minor: u16,
    pub checksum: u32,
    pub compat_features: u64,
    pub incompat_features: u64,
    pub uuid: [u8; 16],
    pub parent_uuid: [u8; 16],
    pub generation: u64,
    pub self_offset: u64,
    pub primary_offset: u64,
    pub backup_offset: u64,
    pub device_size: u64,
    pub align: u64,
    pub logical_block_size: u32,
    pub reserve_mode: u32,
    pub reserve_offset: u64,
    pub reserve_size: u64,
    pub data_offset: u64,
    pub data_size: u64,
}

impl RawFields {
    /// The fields of `block`, unvalidated.
    pub fn read(block: &[u8; BLOCK_LEN]) -> RawFields {
        // Same size, no alignment, any bytes valid: checked at compile time.
        let raw: &RawSuperBlock = zerocopy::transmute_ref!(block);
        RawFields {
            magic: raw.magic,
            version_major: raw.version_major.get(),
            version_minor: raw.version_minor.get(),
            checksum: raw.checksum.get(),
            compat_features: raw.compat_features.get(),
            incompat_features: raw.incompat_features.get(),
            uuid: raw.uuid,
            parent_uuid: raw.parent_uuid,
            generation: raw.generation.get(),
            self_offset: raw.self_offset.get(),
            primary_offset: raw.primary_offset.get(),
            backup_offset: raw.backup_offset.get(),
            device_size: raw.device_size.get(),
            align: raw.align.get(),
            logical_block_size: raw.logical_block_size.get(),
            reserve_mode: raw.reserve_mode.get(),
            reserve_offset: raw.reserve_offset.get(),
            reserve_size: raw.reserve_size.get(),
            data_offset: raw.data_offset.get(),
            data_size: raw.data_size.get(),
        }
    }
}

/// Where a copy lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// At byte 4096.
    Primary,
    /// In the last 4 KiB-aligned block of the backing.
    Backup,
}

impl Slot {
    /// Byte offset of this copy for a layout.
    pub fn offset(self, geometry: &Geometry) -> u64 {
        match self {
            Slot::Primary => PRIMARY_OFFSET,
            Slot::Backup => geometry.backup_offset(),
        }
    }

    /// Lower-case name for messages and JSON keys.
    pub const fn name(self) -> &'static str {
        match self {
            Slot::Primary => "primary",
            Slot::Backup => "backup",
        }
    }
}

/// A validated super block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SuperBlock {
    /// Minor version of the copy (major is always [`VERSION_MAJOR`]).
    pub version_minor: u16,
    /// Compatible feature bits (unknown ones preserved).
    pub compat_features: u64,
    /// Incompatible feature bits (all known, or decoding fails).
    pub incompat_features: u64,
    /// Identity of this pmem-stack volume, random at format.
    pub uuid: Uuid,
    /// UUID of the NVDIMM namespace it was formatted on, nil if none.
    pub parent_uuid: Uuid,
    /// Bumped by every format; the newest valid copy wins.
    pub generation: u64,
    /// The layout.
    pub geometry: Geometry,
    /// Format 1.1: the reserve's owners; empty when it is not split.
    pub owners: Owners,
}

/// Why a 4 KiB block is not a usable super block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("block is {0} bytes, not 4096")]
    Length(usize),
    #[error("no pmem-stack magic")]
    NoMagic,
    #[error(
        "format version {major}.{minor} is newer than this pmem-stack reads ({VERSION_MAJOR}.x); upgrade pmem-stack"
    )]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("format version {major}.{minor} was never written by any pmem-stack")]
    UnknownVersion { major: u16, minor: u16 },
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("copy records offset {recorded} but was read at {actual}")]
    WrongLocation { recorded: u64, actual: u64 },
    #[error("primary offset field is {0}, must be 4096")]
    PrimaryOffset(u64),
    #[error("backup offset field is {found}, but the last 4 KiB block is at {expected}")]
    BackupOffset { found: u64, expected: u64 },
    #[error("alignment {0} is not 4K, 2M or 1G")]
    Alignment(u64),
    #[error("logical block size {0} is not 512 or 4096")]
    LogicalBlockSize(u32),
    #[error("reserve mode {0} is unknown")]
    ReserveMode(u32),
    #[error("uuid is nil")]
    NilUuid,
    #[error("generation is 0")]
    ZeroGeneration,
    #[error("layout: {0}")]
    Geometry(#[from] GeometryError),
    #[error(
        "unknown incompatible features {0:#x}: written by a newer pmem-stack; upgrade pmem-stack"
    )]
    UnknownIncompatFeatures(u64),
    #[error("reserved byte at offset {0:#x} is not zero")]
    ReservedNotZero(usize),
    #[error("reserve owners: {0}")]
    Owners(#[from] OwnerError),
}

impl DecodeError {
    /// Whether the block is a pmem-stack super block that this version must not
    /// interpret (or overwrite): a newer major or unknown incompatible features.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            DecodeError::UnsupportedVersion { .. } | DecodeError::UnknownIncompatFeatures(_)
        )
    }

    /// Whether the block carries no pmem-stack magic at all.
    pub fn is_missing(&self) -> bool {
        matches!(self, DecodeError::NoMagic)
    }
}

/// CRC32C (Castagnoli) of a 4096-byte block with the checksum field taken as
/// zero.
pub fn checksum(block: &[u8; BLOCK_LEN]) -> u32 {
    let crc = crc32c(&block[..CHECKSUM_OFFSET]);
    let crc = crc32c_append(crc, &[0u8; 4]);
    crc32c_append(crc, &block[CHECKSUM_OFFSET + 4..])
}

/// Whether the block starts with the pmem-stack magic (valid or not).
pub fn has_magic(block: &[u8]) -> bool {
    block.get(..MAGIC.len()) == Some(&MAGIC[..])
}

/// The `device_size` a block *claims*, read without any validation — for one
/// purpose only: when the primary copy is damaged, its size field (often
/// intact: damage is rarely the whole block) names the place where that
/// volume's backup copy would be, which is then read and validated in full.
/// `None` without our magic.
pub fn claimed_device_size(block: &[u8; BLOCK_LEN]) -> Option<u64> {
    let raw = RawSuperBlock::ref_from_bytes(block.as_slice()).ok()?;
    (raw.magic == MAGIC).then(|| raw.device_size.get())
}

/// Whether `minor` is newer than the minor this code writes.
const fn minor_is_newer(minor: u16) -> bool {
    minor > VERSION_MINOR
}

/// Step 5's layout part: the copy locations and choices the block records
/// must be known values, and its offsets the ones the layout rules derive.
/// The layout a copy records, read without trusting it: the magic must be
/// there and the fields must obey the layout rules, but the checksum and
/// everything else go unchecked. For telling a user what a damaged volume
/// was laid out as, so that the same layout can be written again over its
/// data area; never for serving it or writing from it.
pub fn unverified_layout(bytes: &[u8]) -> Option<Geometry> {
    let raw = RawSuperBlock::ref_from_bytes(bytes).ok()?;
    if raw.magic != MAGIC {
        return None;
    }
    decode_layout(raw).ok()
}

fn decode_layout(raw: &RawSuperBlock) -> Result<Geometry, DecodeError> {
    let primary = raw.primary_offset.get();
    if primary != PRIMARY_OFFSET {
        return Err(DecodeError::PrimaryOffset(primary));
    }
    let device_size = raw.device_size.get();
    let expected_backup =
        backup_offset_for(device_size).ok_or(GeometryError::DeviceTooSmall { device_size })?;
    let backup = raw.backup_offset.get();
    if backup != expected_backup {
        return Err(DecodeError::BackupOffset {
            found: backup,
            expected: expected_backup,
        });
    }
    let align_raw = raw.align.get();
    let align = Alignment::from_bytes(align_raw).ok_or(DecodeError::Alignment(align_raw))?;
    let lbs_raw = raw.logical_block_size.get();
    let logical_block_size =
        LogicalBlockSize::from_bytes(lbs_raw).ok_or(DecodeError::LogicalBlockSize(lbs_raw))?;
    let mode_raw = raw.reserve_mode.get();
    let mode = ReserveMode::from_raw(mode_raw).ok_or(DecodeError::ReserveMode(mode_raw))?;
    // The layout rules: derive from the recorded choices, then every
    // recorded offset must be the derived one.
    Geometry::derive(
        device_size,
        align,
        logical_block_size,
        mode,
        raw.reserve_size.get(),
    )?
    .check_recorded(
        raw.reserve_offset.get(),
        raw.data_offset.get(),
        raw.data_size.get(),
    )
    .map_err(DecodeError::from)
}

/// Step 6: the owner table of a copy whose compatible features announce
/// one (none otherwise). The bit is 1.1's, so a 1.0 copy carrying it is
/// corrupt (a 1.0 reader would find its reserved bytes non-zero).
fn decode_owners(
    block: &[u8; BLOCK_LEN],
    compat: u64,
    minor: u16,
    geometry: &Geometry,
) -> Result<Owners, DecodeError> {
    if compat & COMPAT_RESERVE_OWNERS == 0 {
        return Ok(Owners::NONE);
    }
    if minor < OWNERS_MINOR {
        return Err(OwnerError::OldMinor.into());
    }
    let raw = RawTable::ref_from_bytes(&block[TABLE_OFFSET..TABLE_END])
        .map_err(|_| DecodeError::Length(BLOCK_LEN))?;
    let owners = Owners::decode(raw)?;
    owners.validate(geometry.reserve_offset(), geometry.reserve_size())?;
    Ok(owners)
}

impl SuperBlock {
    /// The minor version a copy with `owners` is written as: 1.0 without an
    /// owner table (what every 1.0 tool reads in full), 1.1 with one.
    pub fn minor_for(owners: &Owners) -> u16 {
        if owners.is_empty() { 0 } else { OWNERS_MINOR }
    }

    /// Replace the owner table, keeping the version and the feature bit in
    /// step with it (a copy of a newer minor keeps its minor).
    pub fn set_owners(&mut self, owners: Owners) {
        self.owners = owners;
        if !owners.is_empty() {
            self.version_minor = self.version_minor.max(OWNERS_MINOR);
        }
        self.compat_features = self.compat_features_to_write();
    }

    /// The compatible feature bits as written: the owner bit follows the
    /// table, unknown bits are preserved.
    fn compat_features_to_write(&self) -> u64 {
        if self.owners.is_empty() {
            self.compat_features & !COMPAT_RESERVE_OWNERS
        } else {
            self.compat_features | COMPAT_RESERVE_OWNERS
        }
    }

    /// Whether this copy was written by a newer minor version; such a copy is
    /// read but never rewritten.
    pub fn is_newer_minor(&self) -> bool {
        minor_is_newer(self.version_minor)
    }

    /// Encode this super block as the copy for `slot`.
    pub fn encode(&self, slot: Slot) -> [u8; BLOCK_LEN] {
        let g = &self.geometry;
        let raw = RawSuperBlock {
            magic: MAGIC,
            version_major: U16::new(VERSION_MAJOR),
            version_minor: U16::new(self.version_minor),
            checksum: U32::new(0),
            compat_features: U64::new(self.compat_features_to_write()),
            incompat_features: U64::new(self.incompat_features),
            uuid: self.uuid.0,
            parent_uuid: self.parent_uuid.0,
            generation: U64::new(self.generation),
            self_offset: U64::new(slot.offset(g)),
            primary_offset: U64::new(PRIMARY_OFFSET),
            backup_offset: U64::new(g.backup_offset()),
            device_size: U64::new(g.device_size()),
            align: U64::new(g.align().bytes()),
            logical_block_size: U32::new(g.logical_block_size().bytes()),
            reserve_mode: U32::new(g.mode().to_raw()),
            reserve_offset: U64::new(g.reserve_offset()),
            reserve_size: U64::new(g.reserve_size()),
            data_offset: U64::new(g.data_offset()),
            data_size: U64::new(g.data_size()),
            reserved: [0; BLOCK_LEN - RESERVED_OFFSET],
        };
        let mut block = [0u8; BLOCK_LEN];
        block.copy_from_slice(raw.as_bytes());
        if !self.owners.is_empty() {
            block[TABLE_OFFSET..TABLE_END].copy_from_slice(self.owners.encode().as_bytes());
        }
        let crc = checksum(&block);
        block[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        block
    }

    /// Decode and validate the copy read at byte offset `read_at`.
    pub fn decode(bytes: &[u8], read_at: u64) -> Result<SuperBlock, DecodeError> {
        let block: &[u8; BLOCK_LEN] = bytes
            .try_into()
            .map_err(|_| DecodeError::Length(bytes.len()))?;
        let raw = RawSuperBlock::ref_from_bytes(block.as_slice())
            .map_err(|_| DecodeError::Length(bytes.len()))?;

        // 1. magic
        if raw.magic != MAGIC {
            return Err(DecodeError::NoMagic);
        }
        // 2. checksum, before any field is believed: a damaged byte may sit
        //    in the version or the feature flags too. Its place and
        //    algorithm are fixed for every major version (FORMAT.md §4), so
        //    a newer major's intact copy passes here.
        let stored = raw.checksum.get();
        let computed = checksum(block);
        if stored != computed {
            return Err(DecodeError::Checksum { stored, computed });
        }
        // 3. version: only an intact copy of a newer major is unsupported;
        //    an older one was never written by anyone.
        let major = raw.version_major.get();
        let minor = raw.version_minor.get();
        if major > VERSION_MAJOR {
            return Err(DecodeError::UnsupportedVersion { major, minor });
        }
        if major < VERSION_MAJOR {
            return Err(DecodeError::UnknownVersion { major, minor });
        }
        // 4. unknown incompatible features: a newer format, whose layout this
        //    reader cannot judge — so before the layout checks, never
        //    "corrupt", and never repaired over.
        let incompat = raw.incompat_features.get();
        let unknown = incompat & !KNOWN_INCOMPAT_FEATURES;
        if unknown != 0 {
            return Err(DecodeError::UnknownIncompatFeatures(unknown));
        }
        // 5. ranges: where the copy is, then the layout rules.
        let self_offset = raw.self_offset.get();
        if self_offset != read_at {
            return Err(DecodeError::WrongLocation {
                recorded: self_offset,
                actual: read_at,
            });
        }
        let geometry = decode_layout(raw)?;
        let uuid = Uuid(raw.uuid);
        if uuid.is_nil() {
            return Err(DecodeError::NilUuid);
        }
        let generation = raw.generation.get();
        if generation == 0 {
            return Err(DecodeError::ZeroGeneration);
        }
        // 6. format 1.1: the reserve's owner table, when announced.
        let compat = raw.compat_features.get();
        let owners = decode_owners(block, compat, minor, &geometry)?;
        // 7. reserved bytes (after the owner table, if any), unless a newer
        //    minor may have defined them.
        let unused = if owners.is_empty() {
            RESERVED_OFFSET
        } else {
            ENTRIES_OFFSET + owners.len() * ENTRY_LEN
        };
        if !minor_is_newer(minor)
            && let Some(pos) = block[unused..].iter().position(|&b| b != 0)
        {
            return Err(DecodeError::ReservedNotZero(unused + pos));
        }
        Ok(SuperBlock {
            version_minor: minor,
            compat_features: compat,
            incompat_features: incompat,
            uuid,
            parent_uuid: Uuid(raw.parent_uuid),
            generation,
            geometry,
            owners,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn sample() -> SuperBlock {
        SuperBlock {
            version_minor: 0,
            compat_features: 0,
            incompat_features: 0,
            uuid: Uuid([
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x47, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
                0xff, 0x00,
            ]),
            parent_uuid: Uuid::NIL,
            generation: 7,
            geometry: Geometry::derive(
                2 * GIB,
                Alignment::M2,
                LogicalBlockSize::B512,
                ReserveMode::Hypervisor,
                512 * MIB,
            )
            .expect("valid"),
            owners: Owners::NONE,
        }
    }

    fn le64(block: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(block[off..off + 8].try_into().expect("8 bytes"))
    }

    /// Rewrite a field and fix the checksum, so a test reaches the check after it.
    fn patch(block: &mut [u8; BLOCK_LEN], off: usize, bytes: &[u8]) {
        block[off..off + bytes.len()].copy_from_slice(bytes);
        let crc = checksum(block);
        block[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn round_trip_both_slots() {
        let sb = sample();
        for slot in [Slot::Primary, Slot::Backup] {
            let block = sb.encode(slot);
            let at = slot.offset(&sb.geometry);
            assert_eq!(SuperBlock::decode(&block, at), Ok(sb));
        }
    }

    #[test]
    fn fields_sit_at_documented_offsets() {
        let sb = sample();
        let b = sb.encode(Slot::Backup);
        assert_eq!(&b[0..16], b"PMEM-STACK-SUPER");
        assert_eq!(u16::from_le_bytes([b[0x10], b[0x11]]), 1);
        assert_eq!(u16::from_le_bytes([b[0x12], b[0x13]]), 0);
        assert_eq!(&b[0x28..0x38], &sb.uuid.0);
        assert_eq!(le64(&b, 0x48), 7);
        assert_eq!(le64(&b, 0x50), 2 * GIB - 4096, "self offset");
        assert_eq!(le64(&b, 0x58), 4096);
        assert_eq!(le64(&b, 0x60), 2 * GIB - 4096);
        assert_eq!(le64(&b, 0x68), 2 * GIB);
        assert_eq!(le64(&b, 0x70), 2 * MIB);
        assert_eq!(
            u32::from_le_bytes(b[0x78..0x7C].try_into().expect("4")),
            512
        );
        assert_eq!(u32::from_le_bytes(b[0x7C..0x80].try_into().expect("4")), 1);
        assert_eq!(le64(&b, 0x80), 2 * MIB);
        assert_eq!(le64(&b, 0x88), 512 * MIB);
        assert_eq!(le64(&b, 0x90), 514 * MIB);
        assert_eq!(le64(&b, 0x98), 2 * GIB - 516 * MIB);
        assert!(b[0xA0..].iter().all(|&x| x == 0));
    }

    #[test]
    fn checksum_covers_every_byte() {
        let block = sample().encode(Slot::Primary);
        for pos in [0usize, 0x13, 0x18, 0x50, 0x9F, 0xA0, 0x800, 4095] {
            let mut bad = block;
            bad[pos] ^= 0x01;
            let err = SuperBlock::decode(&bad, PRIMARY_OFFSET).expect_err("flipped");
            if pos < 16 {
                assert_eq!(err, DecodeError::NoMagic);
            } else if pos == 0x10 {
                assert!(err.is_unsupported());
            } else {
                assert!(
                    matches!(err, DecodeError::Checksum { .. }),
                    "{pos}: {err:?}"
                );
            }
        }
        // The checksum field itself.
        let mut bad = block;
        bad[CHECKSUM_OFFSET] ^= 0x80;
        assert!(matches!(
            SuperBlock::decode(&bad, PRIMARY_OFFSET),
            Err(DecodeError::Checksum { .. })
        ));
    }

    #[test]
    fn checksum_is_crc32c_with_field_zeroed() {
        let block = sample().encode(Slot::Primary);
        let mut zeroed = block;
        zeroed[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].fill(0);
        let stored = u32::from_le_bytes(
            block[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4]
                .try_into()
                .expect("4"),
        );
        assert_eq!(stored, ::crc32c::crc32c(&zeroed));
        assert_eq!(stored, crc32c(&zeroed));
        // And the well-known CRC32C check value, so the polynomial is right.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn every_validation_error() {
        let sb = sample();
        let good = sb.encode(Slot::Primary);
        let decode = |b: &[u8; BLOCK_LEN]| SuperBlock::decode(b, PRIMARY_OFFSET);

        assert_eq!(
            SuperBlock::decode(&good[..100], PRIMARY_OFFSET),
            Err(DecodeError::Length(100))
        );
        assert_eq!(
            SuperBlock::decode(&[0u8; BLOCK_LEN], PRIMARY_OFFSET),
            Err(DecodeError::NoMagic)
        );

        let mut b = good;
        patch(&mut b, 0x10, &2u16.to_le_bytes());
        assert_eq!(
            decode(&b),
            Err(DecodeError::UnsupportedVersion { major: 2, minor: 0 })
        );

        assert_eq!(
            SuperBlock::decode(&good, sb.geometry.backup_offset()),
            Err(DecodeError::WrongLocation {
                recorded: PRIMARY_OFFSET,
                actual: sb.geometry.backup_offset()
            })
        );

        let mut b = good;
        patch(&mut b, 0x58, &8192u64.to_le_bytes());
        assert_eq!(decode(&b), Err(DecodeError::PrimaryOffset(8192)));

        let mut b = good;
        patch(&mut b, 0x60, &(GIB).to_le_bytes());
        assert!(matches!(decode(&b), Err(DecodeError::BackupOffset { .. })));

        let mut b = good;
        patch(&mut b, 0x68, &4096u64.to_le_bytes());
        assert!(matches!(
            decode(&b),
            Err(DecodeError::Geometry(GeometryError::DeviceTooSmall { .. }))
        ));

        let mut b = good;
        patch(&mut b, 0x70, &(MIB).to_le_bytes());
        assert_eq!(decode(&b), Err(DecodeError::Alignment(MIB)));

        let mut b = good;
        patch(&mut b, 0x78, &1024u32.to_le_bytes());
        assert_eq!(decode(&b), Err(DecodeError::LogicalBlockSize(1024)));

        let mut b = good;
        patch(&mut b, 0x7C, &9u32.to_le_bytes());
        assert_eq!(decode(&b), Err(DecodeError::ReserveMode(9)));

        let mut b = good;
        patch(&mut b, 0x90, &(516 * MIB).to_le_bytes());
        assert!(matches!(
            decode(&b),
            Err(DecodeError::Geometry(GeometryError::DataOffset { .. }))
        ));

        let mut b = good;
        patch(&mut b, 0x28, &[0u8; 16]);
        assert_eq!(decode(&b), Err(DecodeError::NilUuid));

        let mut b = good;
        patch(&mut b, 0x48, &0u64.to_le_bytes());
        assert_eq!(decode(&b), Err(DecodeError::ZeroGeneration));

        let mut b = good;
        patch(&mut b, 0x20, &4u64.to_le_bytes());
        let err = decode(&b).expect_err("unknown incompat");
        assert_eq!(err, DecodeError::UnknownIncompatFeatures(4));
        assert!(err.is_unsupported());

        let mut b = good;
        patch(&mut b, 0x123, &[1]);
        assert_eq!(decode(&b), Err(DecodeError::ReservedNotZero(0x123)));
    }

    #[test]
    fn unknown_compat_features_are_kept() {
        let mut b = sample().encode(Slot::Primary);
        patch(&mut b, 0x18, &0x8000_0000_0000_0002u64.to_le_bytes());
        let sb = SuperBlock::decode(&b, PRIMARY_OFFSET).expect("compat bits are fine");
        assert_eq!(sb.compat_features, 0x8000_0000_0000_0002);
        assert_eq!(sb.encode(Slot::Primary), b);
    }

    /// `block` with the u16 at `at` set to `value` and the checksum redone:
    /// what a writer of that value would have written.
    fn rewritten(mut block: [u8; BLOCK_LEN], at: usize, value: &[u8]) -> [u8; BLOCK_LEN] {
        block[at..at + value.len()].copy_from_slice(value);
        let sum = checksum(&block);
        block[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&sum.to_le_bytes());
        block
    }

    #[test]
    fn only_an_intact_newer_major_is_unsupported() {
        let block = sample().encode(Slot::Primary);
        let newer = rewritten(
            block,
            std::mem::offset_of!(RawSuperBlock, version_major),
            &2u16.to_le_bytes(),
        );
        let err = SuperBlock::decode(&newer, PRIMARY_OFFSET).expect_err("v2");
        assert!(err.is_unsupported(), "{err}");
        assert!(err.to_string().contains("newer"), "{err}");
        // Major 0 was never written: an intact but impossible copy is
        // corrupt, and never called "newer".
        let zero = rewritten(
            block,
            std::mem::offset_of!(RawSuperBlock, version_major),
            &0u16.to_le_bytes(),
        );
        let err = SuperBlock::decode(&zero, PRIMARY_OFFSET).expect_err("v0");
        assert_eq!(err, DecodeError::UnknownVersion { major: 0, minor: 0 });
        assert!(!err.is_unsupported());
        assert!(!err.to_string().contains("newer"), "{err}");
        // A damaged version byte is corruption, whatever it claims.
        let mut damaged = block;
        damaged[0x10] = 3;
        let err = SuperBlock::decode(&damaged, PRIMARY_OFFSET).expect_err("damaged");
        assert!(matches!(err, DecodeError::Checksum { .. }), "{err}");
    }

    #[test]
    fn a_newer_format_with_a_layout_we_cannot_judge_is_unsupported_not_corrupt() {
        // An intact copy with an unknown incompatible feature whose layout
        // fields break our rules: unsupported (never repaired over), not
        // corrupt.
        let block = sample().encode(Slot::Primary);
        let newer = rewritten(
            block,
            std::mem::offset_of!(RawSuperBlock, incompat_features),
            &(1u64 << 40).to_le_bytes(),
        );
        let odd_layout = rewritten(
            newer,
            std::mem::offset_of!(RawSuperBlock, data_offset),
            &7u64.to_le_bytes(),
        );
        let err = SuperBlock::decode(&odd_layout, PRIMARY_OFFSET).expect_err("newer");
        assert!(err.is_unsupported(), "{err}");
        // It is also unsupported when read at another copy's place.
        let err = SuperBlock::decode(&newer, 8192).expect_err("elsewhere");
        assert!(err.is_unsupported(), "{err}");
    }

    #[test]
    fn newer_minor_is_read_and_its_reserved_bytes_are_not_judged() {
        let mut b = sample().encode(Slot::Primary);
        patch(&mut b, 0x12, &3u16.to_le_bytes());
        patch(&mut b, 0x200, &[0xAB]);
        let sb = SuperBlock::decode(&b, PRIMARY_OFFSET).expect("newer minor reads");
        assert_eq!(sb.version_minor, 3);
        assert!(sb.is_newer_minor());
    }

    fn split() -> SuperBlock {
        use crate::owners::{Owner, OwnerKind, OwnerName};
        let mut sb = sample();
        let mut owners = Owners::NONE;
        for (name, kind, offset, size) in [
            ("xen", OwnerKind::Hypervisor, 2 * MIB, 24 * MIB),
            ("dom0", OwnerKind::Os, 26 * MIB, 488 * MIB),
        ] {
            owners
                .push(Owner {
                    kind,
                    name: OwnerName::new(name).expect("name"),
                    offset,
                    size,
                })
                .expect("room");
        }
        sb.set_owners(owners);
        sb
    }

    #[test]
    fn owners_round_trip_as_1_1_with_the_compat_bit() {
        let sb = split();
        assert_eq!(sb.version_minor, 1);
        let b = sb.encode(Slot::Primary);
        assert_eq!(u16::from_le_bytes([b[0x12], b[0x13]]), 1);
        assert_eq!(le64(&b, 0x18), COMPAT_RESERVE_OWNERS);
        assert_eq!(u32::from_le_bytes(b[0xA0..0xA4].try_into().expect("4")), 2);
        assert_eq!(le64(&b, 0xA8), 2 * MIB);
        assert_eq!(le64(&b, 0xB0), 24 * MIB);
        assert_eq!(u32::from_le_bytes(b[0xB8..0xBC].try_into().expect("4")), 1);
        assert_eq!(&b[0xC0..0xC4], b"xen\0");
        assert_eq!(le64(&b, 0xE8), 26 * MIB);
        assert_eq!(&b[0x100..0x105], b"dom0\0");
        assert!(b[0x128..].iter().all(|&x| x == 0));
        let back = SuperBlock::decode(&b, PRIMARY_OFFSET).expect("decodes");
        assert_eq!(back, sb);
        // The 1.0 fields are those of the unsplit volume: a 1.0 reader,
        // which skips a newer minor's reserved bytes and ignores unknown
        // compatible bits, sees the same single reserve.
        let plain = sample().encode(Slot::Primary);
        assert_eq!(b[0x28..0xA0], plain[0x28..0xA0]);
    }

    #[test]
    fn a_bad_owner_table_is_corrupt() {
        let good = split().encode(Slot::Primary);
        let decode = |b: &[u8; BLOCK_LEN]| SuperBlock::decode(b, PRIMARY_OFFSET);
        // Announced by a 1.0 copy.
        let mut b = good;
        patch(&mut b, 0x12, &0u16.to_le_bytes());
        assert_eq!(decode(&b), Err(OwnerError::OldMinor.into()));
        // Beyond the reserve.
        let mut b = good;
        patch(&mut b, 0xF0, &(600 * MIB).to_le_bytes());
        assert!(matches!(
            decode(&b),
            Err(DecodeError::Owners(OwnerError::OutsideReserve { .. }))
        ));
        // A byte after the table.
        let mut b = good;
        patch(&mut b, 0x4A8, &[1]);
        assert_eq!(decode(&b), Err(DecodeError::ReservedNotZero(0x4A8)));
        // An unused entry.
        let mut b = good;
        patch(&mut b, 0x128, &[1]);
        assert_eq!(decode(&b), Err(DecodeError::ReservedNotZero(0x128)));
        assert!(
            !decode(&b).expect_err("bad").is_unsupported(),
            "corrupt, not newer"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            /// Decoding arbitrary bytes never panics, at any offset.
            #[test]
            fn arbitrary_bytes_never_panic(
                bytes in proptest::collection::vec(any::<u8>(), 0..5000),
                at in any::<u64>(),
            ) {
                let _ = SuperBlock::decode(&bytes, at);
            }

            /// Arbitrary content behind a valid magic and version never panics
            /// and never decodes unless the checksum matches.
            #[test]
            fn garbage_with_magic_is_rejected(mut body in proptest::collection::vec(any::<u8>(), BLOCK_LEN)) {
                body[..16].copy_from_slice(&MAGIC);
                body[0x10..0x12].copy_from_slice(&1u16.to_le_bytes());
                let block: [u8; BLOCK_LEN] = body.try_into().expect("len");
                if let Ok(sb) = SuperBlock::decode(&block, PRIMARY_OFFSET) {
                    prop_assert_eq!(checksum(&block), u32::from_le_bytes(block[0x14..0x18].try_into().expect("4")));
                    prop_assert_eq!(sb.geometry.validate(), Ok(()));
                }
            }

            /// Changing any byte of a valid copy makes it fail: no field
            /// escapes the checksum, and the error is the documented kind.
            #[test]
            fn every_single_byte_change_is_caught(pos in 0usize..BLOCK_LEN, xor in 1u8..=255) {
                let mut block = sample().encode(Slot::Primary);
                block[pos] ^= xor;
                let err = SuperBlock::decode(&block, PRIMARY_OFFSET).expect_err("changed");
                match pos {
                    0..=15 => prop_assert_eq!(err, DecodeError::NoMagic),
                    // The version too: no field is believed before the
                    // checksum holds, so a damaged version is corruption,
                    // not a newer format.
                    _ => prop_assert!(matches!(err, DecodeError::Checksum { .. }), "{:?}", err),
                }
            }

            /// Encoding then decoding gives back any valid super block.
            #[test]
            fn round_trip_any_valid(
                size in (16u64 << 20)..(1u64 << 44),
                reserve_units in 0u64..64,
                minor_compat in any::<u64>(),
                generation in 1u64..u64::MAX,
                uuid in any::<[u8; 16]>().prop_filter("not nil", |u| u != &[0; 16]),
            ) {
                let mode = if reserve_units == 0 { ReserveMode::None } else { ReserveMode::Hypervisor };
                if let Ok(geometry) = Geometry::derive(size, Alignment::M2, LogicalBlockSize::B4096, mode, reserve_units << 21) {
                    let sb = SuperBlock {
                        version_minor: 0,
                        // The owner bit follows the owner table (none here).
                        compat_features: minor_compat & !COMPAT_RESERVE_OWNERS,
                        incompat_features: 0,
                        uuid: Uuid(uuid),
                        parent_uuid: Uuid(uuid),
                        generation,
                        geometry,
                        owners: Owners::NONE,
                    };
                    for slot in [Slot::Primary, Slot::Backup] {
                        prop_assert_eq!(SuperBlock::decode(&sb.encode(slot), slot.offset(&geometry)), Ok(sb));
                    }
                }
            }
        }
    }

    #[test]
    fn magic_differs_from_linux_signatures() {
        for linux in [
            &b"NVDIMM_PFN_INFO\0"[..],
            &b"NVDIMM_DAX_INFO\0"[..],
            &b"BTT_ARENA_INFO\0\0"[..],
        ] {
            assert_ne!(&MAGIC[..], linux);
        }
    }
}
