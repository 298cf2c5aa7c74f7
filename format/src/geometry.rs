//! What a valid on-media layout is.
//!
//! The layout is fully determined by four recorded choices — the device size at
//! format time, the alignment, the reserve mode and the reserve size — so every
//! other offset recorded in the super block must equal the value these rules
//! derive. Checking equality (rather than "looks plausible") means a reader on
//! another OS needs exactly the rules in `docs/FORMAT.md`, and a super block
//! that passes its checksum but was written by a buggy writer is still refused.
//!
//! So the arithmetic exists once, in [`Geometry::derive`] and the `*_for`
//! helpers it uses: planning a new layout ([`crate::layout`]) derives, and
//! validating a recorded one derives from the recorded choices and compares.
//! Two copies of the rules could disagree; one cannot.
//!
//! ```text
//! | head 0..4K (never written) | primary 4K..8K | pad | reserve | data | pad | backup |
//!                                               ^reserve_offset  ^data_offset      ^last 4K block
//! ```

use core::fmt;

use crate::units::{PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, PUD_SIZE, SECTOR_SHIFT};

/// Bytes 0..4096 of the backing are never read for our metadata nor written.
pub const HEAD_SIZE: u64 = 4096;
/// Size of one super block copy.
pub const SUPERBLOCK_SIZE: u64 = 4096;
/// Byte offset of the primary copy.
pub const PRIMARY_OFFSET: u64 = HEAD_SIZE;
/// End of the primary copy: the reserve starts at the first alignment boundary
/// at or after this offset.
pub const METADATA_END: u64 = PRIMARY_OFFSET + SUPERBLOCK_SIZE;
/// Bytes of `struct page` per 4 KiB data page that `--mode os` must hold
/// (Linux's `map=dev` rule, `nd_pfn`).
pub const OS_BYTES_PER_PAGE: u64 = 64;

/// Alignment of the reserve and data areas. Linux supports 4 KiB, 2 MiB and 1 GiB
/// mapping granules for pmem, so those are the only values accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alignment {
    /// 4 KiB.
    K4,
    /// 2 MiB, the default: huge-page mappings of the data area stay possible.
    M2,
    /// 1 GiB.
    G1,
}

impl Alignment {
    /// Every accepted alignment, smallest first.
    pub const ALL: [Alignment; 3] = [Alignment::K4, Alignment::M2, Alignment::G1];

    /// The alignment when the user names none (the CLI, `volume`, `layout`
    /// all take it from here): 2 MiB keeps huge-page mappings of the data area
    /// possible without wasting more than a few MiB of a small namespace.
    pub const DEFAULT: Alignment = Alignment::M2;

    /// The alignment in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Alignment::K4 => PAGE_SIZE,
            Alignment::M2 => PMD_SIZE,
            Alignment::G1 => PUD_SIZE,
        }
    }

    /// The alignment whose size is `bytes`, if it is one of the accepted ones.
    pub fn from_bytes(bytes: u64) -> Option<Alignment> {
        Self::ALL.into_iter().find(|a| a.bytes() == bytes)
    }

    /// Round `value` up to this alignment; `None` on overflow.
    pub fn align_up(self, value: u64) -> Option<u64> {
        let mask = self.bytes() - 1;
        value.checked_add(mask).map(|v| v & !mask)
    }

    /// Round `value` down to this alignment.
    pub const fn align_down(self, value: u64) -> u64 {
        value & !(self.bytes() - 1)
    }

    /// Whether `value` is a multiple of this alignment.
    pub const fn is_aligned(self, value: u64) -> bool {
        value & (self.bytes() - 1) == 0
    }
}

impl fmt::Display for Alignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Alignment::K4 => "4K",
            Alignment::M2 => "2M",
            Alignment::G1 => "1G",
        })
    }
}

