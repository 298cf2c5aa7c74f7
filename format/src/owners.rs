//! Format 1.1: a reserve shared by several owners (FORMAT.md §3.1).
//!
//! The reserve of a 1.0 volume has one owner, named by `reserve_mode`. A 1.1
//! volume may split it into up to [`MAX_OWNERS`] named sub-ranges, each with
//! an owner kind (hypervisor, os, other), recorded in a table inside the
//! 1.0 `reserved` bytes, announced by the compatible feature bit
//! [`COMPAT_RESERVE_OWNERS`] — so a 1.0 reader still reads the volume (a
//! newer minor's reserved bytes are not checked, unknown compatible bits are
//! ignored) and sees one reserve.
//!
//! The table (all little-endian, offsets inside the 4096-byte copy):
//!
//! ```text
//! 0x0A0  u32  owner_count (1..=16)
//! 0x0A4  u32  zero
//! 0x0A8  16 × 64-byte entries, the first owner_count used, the rest zero:
//!        +0x00 u64 offset   (byte offset on the backing)
//!        +0x08 u64 size
//!        +0x10 u32 kind     (1 hypervisor, 2 os, 3 other)
//!        +0x14 u32 zero
//!        +0x18 32 bytes name (1–31 of [A-Za-z0-9._-], NUL padded)
//!        +0x38 8 bytes zero
//! 0x4A8  end of the table; zero up to 0x1000
//! ```
//!
//! Rules: every offset and size is a multiple of [`OWNER_ALIGN`] (4 KiB, the
//! frame size owners claim in), sizes are not zero, the ranges lie inside the
//! reserve in ascending order without overlapping, names are distinct. Space
//! of the reserve that no owner holds is unassigned.

use core::fmt;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::units::PAGE_SIZE;

/// The compatible feature bit of a 1.1 owner table.
pub const COMPAT_RESERVE_OWNERS: u64 = 1;
/// The minor version that defines the owner table.
pub const OWNERS_MINOR: u16 = 1;
/// How many owners the table holds.
pub const MAX_OWNERS: usize = 16;
/// Bytes of an owner's name field (at most one less is used: NUL padded).
pub const NAME_LEN: usize = 32;
/// Alignment of every owner's offset and size: 4 KiB, the frames an owner
/// claims (Xen's MFNs, Linux's pages) — independent of the volume's
/// alignment, so a 1 GiB-aligned volume can still be split finely.
pub const OWNER_ALIGN: u64 = PAGE_SIZE;
/// Byte offset of the table (the count) inside a copy.
pub const TABLE_OFFSET: usize = 0xA0;
/// Byte offset of the first entry.
pub const ENTRIES_OFFSET: usize = 0xA8;
/// Bytes per entry.
pub const ENTRY_LEN: usize = 64;
/// End of the table.
pub const TABLE_END: usize = ENTRIES_OFFSET + MAX_OWNERS * ENTRY_LEN;

/// One entry as stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub(crate) struct RawOwner {
    offset: U64,
    size: U64,
    kind: U32,
    flags: U32,
    name: [u8; NAME_LEN],
    reserved: [u8; 8],
}

/// The table as stored.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawTable {
    count: U32,
    pad: U32,
    entries: [RawOwner; MAX_OWNERS],
}

const _: () = assert!(core::mem::size_of::<RawOwner>() == ENTRY_LEN);
const _: () = assert!(core::mem::size_of::<RawTable>() == TABLE_END - TABLE_OFFSET);

/// What an owner is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum OwnerKind {
    /// A hypervisor (Xen's frame table and M2P).
    Hypervisor,
    /// An operating system's page array (`struct page`).
    Os,
    /// Anything else; sized explicitly.
    Other,
}

impl OwnerKind {
    /// Every kind.
    pub const ALL: [OwnerKind; 3] = [OwnerKind::Hypervisor, OwnerKind::Os, OwnerKind::Other];

    /// The value recorded on the media.
    pub const fn to_raw(self) -> u32 {
        match self {
            OwnerKind::Hypervisor => 1,
            OwnerKind::Os => 2,
            OwnerKind::Other => 3,
        }
    }

