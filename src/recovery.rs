//! Re-attaching a server to a device whose server died: every rule checked
//! before anything starts, and what the new server is to serve.
//!
//! `recover` (and the unit's `serve`, and a supervised successor after a
//! hand-over) must never serve other data than the device served before:
//! the kernel has the device, its block device may be mounted, and requests
//! wait in its queues. So the rules are the library's, each refusal typed:
//! the device exists and pmem-stack recorded it; no server of it runs; the
//! backing is the same file or device (identity), holds the same volume
//! (uuid, data offset) and a data area at least as large — one that grew
//! while the device waited (`grow` of a served backing) is served whole once
//! live, which needs a kernel that can resize a live device.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backing::{Access, Backing, BackingError};
use crate::daemon;
use crate::format::Uuid;
use crate::metadata::{self, MetadataError};
use crate::registry::{DeviceLock, Registry};
use crate::remedy::{HasRemedy, Remedy};
use crate::retry;
use crate::server::{ServeSpec, Volume};
use crate::ublk::control::{self, Attach, QueueConfig, ServeError};
use crate::ublk::features::{Features, IoPath};

/// How long a recovery lets the kernel release a departed server's hold on
/// the backing (io_uring rings are torn down asynchronously).
pub const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// How long a recovery waits for another command holding the device (a
/// `grow` writing the grown volume takes well under a second).
pub const DEVICE_LOCK_WAIT: Duration = Duration::from_secs(60);

/// Why a device cannot be recovered; nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Driver(ServeError),
    #[error("it does not exist ('pmem-stack list' shows the devices)")]
    NoDevice,
    #[error(
        "no pmem-stack record of /dev/ublkb{id} in {}: recover only re-attaches devices pmem-stack served",
        .dir.display()
    )]
    NoRecord { id: u32, dir: PathBuf },
    #[error(transparent)]
    Registry(std::io::Error),
    #[error("/dev/ublkb{id}: its server (pid {pid}) is running; there is nothing to recover")]
    Running { id: u32, pid: i32 },
    #[error(transparent)]
    Device(ServeError),
    #[error(transparent)]
    Backing(BackingError),
    #[error("{} is no longer the backing it served ({identity})", .path.display())]
    OtherBacking { path: PathBuf, identity: String },
    #[error(transparent)]
    Metadata(MetadataError),
    #[error(
        "{} now holds volume {now} (served: {served}); refusing to serve different data",
        .path.display()
    )]
    OtherVolume {
        path: PathBuf,
        now: Uuid,
        served: Uuid,
    },
    #[error(
        "the data area of {} shrank from {served} to {now} bytes since it was served; refusing to cut the device short",
        .path.display()
    )]
    Shrank {
        path: PathBuf,
        served: u64,
        now: u64,
    },
    #[error(
        "the data area of {} grew since it was served and this kernel cannot resize a live device (UBLK_F_UPDATE_SIZE needs Linux 6.16+); 'pmem-stack del {id}', then 'pmem-stack add {}'",
        .path.display(),
        .path.display()
    )]
    CannotResize { id: u32, path: PathBuf },
}

impl HasRemedy for RecoverError {
    fn remedy(&self) -> Option<Remedy> {
        match self {
            RecoverError::Driver(err) | RecoverError::Device(err) => err.remedy(),
            RecoverError::Metadata(err) => err.remedy(),
            _ => None,
        }
    }
}

impl RecoverError {
    /// Whether the message names the device itself (it is not "cannot
    /// recover": there is nothing to recover).
    pub fn names_the_device(&self) -> bool {
        matches!(self, RecoverError::Running { .. })
    }
}

/// A checked recovery: what to serve, and the device lock, held until the
/// server is about to start (a `grow` must not change the volume between
/// the checks and the attach).
#[derive(Debug)]
pub struct Recovery {
    /// What the new server serves.
    pub spec: ServeSpec,
    /// Held while the checks stand; drop it before the server forks.
    pub lock: DeviceLock,
}

/// Check every rule for re-attaching a server to `/dev/ublkb{id}` and build
/// what it serves; nothing is started or written.
pub fn plan(id: u32, registry: &Registry) -> Result<Recovery, RecoverError> {
    control::check_driver().map_err(RecoverError::Driver)?;
    if !control::device_ids().contains(&id) {
        return Err(RecoverError::NoDevice);
    }
    let entry = registry
        .load(id)
        .map_err(RecoverError::Registry)?
        .ok_or_else(|| RecoverError::NoRecord {
            id,
            dir: registry.dir().to_path_buf(),
        })?;
    // Wait while a `grow` changes the volume under the waiting device.
    let lock = registry
        .lock_device(id, DEVICE_LOCK_WAIT)
        .map_err(RecoverError::Registry)?;
    let info = control::device_info(id).map_err(RecoverError::Device)?;
    if info.state == control::DeviceState::Live && !daemon::server_gone(info.pid) {
        return Err(RecoverError::Running { id, pid: info.pid });
    }
    // Not an exclusivity check that refuses a backing attached to a device
    // whose server died: that is exactly this case.
    let backing = open_released(&entry.backing).map_err(RecoverError::Backing)?;
    let path = entry.backing.clone();
    if backing.identity() != entry.identity {
        return Err(RecoverError::OtherBacking {
            path,
            identity: entry.identity.to_key(),
        });
    }
    let (sb, _) = metadata::open_volume(&backing).map_err(RecoverError::Metadata)?;
    let g = &sb.geometry;
    if sb.uuid != entry.uuid || g.data_offset() != entry.data_offset {
        return Err(RecoverError::OtherVolume {
            path,
            now: sb.uuid,
            served: entry.uuid,
        });
    }
    if g.data_size() < entry.data_size {
        return Err(RecoverError::Shrank {
            path,
            served: entry.data_size,
            now: g.data_size(),
        });
    }
    if g.data_size() > entry.data_size && !control::kernel_can_resize() {
        return Err(RecoverError::CannotResize { id, path });
    }
    let write_cache = control::device_write_cache(id).map_err(RecoverError::Device)?;
    let spec = ServeSpec {
        attach: Attach::Recover { id },
        backing,
        volume: Volume::Existing(Box::new(sb)),
        queues: QueueConfig {
            queues: info.queues,
            depth: info.depth,
            io_path: IoPath::of(Features(info.flags)),
            write_cache,
            affinity: entry.affinity,
        },
    };
    Ok(Recovery { spec, lock })
}

/// Open the backing of a device whose server has exited, exclusively. The
/// kernel may still be releasing what that server held for a moment after
/// its last thread is gone, so a busy backing is tried again for
/// [`RELEASE_WAIT`] before it is reported.
pub fn open_released(path: &Path) -> Result<Backing, BackingError> {
    let every = Duration::from_millis(50);
    retry::until(RELEASE_WAIT, every, |last| {
        match Backing::open(path, Access::Exclusive) {
            Err(BackingError::Busy { .. }) if !last => {
                log::debug!("{}: still busy; trying again", path.display());
                None
            }
            other => Some(other),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_opened_for_a_device_that_cannot_be_recovered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Registry::at(dir.path().to_path_buf());
        let err = plan(u32::MAX - 1, &registry).expect_err("no such device");
        if std::path::Path::new(control::CONTROL_PATH).exists() {
            assert!(matches!(err, RecoverError::NoDevice), "{err}");
        } else {
            assert!(matches!(err, RecoverError::Driver(_)), "{err}");
        }
        assert!(!err.names_the_device());
        assert!(
            std::fs::read_dir(dir.path())
                .expect("read")
                .next()
                .is_none(),
            "a refused recovery wrote nothing"
        );
    }
}
