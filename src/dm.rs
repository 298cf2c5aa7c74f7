//! The second way to serve a data area: a device-mapper linear device.
//!
//! The kernel maps `/dev/mapper/NAME` onto exactly the data area of the
//! backing — `0 <data_size/512> linear <major:minor> <data_offset/512>` — so
//! I/O never leaves the kernel, and over an fsdax namespace the device is
//! DAX-capable (`mount -o dax=always`). The head, the super blocks and the
//! reserve are outside the table.
//!
//! Nothing is recorded on the media besides pmem-stack's own super block.
//! The dm device carries the UUID `PMEM-STACK-<volume uuid>-<major>:<minor>`;
//! that is how `list`, `info`, `unmap` and the exclusivity checks know a map
//! as pmem-stack's, whatever its name. It lives in the kernel, as the map
//! does, so nothing is lost with `/run`.
//!
//! Discovery reads sysfs (`/sys/block/dm-N/dm/{name,uuid}`, `slaves/`,
//! `queue/dax`), which needs no privilege; creating, removing and reading a
//! table go through `/dev/mapper/control` with the `devicemapper` crate.
//! Without udev nobody creates `/dev/mapper/NAME`, so [`Mapper::create`]
//! makes the node itself (and [`Mapper::remove`] deletes a node left behind).

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use devicemapper::{DM, DevId, DmError, DmFlags, DmName, DmOptions, DmUuid, errors};

use crate::backing::{Backing, BackingKind, Identity, sysfs};
use crate::format::{Geometry, Uuid};
use crate::remedy::{HasRemedy, Remedy};
use crate::units::SECTOR_SIZE;

/// Default map names start with this: `pmem-stack-<volume uuid>`.
pub const NAME_PREFIX: &str = "pmem-stack-";
/// Every pmem-stack map's dm UUID starts with this.
pub const UUID_PREFIX: &str = "PMEM-STACK-";
/// Where the device nodes of maps live.
pub const MAPPER_DIR: &str = "/dev/mapper";
/// The kernel's limit on a dm name (`DM_NAME_LEN` less its terminator).
const NAME_MAX: usize = 127;
/// The dm target that serves a data area.
const LINEAR: &str = "linear";
/// How long to wait for udev to make a node before making it here.
const UDEV_WAIT: Duration = Duration::from_secs(2);

/// Why a map cannot be made, found or removed.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error(
        "{}: is {what}; a device-mapper map needs a block device such as /dev/pmemN",
        .path.display()
    )]
    NotBlockDevice { path: PathBuf, what: &'static str },
    #[error("'{name}' is not a usable map name: {why}")]
    BadName { name: String, why: &'static str },
    #[error(
        "device-mapper is not available ({MAPPER_DIR}/control: {reason}); load it with 'modprobe dm-mod'"
    )]
    Unavailable { reason: String },
    #[error("a device-mapper device named {0} exists already")]
    NameTaken(String),
    #[error("there is no map {0} ('pmem-stack list' shows the maps)")]
    NoSuchMap(String),
    #[error(
        "{MAPPER_DIR}/{0} is not a pmem-stack map (its dm uuid does not start with {UUID_PREFIX}); remove it with the tool that made it"
    )]
    NotOurs(String),
    #[error("{MAPPER_DIR}/{name} is in use ({holder}); unmount or close it first")]
    InUse { name: String, holder: String },
    #[error("{}: is not mapped ('pmem-stack list' shows the maps)", .0.display())]
    NotMapped(PathBuf),
    #[error("the data area cannot be mapped: {0}")]
    Table(&'static str),
    #[error("device-mapper {op} of {name} failed: {reason}")]
    Kernel {
        op: &'static str,
        name: String,
        reason: String,
    },
    #[error("{}: {op} failed", .path.display())]
    Node {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl HasRemedy for MapError {
    fn remedy(&self) -> Option<Remedy> {
        match self {
            MapError::NotBlockDevice { .. } => Some(Remedy::ServeWithUblk),
            MapError::NameTaken(_) => Some(Remedy::OtherMapName),
            _ => None,
        }
    }
}

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

/// The errno of a failed dm ioctl.
fn errno(err: &DmError) -> Option<nix::errno::Errno> {
    match err {
        DmError::Core(errors::Error::Ioctl(_, _, _, errno)) => Some(**errno),
        _ => None,
    }
}

/// A dm error in one line: the errno's words where there is one (the
/// crate's own text carries whole ioctl headers).
fn reason(err: &DmError) -> String {
    match errno(err) {
        Some(e) => io::Error::from_raw_os_error(e as i32).to_string(),
        None => err.to_string(),
    }
}

/// The kernel's device-mapper, through `/dev/mapper/control`.
pub struct Mapper {
    dm: DM,
}

impl std::fmt::Debug for Mapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mapper(/dev/mapper/control)")
    }
}