    /// The kind recorded as `raw`, if known.
    pub const fn from_raw(raw: u32) -> Option<OwnerKind> {
        match raw {
            1 => Some(OwnerKind::Hypervisor),
            2 => Some(OwnerKind::Os),
            3 => Some(OwnerKind::Other),
            _ => None,
        }
    }

    /// The name on the command line and in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            OwnerKind::Hypervisor => "hypervisor",
            OwnerKind::Os => "os",
            OwnerKind::Other => "other",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<OwnerKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for OwnerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An owner's name: 1–31 bytes of `[A-Za-z0-9._-]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OwnerName([u8; NAME_LEN]);

impl OwnerName {
    /// The name `text`, if it is a valid one.
    pub fn new(text: &str) -> Result<OwnerName, OwnerError> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() >= NAME_LEN {
            return Err(OwnerError::NameLength(bytes.len()));
        }
        if let Some(&b) = bytes.iter().find(|&&b| !name_byte(b)) {
            return Err(OwnerError::NameByte(b));
        }
        let mut raw = [0u8; NAME_LEN];
        raw[..bytes.len()].copy_from_slice(bytes);
        Ok(OwnerName(raw))
    }

    /// The name as stored (NUL padded).
    pub const fn as_bytes(&self) -> &[u8; NAME_LEN] {
        &self.0
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        // Only ASCII is ever stored (checked by `new` and `from_raw`).
        core::str::from_utf8(&self.0[..len]).unwrap_or("")
    }

    /// The stored bytes, if they are a valid name.
    fn from_raw(raw: [u8; NAME_LEN]) -> Result<OwnerName, OwnerError> {
        let len = raw.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        if raw[len..].iter().any(|&b| b != 0) {
            return Err(OwnerError::NamePadding);
        }
        let text = core::str::from_utf8(&raw[..len]).map_err(|_| OwnerError::NameByte(0xFF))?;
        OwnerName::new(text)
    }
}

const fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

impl fmt::Debug for OwnerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for OwnerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One owner's sub-range of the reserve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// What it is.
    pub kind: OwnerKind,
    /// Its name.
    pub name: OwnerName,
    /// Byte offset on the backing.
    pub offset: u64,
    /// Bytes.
    pub size: u64,
}

impl Owner {
    /// One past its last byte.
    pub const fn end(&self) -> u64 {
        self.offset + self.size
    }
}

/// Why an owner table (or a request for one) is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("owner name of {0} bytes: it must be 1 to 31")]
    NameLength(usize),
    #[error("owner name byte {0:#04x}: names are letters, digits, '.', '_' and '-'")]
    NameByte(u8),
    #[error("owner name is not NUL padded")]
    NamePadding,
    #[error("owner count {0} is not 1 to 16")]
    Count(u32),
    #[error("owner kind {0} is unknown")]
    Kind(u32),
    #[error("owner '{0}' has non-zero reserved fields")]
    ReservedField(OwnerName),
    #[error("owner '{0}' is named twice")]
    Duplicate(OwnerName),
    #[error("owner '{name}' has size 0")]
    Empty { name: OwnerName },
    #[error("owner '{name}' at {offset} (size {size}) is not 4 KiB aligned")]
    Unaligned {
        name: OwnerName,
        offset: u64,
        size: u64,
    },
    #[error(
        "owner '{name}' ({offset}..{end}) is not inside the reserve ({reserve_offset}..{reserve_end})"
    )]
    OutsideReserve {
        name: OwnerName,
        offset: u64,
        end: u64,
        reserve_offset: u64,
        reserve_end: u64,
    },
    #[error("owner '{name}' overlaps or precedes the owner before it")]
    Overlap { name: OwnerName },
    #[error("an owner table on a volume without a reserve")]
    NoReserve,
    #[error("an owner table in a version 1.0 copy")]
    OldMinor,
}

/// The owners of a reserve: empty for an unsplit (1.0) reserve.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owners {
    entries: [Option<Owner>; MAX_OWNERS],
    count: usize,
}