/// Who owns the reserved area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ReserveMode {
    /// No reserve: the data area follows the super block (pass-through).
    None,
    /// A hypervisor (Xen) keeps its frame table and M2P there.
    Hypervisor,
    /// The OS keeps its page array (`struct page`) there.
    Os,
}

impl ReserveMode {
    /// The value recorded on the media.
    pub const fn to_raw(self) -> u32 {
        match self {
            ReserveMode::None => 0,
            ReserveMode::Hypervisor => 1,
            ReserveMode::Os => 2,
        }
    }

    /// The mode recorded as `raw`, if known.
    pub const fn from_raw(raw: u32) -> Option<ReserveMode> {
        match raw {
            0 => Some(ReserveMode::None),
            1 => Some(ReserveMode::Hypervisor),
            2 => Some(ReserveMode::Os),
            _ => None,
        }
    }

    /// The name used on the command line and in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReserveMode::None => "none",
            ReserveMode::Hypervisor => "hypervisor",
            ReserveMode::Os => "os",
        }
    }
}

impl fmt::Display for ReserveMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Logical block size of the served device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogicalBlockSize {
    /// 512 bytes, the default (what `/dev/pmemN` itself reports).
    B512,
    /// 4096 bytes.
    B4096,
}

impl LogicalBlockSize {
    /// The block size when the user names none: 512, what `/dev/pmemN`
    /// itself reports, so a volume behaves like the namespace it sits on.
    pub const DEFAULT: LogicalBlockSize = LogicalBlockSize::B512;

    /// Size in bytes.
    pub const fn bytes(self) -> u32 {
        1 << self.shift()
    }

    /// log2 of the size, as ublk's `logical_bs_shift` wants it: a sector or a
    /// page.
    pub const fn shift(self) -> u8 {
        match self {
            LogicalBlockSize::B512 => SECTOR_SHIFT,
            LogicalBlockSize::B4096 => PAGE_SHIFT,
        }
    }

    /// The block size of `bytes`, if supported.
    pub const fn from_bytes(bytes: u32) -> Option<LogicalBlockSize> {
        if bytes == LogicalBlockSize::B512.bytes() {
            Some(LogicalBlockSize::B512)
        } else if bytes == LogicalBlockSize::B4096.bytes() {
            Some(LogicalBlockSize::B4096)
        } else {
            None
        }
    }
}

/// Byte offset of the backup copy on a backing of `device_size` bytes: the last
/// 4 KiB-aligned block. `None` when it would not lie after the primary copy.
pub fn backup_offset_for(device_size: u64) -> Option<u64> {
    let last_block_end = device_size & !(SUPERBLOCK_SIZE - 1);
    last_block_end
        .checked_sub(SUPERBLOCK_SIZE)
        .filter(|&off| off >= METADATA_END)
}

/// Offset of the reserve for an alignment: the first boundary at or after the
/// primary copy.
pub fn reserve_offset_for(align: Alignment) -> u64 {
    align
        .align_up(METADATA_END)
        .expect("invariant: 8 KiB rounded up to at most 1 GiB cannot overflow")
}

/// End of the data area on a backing of `device_size`: the last alignment
/// boundary at or before the backup copy (whatever the reserve). `None` when
/// the backing cannot hold the two copies.
pub fn data_end_for(device_size: u64, align: Alignment) -> Option<u64> {
    backup_offset_for(device_size).map(|backup| align.align_down(backup))
}

/// The data area `(data_offset, data_size)` the rules give for a reserve of
/// `reserve_size`: from the end of the reserve to [`data_end_for`]. `None`
/// when not even one aligned block would remain.
pub fn data_area_for(device_size: u64, align: Alignment, reserve_size: u64) -> Option<(u64, u64)> {
    let data_offset = reserve_offset_for(align).checked_add(reserve_size)?;
    let data_size = data_end_for(device_size, align)?
        .checked_sub(data_offset)
        .filter(|&size| size >= align.bytes())?;
    Some((data_offset, data_size))
}

