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
//! The rooms: [`table`] (what a map is: the linear table, names, dm
//! UUIDs, device numbers — pure), [`discovery`] (which maps the kernel has,
//! from sysfs) and [`device`] (making and removing them through
//! `/dev/mapper/control`).
//!
//! Discovery reads sysfs (`/sys/block/dm-N/dm/{name,uuid}`, `slaves/`,
//! `queue/dax`), which needs no privilege; creating, removing and reading a
//! table go through `/dev/mapper/control` with the `devicemapper` crate.
//! Without udev nobody creates `/dev/mapper/NAME`, so [`Mapper::create`]
//! makes the node itself (and [`Mapper::remove`] deletes a node left behind).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::remedy::{HasRemedy, Remedy};

mod device;
mod discovery;
mod table;

pub use device::Mapper;
pub use discovery::{Map, check_mappable, map_at, map_of, maps, maps_in};
pub use table::{DevNum, LinearTable, MapName, dm_uuid, volume_of};

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