impl fmt::Debug for Owners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Default for Owners {
    fn default() -> Owners {
        Owners::NONE
    }
}

impl Owners {
    /// No table: the reserve is not split.
    pub const NONE: Owners = Owners {
        entries: [None; MAX_OWNERS],
        count: 0,
    };

    /// Whether the reserve is not split.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many owners.
    pub const fn len(&self) -> usize {
        self.count
    }

    /// The owners, in ascending offset order.
    pub fn iter(&self) -> impl Iterator<Item = &Owner> {
        self.entries[..self.count].iter().flatten()
    }

    /// The owner called `name`.
    pub fn find(&self, name: &str) -> Option<&Owner> {
        self.iter().find(|o| o.name.as_str() == name)
    }

    /// The `index`-th owner.
    pub fn get(&self, index: usize) -> Option<&Owner> {
        self.entries.get(index).and_then(Option::as_ref)
    }

    /// Append an owner (unchecked until [`Owners::validate`]); fails when
    /// the table is full.
    pub fn push(&mut self, owner: Owner) -> Result<(), OwnerError> {
        if self.count == MAX_OWNERS {
            return Err(OwnerError::Count(
                u32::try_from(MAX_OWNERS + 1).unwrap_or(u32::MAX),
            ));
        }
        self.entries[self.count] = Some(owner);
        self.count += 1;
        Ok(())
    }

    /// Bytes of the reserve no owner holds.
    pub fn unassigned(&self, reserve_size: u64) -> u64 {
        reserve_size.saturating_sub(self.iter().map(|o| o.size).sum())
    }

    /// The rules of the table, for a reserve at `reserve_offset` of
    /// `reserve_size` bytes.
    pub fn validate(&self, reserve_offset: u64, reserve_size: u64) -> Result<(), OwnerError> {
        if self.is_empty() {
            return Ok(());
        }
        if reserve_size == 0 {
            return Err(OwnerError::NoReserve);
        }
        let reserve_end = reserve_offset + reserve_size;
        let mut previous_end = reserve_offset;
        for (i, o) in self.iter().enumerate() {
            if self.iter().take(i).any(|p| p.name == o.name) {
                return Err(OwnerError::Duplicate(o.name));
            }
            if o.size == 0 {
                return Err(OwnerError::Empty { name: o.name });
            }
            if o.offset % OWNER_ALIGN != 0 || o.size % OWNER_ALIGN != 0 {
                return Err(OwnerError::Unaligned {
                    name: o.name,
                    offset: o.offset,
                    size: o.size,
                });
            }
            let end = o.offset.checked_add(o.size);
            if o.offset < reserve_offset || end.is_none_or(|e| e > reserve_end) {
                return Err(OwnerError::OutsideReserve {
                    name: o.name,
                    offset: o.offset,
                    end: end.unwrap_or(u64::MAX),
                    reserve_offset,
                    reserve_end,
                });
            }
            if o.offset < previous_end {
                return Err(OwnerError::Overlap { name: o.name });
            }
            previous_end = o.end();
        }
        Ok(())
    }

    /// Decode the table bytes (`TABLE_OFFSET..TABLE_END` of a copy); the
    /// caller validates the ranges against the reserve.
    pub(crate) fn decode(raw: &RawTable) -> Result<Owners, OwnerError> {
        let count = raw.count.get();
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        if n == 0 || n > MAX_OWNERS || raw.pad.get() != 0 {
            return Err(OwnerError::Count(count));
        }
        let mut owners = Owners::NONE;
        for entry in &raw.entries[..n] {
            let name = OwnerName::from_raw(entry.name)?;
            let kind_raw = entry.kind.get();
            let kind = OwnerKind::from_raw(kind_raw).ok_or(OwnerError::Kind(kind_raw))?;
            if entry.flags.get() != 0 || entry.reserved != [0; 8] {
                return Err(OwnerError::ReservedField(name));
            }
            owners.push(Owner {
                kind,
                name,
                offset: entry.offset.get(),
                size: entry.size.get(),
            })?;
        }
        Ok(owners)
    }