/// Minimum reserve for `--mode os`: 64 bytes per 4 KiB page of the data area.
pub fn os_reserve_minimum(data_size: u64) -> u64 {
    (data_size / PAGE_SIZE).saturating_mul(OS_BYTES_PER_PAGE)
}

/// A complete layout as recorded in a super block.
///
/// The fields are private so that every `Geometry` outside this module obeys
/// the rules: the only ways to get one are [`Geometry::derive`] (from the
/// choices) and decoding a super block (which derives and compares).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Size of the backing when it was formatted.
    device_size: u64,
    /// Alignment of reserve and data area.
    align: Alignment,
    /// Logical block size of the served device.
    logical_block_size: LogicalBlockSize,
    /// Owner of the reserve.
    mode: ReserveMode,
    /// Byte offset of the reserve.
    reserve_offset: u64,
    /// Size of the reserve (a multiple of `align`; 0 in mode `none`).
    reserve_size: u64,
    /// Byte offset of the data area.
    data_offset: u64,
    /// Size of the data area, the size of the served block device.
    data_size: u64,
}

/// A geometry that breaks a layout rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error(
        "device size {device_size} leaves no room for two super blocks after the untouched first 4 KiB"
    )]
    DeviceTooSmall { device_size: u64 },
    #[error("reserve offset is {found}, but the layout rules put it at {expected}")]
    ReserveOffset { found: u64, expected: u64 },
    #[error("reserve size {reserve_size} is not a multiple of the alignment {align}")]
    ReserveSizeMisaligned { reserve_size: u64, align: Alignment },
    #[error("mode {mode} does not match reserve size {reserve_size}")]
    ModeMismatch {
        mode: ReserveMode,
        reserve_size: u64,
    },
    #[error("data offset is {found}, but the layout rules put it at {expected}")]
    DataOffset { found: u64, expected: u64 },
    #[error("data size is {found}, but the layout rules give {expected}")]
    DataSize { found: u64, expected: u64 },
    #[error("the data area would be smaller than one aligned block ({align})")]
    NoRoomForData { align: Alignment },
    #[error(
        "reserve {reserve_size} is smaller than the {minimum} bytes mode os needs (64 bytes per 4 KiB data page)"
    )]
    OsReserveTooSmall { reserve_size: u64, minimum: u64 },
}

impl Geometry {
    /// Size of the backing when it was formatted.
    pub fn device_size(&self) -> u64 {
        self.device_size
    }

    /// Alignment of reserve and data area.
    pub fn align(&self) -> Alignment {
        self.align
    }

    /// Logical block size of the served device.
    pub fn logical_block_size(&self) -> LogicalBlockSize {
        self.logical_block_size
    }

    /// Owner of the reserve.
    pub fn mode(&self) -> ReserveMode {
        self.mode
    }

    /// Byte offset of the reserve.
    pub fn reserve_offset(&self) -> u64 {
        self.reserve_offset
    }

    /// Size of the reserve (a multiple of the alignment; 0 in mode `none`).
    pub fn reserve_size(&self) -> u64 {
        self.reserve_size
    }

    /// Byte offset of the data area.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Size of the data area, the size of the served block device.
    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    /// Byte offset of the backup copy.
    pub fn backup_offset(&self) -> u64 {
        backup_offset_for(self.device_size)
            .expect("invariant: derive refuses a device too small for the backup")
    }

    /// Bytes of backing the volume occupies: up to the end of the backup
    /// copy. A backing smaller than this cannot serve the volume.
    pub fn required_size(&self) -> u64 {
        // The backup lies inside device_size, so this cannot overflow.
        self.backup_offset() + SUPERBLOCK_SIZE
    }

    /// First byte after the data area.
    pub fn data_end(&self) -> u64 {
        self.data_offset.saturating_add(self.data_size)
    }

    /// First byte after the reserve.
    pub fn reserve_end(&self) -> u64 {
        self.reserve_offset.saturating_add(self.reserve_size)
    }