impl Mapper {
    /// Open the control device (root only).
    pub fn open() -> Result<Mapper, MapError> {
        if !Path::new(MAPPER_DIR).join("control").exists() {
            return Err(MapError::Unavailable {
                reason: "no such device".to_string(),
            });
        }
        DM::new()
            .map(|dm| Mapper { dm })
            .map_err(|err| MapError::Unavailable {
                reason: reason(&err),
            })
    }

    fn dm_name(name: &str) -> Result<&DmName, MapError> {
        DmName::new(name).map_err(|_| MapError::BadName {
            name: name.to_string(),
            why: "device-mapper does not accept it",
        })
    }

    /// Whether a dm device (of anyone's) is called `name`.
    pub fn exists(&self, name: &MapName) -> Result<bool, MapError> {
        let dm_name = Mapper::dm_name(name.as_str())?;
        match self.dm.device_info(&DevId::Name(dm_name)) {
            Ok(_) => Ok(true),
            Err(err) if errno(&err) == Some(nix::errno::Errno::ENXIO) => Ok(false),
            Err(err) => Err(self.kernel("lookup", name.as_str(), &err)),
        }
    }

    fn kernel(&self, op: &'static str, name: &str, err: &DmError) -> MapError {
        MapError::Kernel {
            op,
            name: name.to_string(),
            reason: reason(err),
        }
    }

    /// Create the map `name` of `volume` with `table`, live, with its node
    /// in `/dev/mapper`. On any failure nothing is left behind.
    pub fn create(
        &self,
        name: &MapName,
        volume: &Uuid,
        table: &LinearTable,
    ) -> Result<PathBuf, MapError> {
        let dm_name = Mapper::dm_name(name.as_str())?;
        let uuid_text = dm_uuid(volume, table.backing);
        let uuid =
            DmUuid::new(&uuid_text).map_err(|_| MapError::Table("its dm uuid is invalid"))?;
        let id = DevId::Name(dm_name);
        let info = self
            .dm
            .device_create(dm_name, Some(uuid), DmOptions::default())
            .map_err(|err| match errno(&err) {
                Some(nix::errno::Errno::EBUSY) => MapError::NameTaken(name.as_str().to_string()),
                _ => self.kernel("create", name.as_str(), &err),
            })?;
        let dev = DevNum {
            major: info.device().major,
            minor: info.device().minor,
        };
        let target = (0, table.sectors, LINEAR.to_string(), table.params());
        let live = self
            .dm
            .table_load(&id, &[target], DmOptions::default())
            .map_err(|err| self.kernel("table load", name.as_str(), &err))
            // A resume: a suspend without DM_SUSPEND.
            .and_then(|_| {
                self.dm
                    .device_suspend(&id, DmOptions::default())
                    .map_err(|err| self.kernel("resume", name.as_str(), &err))
            })
            .and_then(|_| ensure_node(&name.node(), dev));
        if let Err(err) = live {
            if let Err(cleanup) = self.dm.device_remove(&id, DmOptions::default()) {
                log::warn!(
                    "removing the half-made map {}: {}",
                    name.as_str(),
                    reason(&cleanup)
                );
            }
            remove_node(&name.node(), dev);
            return Err(err);
        }
        Ok(name.node())
    }

