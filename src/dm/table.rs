//! What a map is, worked out without the kernel: the linear table over a
//! data area, map names, the dm UUID that marks a map as pmem-stack's, and
//! device numbers.

use std::path::{Path, PathBuf};

use crate::format::{Geometry, Uuid};
use crate::units::SECTOR_SIZE;

use super::{LINEAR, MAPPER_DIR, MapError, NAME_MAX, NAME_PREFIX, UUID_PREFIX};

/// A block device's major and minor number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    /// From a `dev_t`.
    pub fn of(rdev: u64) -> DevNum {
        DevNum {
            major: libc::major(rdev),
            minor: libc::minor(rdev),
        }
    }

    /// `M:m`, as sysfs's `dev` attribute writes it.
    pub fn parse(text: &str) -> Option<DevNum> {
        let (major, minor) = text.trim().split_once(':')?;
        Some(DevNum {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }

    /// As a `dev_t`.
    pub fn rdev(self) -> u64 {
        libc::makedev(self.major, self.minor)
    }
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// The one linear target that maps a data area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearTable {
    /// The backing block device.
    pub backing: DevNum,
    /// Where the data area starts on it, in 512-byte sectors.
    pub start_sector: u64,
    /// Its length in sectors: the map's size.
    pub sectors: u64,
}

impl LinearTable {
    /// The table for the data area of `geometry` on `backing`.
    pub fn for_volume(geometry: &Geometry, backing: DevNum) -> Result<LinearTable, MapError> {
        LinearTable::for_area(geometry.data_offset(), geometry.data_size(), backing)
    }

    /// The table for `size` bytes at `offset` of `backing`: both whole
    /// sectors, the length not zero, the end representable.
    pub fn for_area(offset: u64, size: u64, backing: DevNum) -> Result<LinearTable, MapError> {
        if !offset.is_multiple_of(SECTOR_SIZE) {
            return Err(MapError::Table("its offset is not a multiple of 512 bytes"));
        }
        if !size.is_multiple_of(SECTOR_SIZE) {
            return Err(MapError::Table("its size is not a multiple of 512 bytes"));
        }
        if size == 0 {
            return Err(MapError::Table("it is empty"));
        }
        if offset.checked_add(size).is_none() {
            return Err(MapError::Table("it ends beyond 2^64 bytes"));
        }
        Ok(LinearTable {
            backing,
            start_sector: offset / SECTOR_SIZE,
            sectors: size / SECTOR_SIZE,
        })
    }

    /// The target's parameters: `M:m START`.
    pub fn params(&self) -> String {
        format!("{} {}", self.backing, self.start_sector)
    }

    /// The table line, as `dmsetup table` shows it.
    pub fn line(&self) -> String {
        format!("0 {} {LINEAR} {}", self.sectors, self.params())
    }

    /// The table as the kernel reports it back, when it is one linear target
    /// that starts at sector 0.
    pub fn parse(targets: &[(u64, u64, String, String)]) -> Option<LinearTable> {
        let [(0, sectors, target, params)] = targets else {
            return None;
        };
        if target != LINEAR {
            return None;
        }
        let (device, start) = params.trim().split_once(' ')?;
        Some(LinearTable {
            backing: DevNum::parse(device)?,
            start_sector: start.trim().parse().ok()?,
            sectors: *sectors,
        })
    }

    /// Byte offset of the mapped area on the backing.
    pub fn offset(&self) -> Option<u64> {
        self.start_sector.checked_mul(SECTOR_SIZE)
    }

    /// Size in bytes.
    pub fn size(&self) -> Option<u64> {
        self.sectors.checked_mul(SECTOR_SIZE)
    }
}

/// A valid map name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapName(String);

impl MapName {
    /// `text` as a map name: 1 to 127 of the characters udev keeps in
    /// `/dev/mapper` names as they are (letters, digits, `#+-.:=@_`), and
    /// neither `.` nor `..`.
    pub fn parse(text: &str) -> Result<MapName, MapError> {
        let bad = |why| MapError::BadName {
            name: text.to_string(),
            why,
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if text.len() > NAME_MAX {
            return Err(bad("it is longer than 127 bytes"));
        }
        if text == "." || text == ".." {
            return Err(bad("it names a directory"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"#+-.:=@_".contains(&b))
        {
            return Err(bad(
                "only letters, digits and the characters # + - . : = @ _ are allowed",
            ));
        }
        Ok(MapName(text.to_string()))
    }

    /// The default name of a map of `volume`.
    pub fn for_volume(volume: &Uuid) -> MapName {
        MapName(format!("{NAME_PREFIX}{volume}"))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `/dev/mapper/NAME`.
    pub fn node(&self) -> PathBuf {
        Path::new(MAPPER_DIR).join(&self.0)
    }
}

/// The dm UUID of a map of `volume` on `backing`.
pub fn dm_uuid(volume: &Uuid, backing: DevNum) -> String {
    format!("{UUID_PREFIX}{volume}-{backing}")
}

/// The volume a pmem-stack dm UUID names; `None` for other dm devices.
pub fn volume_of(dm_uuid: &str) -> Option<Uuid> {
    let rest = dm_uuid.strip_prefix(UUID_PREFIX)?;
    Uuid::parse(rest.get(..36)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PMEM0: DevNum = DevNum {
        major: 259,
        minor: 0,
    };

    #[test]
    fn the_table_covers_exactly_the_data_area() {
        let t = LinearTable::for_area(64 << 20, 1 << 30, PMEM0).expect("table");
        assert_eq!(t.start_sector, 131_072);
        assert_eq!(t.sectors, 2_097_152);
        assert_eq!(t.line(), "0 2097152 linear 259:0 131072");
        assert_eq!(t.offset(), Some(64 << 20));
        assert_eq!(t.size(), Some(1 << 30));
    }

    #[test]
    fn the_table_of_a_real_layout() {
        let request = crate::layout::LayoutRequest {
            reserve: crate::layout::ReserveRequest::Bytes(512 << 20),
            mode: None,
            align: crate::format::Alignment::M2,
            logical_block_size: crate::format::LogicalBlockSize::B512,
        };
        let plan = crate::layout::plan(2 << 30, &request).expect("plan");
        let g = plan.geometry;
        let t = LinearTable::for_volume(&g, PMEM0).expect("table");
        assert_eq!(t.offset(), Some(g.data_offset()));
        assert_eq!(t.size(), Some(g.data_size()));
        // Never the reserve, never the backup copy.
        assert!(g.data_offset() >= g.reserve_offset() + g.reserve_size());
        assert!(g.data_offset() + g.data_size() <= g.device_size() - 4096);
    }

    #[test]
    fn a_table_that_cannot_be_built_says_why() {
        for (offset, size, why) in [
            (100, 4096, "offset"),
            (4096, 100, "size"),
            (4096, 0, "empty"),
            (u64::MAX - 511, 1024, "2^64"),
        ] {
            let err = LinearTable::for_area(offset, size, PMEM0).expect_err("bad");
            assert!(err.to_string().contains(why), "{err}");
        }
    }

    #[test]
    fn tables_read_back() {
        let t = LinearTable::for_area(2 << 20, 8 << 20, PMEM0).expect("table");
        let kernel = vec![(0, t.sectors, "linear".to_string(), t.params())];
        assert_eq!(LinearTable::parse(&kernel), Some(t));
        let two = vec![kernel[0].clone(), kernel[0].clone()];
        assert_eq!(LinearTable::parse(&two), None);
        let striped = vec![(0, 8, "striped".to_string(), "259:0 0".to_string())];
        assert_eq!(LinearTable::parse(&striped), None);
        let shifted = vec![(8, 8, "linear".to_string(), "259:0 0".to_string())];
        assert_eq!(LinearTable::parse(&shifted), None);
        assert_eq!(LinearTable::parse(&[]), None);
    }

    #[test]
    fn names() {
        let uuid = Uuid::parse("0f2d4c1e-9a3b-4c5d-8e7f-102132435465").expect("uuid");
        let name = MapName::for_volume(&uuid);
        assert_eq!(
            name.as_str(),
            "pmem-stack-0f2d4c1e-9a3b-4c5d-8e7f-102132435465"
        );
        assert_eq!(MapName::parse(name.as_str()).ok(), Some(name.clone()));
        assert_eq!(
            name.node(),
            Path::new("/dev/mapper/pmem-stack-0f2d4c1e-9a3b-4c5d-8e7f-102132435465")
        );
        assert!(MapName::parse("fast_pmem-1.0@a:b=c#d+e").is_ok());
        for (bad, why) in [
            ("", "empty"),
            (".", "directory"),
            ("..", "directory"),
            ("a/b", "only letters"),
            ("a b", "only letters"),
            ("é", "only letters"),
        ] {
            let err = MapName::parse(bad).expect_err("bad");
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
        assert!(MapName::parse(&"x".repeat(127)).is_ok());
        assert!(
            MapName::parse(&"x".repeat(128))
                .expect_err("long")
                .to_string()
                .contains("127")
        );
    }

    #[test]
    fn dm_uuids_name_the_volume() {
        let uuid = Uuid::parse("0f2d4c1e-9a3b-4c5d-8e7f-102132435465").expect("uuid");
        let text = dm_uuid(&uuid, PMEM0);
        assert_eq!(
            text,
            "PMEM-STACK-0f2d4c1e-9a3b-4c5d-8e7f-102132435465-259:0"
        );
        assert_eq!(volume_of(&text), Some(uuid));
        assert_eq!(volume_of("LVM-abc"), None);
        assert_eq!(volume_of("PMEM-STACK-short"), None);
    }

    #[test]
    fn dev_numbers() {
        assert_eq!(
            DevNum::parse("253:7\n"),
            Some(DevNum {
                major: 253,
                minor: 7
            })
        );
        assert_eq!(DevNum::parse("253"), None);
        assert_eq!(DevNum::of(PMEM0.rdev()), PMEM0);
    }
}
