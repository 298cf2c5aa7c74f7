//! Which pmem-stack maps the kernel has, read from sysfs (no privilege
//! needed): a map is pmem-stack's by its dm UUID, whatever its name.

use std::fs;
use std::path::{Path, PathBuf};

use crate::backing::{Backing, BackingKind, Identity};
use crate::format::Uuid;
use crate::units::SECTOR_SIZE;

use super::table::{DevNum, volume_of};
use super::{MAPPER_DIR, MapError, UUID_PREFIX};

/// The backing's device number, when it can be mapped: a block device.
/// devdax and image files have no block interface for dm to stack on.
pub fn check_mappable(backing: &Backing) -> Result<DevNum, MapError> {
    let refuse = |what| MapError::NotBlockDevice {
        path: backing.path().to_path_buf(),
        what,
    };
    match (backing.kind(), backing.identity()) {
        (BackingKind::Block, Identity::Device { rdev }) => Ok(DevNum::of(rdev)),
        (BackingKind::Dax, _) => Err(refuse("a devdax device (it has no block interface)")),
        (BackingKind::File, _) | (BackingKind::Block, Identity::File { .. }) => {
            Err(refuse("an image file"))
        }
    }
}

/// A pmem-stack map the kernel has, as sysfs describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Map {
    /// Its dm name (`/dev/mapper/NAME`).
    pub name: String,
    /// The kernel's name of the device, `dm-N`.
    pub kernel_name: String,
    /// Its device number.
    pub dev: DevNum,
    /// The volume it maps (from its dm UUID).
    pub volume: Option<Uuid>,
    /// The device below it (`slaves/`): the backing.
    pub backing: Option<DevNum>,
    /// The backing's kernel name (`pmem0`).
    pub backing_name: Option<String>,
    /// Whether the device is DAX-capable (`queue/dax`).
    pub dax: bool,
    /// Whether it is suspended (I/O waits).
    pub suspended: bool,
    /// Its size in bytes.
    pub size: Option<u64>,
}

impl Map {
    /// `/dev/mapper/NAME`.
    pub fn node(&self) -> PathBuf {
        Path::new(MAPPER_DIR).join(&self.name)
    }

    /// The backing's device node, `/dev/<kernel name>`.
    pub fn backing_node(&self) -> Option<PathBuf> {
        self.backing_name
            .as_ref()
            .map(|n| Path::new("/dev").join(n))
    }

    /// The map described by `dir` (`/sys/block/dm-N`), if it is pmem-stack's.
    fn from_sysfs(dir: &Path) -> Option<Map> {
        let read = |rel: &str| fs::read_to_string(dir.join(rel)).ok();
        let uuid = read("dm/uuid")?;
        let uuid = uuid.trim();
        if !uuid.starts_with(UUID_PREFIX) {
            return None;
        }
        let slaves: Vec<String> = fs::read_dir(dir.join("slaves"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let backing_name = match slaves.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        let backing = backing_name
            .as_ref()
            .and_then(|n| fs::read_to_string(dir.join("slaves").join(n).join("dev")).ok())
            .and_then(|t| DevNum::parse(&t));
        Some(Map {
            name: read("dm/name")?.trim().to_string(),
            kernel_name: dir.file_name()?.to_str()?.to_string(),
            dev: DevNum::parse(&read("dev")?)?,
            volume: volume_of(uuid),
            backing,
            backing_name,
            dax: read("queue/dax").is_some_and(|t| t.trim() == "1"),
            suspended: read("dm/suspended").is_some_and(|t| t.trim() == "1"),
            size: read("size")
                .and_then(|t| t.trim().parse::<u64>().ok())
                .and_then(|s| s.checked_mul(SECTOR_SIZE)),
        })
    }
}

/// Every pmem-stack map, found in `sys_block` (`/sys/block`), by name.
pub fn maps_in(sys_block: &Path) -> Vec<Map> {
    let mut maps: Vec<Map> = fs::read_dir(sys_block)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("dm-"))
        .filter_map(|e| Map::from_sysfs(&e.path()))
        .collect();
    maps.sort_by(|a, b| a.name.cmp(&b.name));
    maps
}

/// Every pmem-stack map the kernel has.
pub fn maps() -> Vec<Map> {
    maps_in(Path::new("/sys/block"))
}

/// The pmem-stack map whose backing is `backing`, if any.
pub fn map_of(backing: DevNum) -> Option<Map> {
    maps().into_iter().find(|m| m.backing == Some(backing))
}

/// The pmem-stack map that is the device `dev` itself, if any.
pub fn map_at(dev: DevNum) -> Option<Map> {
    maps().into_iter().find(|m| m.dev == dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PMEM0: DevNum = DevNum {
        major: 259,
        minor: 0,
    };

    fn fake_dm(sys: &Path, kernel: &str, name: &str, uuid: &str, dax: &str) {
        let dir = sys.join(kernel);
        fs::create_dir_all(dir.join("dm")).expect("mkdir");
        fs::create_dir_all(dir.join("queue")).expect("mkdir");
        fs::create_dir_all(dir.join("slaves/pmem0")).expect("mkdir");
        fs::write(dir.join("slaves/pmem0/dev"), "259:0\n").expect("write");
        fs::write(dir.join("dm/name"), format!("{name}\n")).expect("write");
        fs::write(dir.join("dm/uuid"), format!("{uuid}\n")).expect("write");
        fs::write(dir.join("dm/suspended"), "0\n").expect("write");
        fs::write(dir.join("queue/dax"), format!("{dax}\n")).expect("write");
        fs::write(dir.join("dev"), format!("253:{}\n", &kernel[3..])).expect("write");
        fs::write(dir.join("size"), "2048\n").expect("write");
    }

    #[test]
    fn only_pmem_stack_maps_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = "PMEM-STACK-0f2d4c1e-9a3b-4c5d-8e7f-102132435465-259:0";
        fake_dm(dir.path(), "dm-0", "mine", ours, "1");
        fake_dm(dir.path(), "dm-1", "vg-lv", "LVM-xyz", "0");
        fs::create_dir_all(dir.path().join("pmem0")).expect("mkdir");
        let maps = maps_in(dir.path());
        assert_eq!(maps.len(), 1, "{maps:?}");
        let m = &maps[0];
        assert_eq!(m.name, "mine");
        assert_eq!(m.kernel_name, "dm-0");
        assert_eq!(
            m.dev,
            DevNum {
                major: 253,
                minor: 0
            }
        );
        assert_eq!(m.backing, Some(PMEM0));
        assert_eq!(m.backing_node(), Some(PathBuf::from("/dev/pmem0")));
        assert!(m.dax);
        assert!(!m.suspended);
        assert_eq!(m.size, Some(1 << 20));
        assert_eq!(m.volume, volume_of(ours));
        assert_eq!(m.node(), Path::new("/dev/mapper/mine"));
    }
}