    /// The layout the rules of `docs/FORMAT.md` give for these choices, or the
    /// first rule they break. The one place the layout arithmetic lives:
    /// planning a layout and validating a recorded one both come here.
    pub fn derive(
        device_size: u64,
        align: Alignment,
        logical_block_size: LogicalBlockSize,
        mode: ReserveMode,
        reserve_size: u64,
    ) -> Result<Geometry, GeometryError> {
        if backup_offset_for(device_size).is_none() {
            return Err(GeometryError::DeviceTooSmall { device_size });
        }
        if !align.is_aligned(reserve_size) {
            return Err(GeometryError::ReserveSizeMisaligned {
                reserve_size,
                align,
            });
        }
        if (mode == ReserveMode::None) != (reserve_size == 0) {
            return Err(GeometryError::ModeMismatch { mode, reserve_size });
        }
        let (data_offset, data_size) = data_area_for(device_size, align, reserve_size)
            .ok_or(GeometryError::NoRoomForData { align })?;
        if mode == ReserveMode::Os {
            let minimum = os_reserve_minimum(data_size);
            if reserve_size < minimum {
                return Err(GeometryError::OsReserveTooSmall {
                    reserve_size,
                    minimum,
                });
            }
        }
        Ok(Geometry {
            device_size,
            align,
            logical_block_size,
            mode,
            reserve_offset: reserve_offset_for(align),
            reserve_size,
            data_offset,
            data_size,
        })
    }

    /// This derived geometry, if the offsets a super block records are the
    /// ones it derives; otherwise the first that differs.
    pub(super) fn check_recorded(
        self,
        reserve_offset: u64,
        data_offset: u64,
        data_size: u64,
    ) -> Result<Geometry, GeometryError> {
        if reserve_offset != self.reserve_offset {
            return Err(GeometryError::ReserveOffset {
                found: reserve_offset,
                expected: self.reserve_offset,
            });
        }
        if data_offset != self.data_offset {
            return Err(GeometryError::DataOffset {
                found: data_offset,
                expected: self.data_offset,
            });
        }
        if data_size != self.data_size {
            return Err(GeometryError::DataSize {
                found: data_size,
                expected: self.data_size,
            });
        }
        Ok(self)
    }