    /// The table bytes for these owners.
    pub(crate) fn encode(&self) -> RawTable {
        let mut table = RawTable::new_zeroed();
        table.count = U32::new(u32::try_from(self.count).unwrap_or(0));
        for (raw, o) in table.entries.iter_mut().zip(self.iter()) {
            raw.offset = U64::new(o.offset);
            raw.size = U64::new(o.size);
            raw.kind = U32::new(o.kind.to_raw());
            raw.name = *o.name.as_bytes();
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn owner(name: &str, kind: OwnerKind, offset: u64, size: u64) -> Owner {
        Owner {
            kind,
            name: OwnerName::new(name).expect("name"),
            offset,
            size,
        }
    }

    #[test]
    fn names() {
        assert_eq!(OwnerName::new("xen").expect("ok").as_str(), "xen");
        assert_eq!(
            OwnerName::new("dom0.linux-6_12").expect("ok").as_str(),
            "dom0.linux-6_12"
        );
        assert!(matches!(OwnerName::new(""), Err(OwnerError::NameLength(0))));
        assert!(OwnerName::new(&"a".repeat(31)).is_ok());
        assert!(matches!(
            OwnerName::new(&"a".repeat(32)),
            Err(OwnerError::NameLength(32))
        ));
        assert!(matches!(
            OwnerName::new("a b"),
            Err(OwnerError::NameByte(b' '))
        ));
    }

    #[test]
    fn table_round_trips_and_validates() {
        let mut owners = Owners::NONE;
        owners
            .push(owner("xen", OwnerKind::Hypervisor, 2 * MIB, 24 * MIB))
            .expect("room");
        owners
            .push(owner("dom0", OwnerKind::Os, 26 * MIB, 32 * MIB))
            .expect("room");
        owners.validate(2 * MIB, 56 * MIB).expect("valid");
        let back = Owners::decode(&owners.encode()).expect("decodes");
        assert_eq!(back, owners);
        assert_eq!(back.unassigned(64 * MIB), 8 * MIB);
        assert_eq!(back.find("dom0").map(|o| o.size), Some(32 * MIB));
        // Outside, overlapping, unaligned, duplicate.
        assert!(matches!(
            owners.validate(2 * MIB, 40 * MIB),
            Err(OwnerError::OutsideReserve { .. })
        ));
        let mut bad = owners;
        bad.entries[1] = Some(owner("dom0", OwnerKind::Os, 25 * MIB, MIB));
        assert!(matches!(
            bad.validate(2 * MIB, 56 * MIB),
            Err(OwnerError::Overlap { .. })
        ));
        bad.entries[1] = Some(owner("dom0", OwnerKind::Os, 26 * MIB + 512, MIB));
        assert!(matches!(
            bad.validate(2 * MIB, 56 * MIB),
            Err(OwnerError::Unaligned { .. })
        ));
        bad.entries[1] = Some(owner("xen", OwnerKind::Os, 26 * MIB, MIB));
        assert!(matches!(
            bad.validate(2 * MIB, 56 * MIB),
            Err(OwnerError::Duplicate(_))
        ));
    }

    #[test]
    fn decode_refuses_junk() {
        let mut owners = Owners::NONE;
        owners
            .push(owner("xen", OwnerKind::Other, 4096, 4096))
            .expect("room");
        let mut raw = owners.encode();
        raw.count = U32::new(0);
        assert!(matches!(Owners::decode(&raw), Err(OwnerError::Count(0))));
        raw.count = U32::new(17);
        assert!(matches!(Owners::decode(&raw), Err(OwnerError::Count(17))));
        raw.count = U32::new(1);
        raw.entries[0].kind = U32::new(9);
        assert!(matches!(Owners::decode(&raw), Err(OwnerError::Kind(9))));
        raw.entries[0].kind = U32::new(3);
        raw.entries[0].name[5] = b'x';
        assert!(matches!(Owners::decode(&raw), Err(OwnerError::NamePadding)));
    }
}