    /// The table of the dm device `name`, when it is one linear target.
    pub fn table(&self, name: &str) -> Option<LinearTable> {
        let dm_name = DmName::new(name).ok()?;
        let options = DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE);
        let (_, targets) = self.dm.table_status(&DevId::Name(dm_name), options).ok()?;
        LinearTable::parse(&targets)
    }

    /// Remove the pmem-stack map `name`: refused while anything holds it
    /// open (a mount, a program, a stacked device).
    pub fn remove(&self, name: &str) -> Result<(), MapError> {
        let dm_name = Mapper::dm_name(name)?;
        let id = DevId::Name(dm_name);
        let info = self.dm.device_info(&id).map_err(|err| {
            if errno(&err) == Some(nix::errno::Errno::ENXIO) {
                MapError::NoSuchMap(name.to_string())
            } else {
                self.kernel("lookup", name, &err)
            }
        })?;
        if !info
            .uuid()
            .is_some_and(|u| u.to_string().starts_with(UUID_PREFIX))
        {
            return Err(MapError::NotOurs(name.to_string()));
        }
        let dev = DevNum {
            major: info.device().major,
            minor: info.device().minor,
        };
        let in_use = || MapError::InUse {
            name: name.to_string(),
            holder: sysfs::block_holder(dev.major, dev.minor)
                .unwrap_or_else(|| "open by a program".to_string()),
        };
        if info.open_count() > 0 {
            return Err(in_use());
        }
        self.dm
            .device_remove(&id, DmOptions::default())
            .map_err(|err| match errno(&err) {
                Some(nix::errno::Errno::EBUSY) => in_use(),
                _ => self.kernel("remove", name, &err),
            })?;
        remove_node(&Path::new(MAPPER_DIR).join(name), dev);
        Ok(())
    }
}

/// Whether udev runs here (then it makes and removes `/dev/mapper` nodes).
fn udev_running() -> bool {
    Path::new("/run/udev/control").exists()
}

/// Whether `path` is (or leads to) the block device `dev`.
fn is_node_of(path: &Path, dev: DevNum) -> bool {
    fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device() && m.rdev() == dev.rdev())
}

/// Make sure `path` is a block device node of `dev`: udev's link when udev
/// made one (waited for briefly), else a node made here, `0600`. A stale
/// node or link in the way (of an earlier device) is replaced; anything else
/// there is an error.
fn ensure_node(path: &Path, dev: DevNum) -> Result<(), MapError> {
    let node_error = |op| {
        move |source| MapError::Node {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    if udev_running() {
        let start = Instant::now();
        while !is_node_of(path, dev) && start.elapsed() < UDEV_WAIT {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if is_node_of(path, dev) {
        return Ok(());
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        let kind = meta.file_type();
        if !(kind.is_symlink() || kind.is_block_device()) {
            return Err(node_error("replacing what is there")(io::Error::from(
                io::ErrorKind::AlreadyExists,
            )));
        }
        fs::remove_file(path).map_err(node_error("removing a stale node"))?;
    }
    fs::create_dir_all(MAPPER_DIR).map_err(node_error("creating its directory"))?;
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        dev.rdev(),
    )
    .map_err(|e| node_error("mknod")(e.into()))
}

/// Remove the node of a removed map, if one is left (udev removes its own):
/// only a block device node of `dev`, or a link that leads nowhere now.
fn remove_node(path: &Path, dev: DevNum) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    let kind = meta.file_type();
    let ours = (kind.is_block_device() && meta.rdev() == dev.rdev())
        || (kind.is_symlink() && fs::metadata(path).is_err());
    if ours && let Err(err) = fs::remove_file(path) {
        log::warn!("removing {}: {err}", path.display());
    }
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
