//! Making and removing maps through `/dev/mapper/control` (the
//! `devicemapper` crate), and their nodes when no udev makes them.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use devicemapper::{DM, DevId, DmError, DmFlags, DmName, DmOptions, DmUuid, errors};

use crate::backing::sysfs;
use crate::format::Uuid;

use super::table::{DevNum, LinearTable, MapName, dm_uuid};
use super::{LINEAR, MAPPER_DIR, MapError, UDEV_WAIT, UUID_PREFIX};

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