    /// Check every layout rule of `docs/FORMAT.md`: derive the layout from the
    /// recorded choices, then compare each recorded offset with the derived
    /// one.
    pub fn validate(&self) -> Result<(), GeometryError> {
        Geometry::derive(
            self.device_size,
            self.align,
            self.logical_block_size,
            self.mode,
            self.reserve_size,
        )?
        .check_recorded(self.reserve_offset, self.data_offset, self.data_size)
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    #[test]
    fn backup_is_last_4k_block() {
        assert_eq!(backup_offset_for(2 * GIB), Some(2 * GIB - 4096));
        // A size that is not a multiple of 4 KiB: the partial tail is unused.
        assert_eq!(backup_offset_for(2 * GIB + 100), Some(2 * GIB - 4096));
        assert_eq!(backup_offset_for(12288), Some(8192));
        assert_eq!(backup_offset_for(12287), None);
        assert_eq!(backup_offset_for(0), None);
    }

    #[test]
    fn reserve_offset_rounds_past_primary() {
        assert_eq!(reserve_offset_for(Alignment::K4), 8192);
        assert_eq!(reserve_offset_for(Alignment::M2), 2 * MIB);
        assert_eq!(reserve_offset_for(Alignment::G1), GIB);
    }

    #[test]
    fn derive_two_gib_with_512m_reserve() {
        let g = Geometry::derive(
            2 * GIB,
            Alignment::M2,
            LogicalBlockSize::B512,
            ReserveMode::Hypervisor,
            512 * MIB,
        )
        .expect("valid");
        assert_eq!(g.reserve_offset, 2 * MIB);
        assert_eq!(g.data_offset, 514 * MIB);
        assert_eq!(g.data_end(), 2 * GIB - 2 * MIB);
        assert_eq!(g.data_size, 2 * GIB - 516 * MIB);
        assert_eq!(g.backup_offset(), 2 * GIB - 4096);
    }

    #[test]
    fn each_rule_has_its_error() {
        let good = Geometry::derive(
            64 * MIB,
            Alignment::M2,
            LogicalBlockSize::B512,
            ReserveMode::Os,
            4 * MIB,
        )
        .expect("valid");
        good.validate().expect("valid");

        let mut g = good;
        g.device_size = 8192;
        assert!(matches!(
            g.validate(),
            Err(GeometryError::DeviceTooSmall { .. })
        ));

        let mut g = good;
        g.reserve_offset += 4096;
        assert!(matches!(
            g.validate(),
            Err(GeometryError::ReserveOffset { .. })
        ));

        let mut g = good;
        g.reserve_size += 4096;
        assert!(matches!(
            g.validate(),
            Err(GeometryError::ReserveSizeMisaligned { .. })
        ));

        let mut g = good;
        g.mode = ReserveMode::None;
        assert!(matches!(
            g.validate(),
            Err(GeometryError::ModeMismatch { .. })
        ));

        let mut g = good;
        g.data_offset += 2 * MIB;
        assert!(matches!(
            g.validate(),
            Err(GeometryError::DataOffset { .. })
        ));

        let mut g = good;
        g.data_size -= 2 * MIB;
        assert!(matches!(g.validate(), Err(GeometryError::DataSize { .. })));

        let mut g = good;
        g.reserve_size = 0;
        g.mode = ReserveMode::None;
        g.data_offset = g.reserve_offset;
        g.data_size += 4 * MIB;
        g.validate().expect("pass-through is valid");

        let tight = Geometry::derive(
            8 * MIB,
            Alignment::M2,
            LogicalBlockSize::B512,
            ReserveMode::None,
            0,
        );
        // 8 MiB: reserve at 2M, backup at 8M-4K, data ends at 6M: 4 MiB of data.
        assert_eq!(tight.expect("valid").data_size, 4 * MIB);
        assert!(matches!(
            Geometry::derive(
                8 * MIB,
                Alignment::M2,
                LogicalBlockSize::B512,
                ReserveMode::Hypervisor,
                4 * MIB
            ),
            Err(GeometryError::NoRoomForData { .. })
        ));
    }

    #[test]
    fn os_mode_needs_64_bytes_per_page() {
        // 1 GiB of data = 262144 pages * 64 B = 16 MiB.
        assert_eq!(os_reserve_minimum(GIB), 16 * MIB);
        let err = Geometry::derive(
            GIB + 8 * MIB,
            Alignment::M2,
            LogicalBlockSize::B512,
            ReserveMode::Os,
            2 * MIB,
        )
        .expect_err("too small");
        assert!(matches!(err, GeometryError::OsReserveTooSmall { .. }));
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(Alignment::from_bytes(2 * MIB), Some(Alignment::M2));
        assert_eq!(Alignment::from_bytes(MIB), None);
        assert_eq!(Alignment::M2.align_up(1), Some(2 * MIB));
        assert_eq!(Alignment::M2.align_up(u64::MAX), None);
        assert_eq!(Alignment::G1.align_down(GIB + 5), GIB);
        assert_eq!(Alignment::K4.to_string(), "4K");
        for mode in [ReserveMode::None, ReserveMode::Hypervisor, ReserveMode::Os] {
            assert_eq!(ReserveMode::from_raw(mode.to_raw()), Some(mode));
        }
        assert_eq!(ReserveMode::from_raw(3), None);
        assert_eq!(
            LogicalBlockSize::from_bytes(4096).map(|b| b.shift()),
            Some(12)
        );
    }
}
