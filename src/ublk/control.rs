//! The control plane: adding, recovering, stopping and describing devices
//! through `/dev/ublk-control`.
//!
//! Facts this code is built around (libublk 0.4.8 on Linux 6.x):
//! * The kernel silently drops `UBLK_F_*` flags it does not support, so the
//!   flags actually granted are read back after the device is added, and
//!   missing user copy falls back to bounce buffers (logged), missing recovery
//!   is logged as "recover will not work".
//! * Control commands may return `Ok(-errno)`; every result is checked.
//! * With `UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE` a server that
//!   dies leaves the device quiesced, I/O waits, and a new server re-attaches;
//!   requests the dead one held are re-issued (our writes are idempotent).
//!   A server that stops on purpose (signal, `del`) removes its device.
//! * libublk's control object deletes the device it added when dropped, and a
//!   panic would unwind into that: release builds abort on panic instead.

use std::error::Error as StdError;
use std::path::Path;

use libublk::ctrl::{UblkCtrl, UblkCtrlBuilder};
use libublk::{UblkError, UblkFlags, sys};

use crate::engine::IoError;
use crate::remedy::{HasRemedy, Remedy};
use crate::units::SECTOR_SHIFT;

use super::affinity::Affinity;
use super::features::{Features, IoPath, WriteCache};

/// Target name recorded with the kernel and in libublk's JSON.
pub const TARGET_NAME: &str = "pmem-stack";
/// Largest request, in bytes.
pub const IO_BUF_BYTES: u32 = 512 << 10;
/// Queue count cap (the default is one per CPU up to this).
pub const MAX_QUEUES: u16 = 16;
/// Default queue depth.
pub const DEFAULT_DEPTH: u16 = 128;
/// ublk's largest queue depth.
pub const MAX_DEPTH: u16 = 4096;
/// The flags pmem-stack asks for on every device; the I/O path adds its own
/// ([`IoPath::flag`]).
pub const RECOVERY_FLAGS: u64 =
    (sys::UBLK_F_USER_RECOVERY | sys::UBLK_F_USER_RECOVERY_REISSUE) as u64;
/// Every flag pmem-stack may ask for: recovery and the data-path flags.
pub const WANTED_FLAGS: u64 = RECOVERY_FLAGS
    | (sys::UBLK_F_USER_COPY | sys::UBLK_F_AUTO_BUF_REG | sys::UBLK_F_BATCH_IO) as u64;
/// The control device.
pub const CONTROL_PATH: &str = "/dev/ublk-control";
/// The signal that asks a server to hand its device over to a successor
/// (`pmem-stack restart`): flush, then exit without removing the device,
/// which the kernel quiesces until the next server recovers it.
pub const HANDOVER_SIGNAL: i32 = signal_hook::consts::SIGUSR1;
/// A server's exit status after a hand-over (`EX_TEMPFAIL`): the
/// `pmem-stack@.service` unit restarts on it (`RestartForceExitStatus=`).
pub const HANDOVER_EXIT: i32 = 75;

/// Queue shape of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Hardware queues (one server thread each).
    pub queues: u16,
    /// Requests in flight per queue.
    pub depth: u16,
    /// How request data moves (a recovered device keeps the path it had).
    pub io_path: IoPath,
    /// Whether the device declares a volatile write cache (a recovered
    /// device keeps what it declared).
    pub write_cache: WriteCache,
    /// Where the queue threads run.
    pub affinity: Affinity,
}

impl QueueConfig {
    /// One queue per CPU (capped at [`MAX_QUEUES`]), depth [`DEFAULT_DEPTH`].
    pub fn default_for_host() -> QueueConfig {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        QueueConfig {
            queues: u16::try_from(cpus)
                .unwrap_or(MAX_QUEUES)
                .clamp(1, MAX_QUEUES),
            depth: DEFAULT_DEPTH,
            io_path: IoPath::UserCopy,
            write_cache: WriteCache::WriteBack,
            affinity: Affinity::default(),
        }
    }
}

/// Whether to create a device or re-attach to one whose server died.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// A new device, with this id or the next free one.
    Add { id: Option<u32> },
    /// Re-attach to the quiesced device `id`.
    Recover { id: u32 },
}

/// What the kernel gave us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    /// Device number N of `/dev/ublkbN`.
    pub id: u32,
    /// The `UBLK_F_*` flags the kernel granted the device.
    pub features: Features,
    /// Queues.
    pub queues: u16,
    /// Depth.
    pub depth: u16,
    /// Whether the device declares a volatile write cache.
    pub write_cache: WriteCache,
    /// Where the queue threads run.
    pub affinity: Affinity,
}

impl Granted {
    /// Requests are copied with `UBLK_F_USER_COPY`.
    pub fn user_copy(&self) -> bool {
        self.features.has(sys::UBLK_F_USER_COPY)
    }

    /// A dead server can be replaced without I/O errors.
    pub fn recovery(&self) -> bool {
        self.features
            .has(sys::UBLK_F_USER_RECOVERY | sys::UBLK_F_USER_RECOVERY_REISSUE)
    }

    /// How request data moves.
    pub fn io_path(&self) -> IoPath {
        IoPath::of(self.features)
    }
}

/// Kernel state of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// Stopped (or not started yet).
    Dead,
    /// Serving I/O.
    Live,
    /// Its server died; I/O waits for `recover`.
    Quiesced,
    /// Its server died and I/O fails.
    FailIo,
    /// A state this code does not know.
    Other(u16),
}

impl DeviceState {
    fn from_raw(raw: u16) -> DeviceState {
        match u32::from(raw) {
            sys::UBLK_S_DEV_DEAD => DeviceState::Dead,
            sys::UBLK_S_DEV_LIVE => DeviceState::Live,
            sys::UBLK_S_DEV_QUIESCED => DeviceState::Quiesced,
            sys::UBLK_S_DEV_FAIL_IO => DeviceState::FailIo,
            _ => DeviceState::Other(raw),
        }
    }

    /// Lower-case name for output.
    pub fn name(self) -> String {
        match self {
            DeviceState::Dead => "dead".into(),
            DeviceState::Live => "live".into(),
            DeviceState::Quiesced => "quiesced".into(),
            DeviceState::FailIo => "fail_io".into(),
            DeviceState::Other(raw) => format!("state-{raw}"),
        }
    }
}

/// What the kernel says about a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// N of `/dev/ublkbN`.
    pub id: u32,
    /// Its state.
    pub state: DeviceState,
    /// Pid of the server that started it (or last recovered it).
    pub pid: i32,
    /// Queues.
    pub queues: u16,
    /// Depth.
    pub depth: u16,
    /// Granted `UBLK_F_*` flags.
    pub flags: u64,
}

/// Errors of the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "the ublk driver is not available ({CONTROL_PATH} is missing): load it with 'modprobe ublk_drv' (Linux 6.0+; user copy needs 6.5+)"
    )]
    NoDriver,
    #[error("ublk {what} failed: {detail}")]
    Ublk { what: &'static str, detail: String },
    #[error("device id {0} is already taken")]
    IdTaken(u32),
    #[error("/dev/ublkb{0} does not exist")]
    NoSuchDevice(u32),
    #[error("/dev/ublkb{id} is {state}, not quiesced: {hint}")]
    NotRecoverable {
        id: u32,
        state: String,
        hint: &'static str,
    },
    #[error(transparent)]
    Prepare(PrepareFailed),
    /// A setting from the environment the server does not know.
    #[error("{0}")]
    Environment(String),
    #[error("final flush failed")]
    Flush(#[source] IoError),
}

/// Why the server's `prepare` step failed: the error, boxed (this layer does
/// not know the server's error types), with the remedy read from it before
/// it was boxed — so no layer has to downcast to learn the way out.
/// Displays as the error itself, and its causes follow it.
#[derive(Debug)]
pub struct PrepareFailed {
    error: Box<dyn StdError + Send + Sync>,
    remedy: Option<Remedy>,
}

impl PrepareFailed {
    /// `error`, with the remedy it knows.
    pub fn new<E: StdError + HasRemedy + Send + Sync + 'static>(error: E) -> PrepareFailed {
        PrepareFailed {
            remedy: error.remedy(),
            error: Box::new(error),
        }
    }

    /// A broken invariant of the server: no remedy but a bug report.
    pub fn invariant(what: &'static str) -> PrepareFailed {
        PrepareFailed {
            error: what.into(),
            remedy: None,
        }
    }
}

impl std::fmt::Display for PrepareFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl StdError for PrepareFailed {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

impl HasRemedy for ServeError {
    fn remedy(&self) -> Option<Remedy> {
        match self {
            ServeError::IdTaken(_) => Some(Remedy::OtherDeviceId),
            ServeError::Prepare(failed) => failed.remedy,
            _ => None,
        }
    }
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno.abs()).to_string()
}

fn ublk_error(what: &'static str) -> impl FnOnce(UblkError) -> ServeError {
    move |err| ServeError::Ublk {
        what,
        detail: match err {
            UblkError::OtherError(errno) | UblkError::UringIOError(errno) => errno_text(errno),
            UblkError::IOError(io) => io.to_string(),
            other => format!("{other:?}"),
        },
    }
}

/// Treat a control command's `Ok(-errno)` as the error it is.
pub(super) fn checked(
    what: &'static str,
    result: Result<i32, UblkError>,
) -> Result<i32, ServeError> {
    match result {
        Ok(rc) if rc < 0 => Err(ServeError::Ublk {
            what,
            detail: errno_text(rc),
        }),
        Ok(rc) => Ok(rc),
        Err(err) => Err(ublk_error(what)(err)),
    }
}

/// Fail early, before anything is written, when ublk cannot work here.
pub fn check_driver() -> Result<(), ServeError> {
    if Path::new(CONTROL_PATH).exists() {
        Ok(())
    } else {
        Err(ServeError::NoDriver)
    }
}

/// Ids of all ublk devices the kernel has.
pub fn device_ids() -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir("/sys/class/ublk-char")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_prefix("ublkc"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids
}

fn open_existing(id: u32) -> Result<UblkCtrl, ServeError> {
    check_driver()?;
    if !device_ids().contains(&id) {
        return Err(ServeError::NoSuchDevice(id));
    }
    let signed = i32::try_from(id).map_err(|_| ServeError::NoSuchDevice(id))?;
    UblkCtrl::new_simple(signed).map_err(|err| match err {
        UblkError::OtherError(e) if e == -libc::ENODEV || e == -libc::ENOENT => {
            ServeError::NoSuchDevice(id)
        }
        other => ublk_error("GET_DEV_INFO")(other),
    })
}

/// What the kernel says about device `id`.
pub fn device_info(id: u32) -> Result<DeviceInfo, ServeError> {
    let ctrl = open_existing(id)?;
    let info = ctrl.dev_info();
    Ok(DeviceInfo {
        id,
        state: DeviceState::from_raw(info.state),
        pid: info.ublksrv_pid,
        queues: info.nr_hw_queues,
        depth: info.queue_depth,
        flags: info.flags,
    })
}

/// The size in bytes the kernel gives device `id`'s disk (its parameters'
/// `dev_sectors`, which `UPDATE_SIZE` changes).
pub fn device_size(id: u32) -> Result<u64, ServeError> {
    let ctrl = open_existing(id)?;
    disk_size(&ctrl)
}

/// The write cache device `id` declared when it started.
pub fn device_write_cache(id: u32) -> Result<WriteCache, ServeError> {
    let ctrl = open_existing(id)?;
    Ok(WriteCache::of_attrs(disk_params(&ctrl)?.basic.attrs))
}

fn disk_params(ctrl: &UblkCtrl) -> Result<sys::ublk_params, ServeError> {
    let mut params = sys::ublk_params::default();
    checked("GET_PARAMS", ctrl.get_params(&mut params))?;
    Ok(params)
}

fn disk_size(ctrl: &UblkCtrl) -> Result<u64, ServeError> {
    let params = disk_params(ctrl)?;
    params
        .basic
        .dev_sectors
        .checked_mul(1 << SECTOR_SHIFT)
        .ok_or_else(|| ServeError::Ublk {
            what: "GET_PARAMS",
            detail: format!("{} sectors do not fit in 64 bits", params.basic.dev_sectors),
        })
}

/// Drop this thread's control ring without touching the kernel object
/// behind it: after a fork, the child's copy of the parent's ring. libublk
/// keeps one ring per thread and would otherwise share the parent's — the
/// same submission and completion queues in two processes, each able to
/// reap (and so lose) the other's completions. The next control command
/// here builds a ring of this process's own.
pub fn forget_inherited_ring() {
    let dropped = libublk::ctrl::ublk_init_ctrl_task_ring(|ring| {
        *ring = None;
        Ok(())
    });
    if let Err(err) = dropped {
        log::warn!("could not drop the inherited control ring: {err}");
    }
}

/// Whether this kernel can resize a live device (`UBLK_F_UPDATE_SIZE`,
/// Linux 6.16+).
pub fn kernel_can_resize() -> bool {
    Features::of_kernel().is_some_and(|f| f.has(sys::UBLK_F_UPDATE_SIZE))
}

/// A recovered device keeps the size its disk got at `START_DEV`. When the
/// volume grew while it waited quiesced (`pmem-stack grow` of a served
/// backing), tell the kernel the data area's size so the whole of it is
/// served; the kernel announces the change (a `RESIZE` uevent), after which
/// a mounted file system can grow online.
pub(super) fn match_disk_size(ctrl: &UblkCtrl, id: u32, size: u64) -> Result<(), ServeError> {
    let current = disk_size(ctrl)?;
    if current == size {
        return Ok(());
    }
    if current > size {
        // `recover` refuses a volume smaller than the one served; reaching
        // here means the kernel's record and the super block disagree.
        log::warn!(
            "/dev/ublkb{id}: the kernel serves {current} bytes but the data area holds {size}; requests past it fail"
        );
        return Ok(());
    }
    if !kernel_can_resize() {
        return Err(ServeError::Ublk {
            what: "UPDATE_SIZE",
            detail: format!(
                "the data area grew to {size} bytes but this kernel cannot resize a live device (needs Linux 6.16+); it serves the first {current}"
            ),
        });
    }
    checked("UPDATE_SIZE", ctrl.update_size(size))?;
    log::info!("/dev/ublkb{id}: resized from {current} to {size} bytes");
    Ok(())
}

/// `major:minor` of `/dev/ublkbN`, from sysfs (while it exists).
pub fn block_device_numbers(id: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(format!("/sys/block/ublkb{id}/dev")).ok()?;
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Who holds `/dev/ublkbN` exclusively (a mount point, dm, md), if anyone
/// the caller's mount namespace and sysfs can name: removing the device
/// would pull it from under them.
pub fn holder(id: u32) -> Option<String> {
    block_device_numbers(id)
        .and_then(|(major, minor)| crate::backing::sysfs::block_holder(major, minor))
}

/// Whether `/dev/ublkbN` is claimed exclusively — mounted in any mount
/// namespace, or held by dm, md or another `O_EXCL` opener — and by what,
/// as far as [`holder`] can tell. A server runs in a private mount namespace
/// ([`crate::daemon::private_mount_namespace`]) that never sees the mounts
/// of its own device, so this asks the kernel: an exclusive open is refused
/// with `EBUSY` exactly while such a claim exists.
pub fn claimed(id: u32) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(format!("/dev/ublkb{id}"));
    match probe {
        Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
            Some(holder(id).unwrap_or_else(|| "mounted or claimed exclusively".to_string()))
        }
        _ => None,
    }
}

/// Stop and remove device `id` (its server, if alive, flushes and exits).
/// Does not wait for openers of `/dev/ublkbN` to close it: the kernel frees
/// the device when the last one does.
pub fn delete(id: u32) -> Result<(), ServeError> {
    let ctrl = open_existing(id)?;
    match ctrl.del_dev_async() {
        // libublk removes its JSON file after the command succeeded, racing
        // the stopping server that removes the same file: the device is gone.
        Err(UblkError::IOError(err)) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        result => checked("DEL_DEV_ASYNC", result).map(|_| ()),
    }
}

/// Ask device `id` to stop; its server's queues end and it cleans up.
pub fn stop(id: u32) -> Result<(), ServeError> {
    let ctrl = open_existing(id)?;
    checked("STOP_DEV", ctrl.kill_dev()).map(|_| ())
}

/// The control object of the device a server is to serve, whose queues each
/// get `io_threads` threads (more than one needs `UBLK_F_PER_IO_DAEMON`).
pub(super) fn build_control(
    attach: Attach,
    cfg: QueueConfig,
    io_threads: u16,
) -> Result<UblkCtrl, ServeError> {
    check_driver()?;
    match attach {
        Attach::Add { id } => add_control(id, cfg, io_threads),
        Attach::Recover { id } => recover_control(id, io_threads),
    }
}

/// A control object for a new device (with `id`, or the next free one).
fn add_control(id: Option<u32>, cfg: QueueConfig, io_threads: u16) -> Result<UblkCtrl, ServeError> {
    let signed = match id {
        Some(id) => i32::try_from(id).map_err(|_| ServeError::IdTaken(id))?,
        None => -1,
    };
    if let Some(id) = id
        && device_ids().contains(&id)
    {
        return Err(ServeError::IdTaken(id));
    }
    let ctrl = UblkCtrlBuilder::default()
        .name(TARGET_NAME)
        .id(signed)
        .nr_queues(cfg.queues)
        .depth(cfg.depth)
        .io_buf_bytes(IO_BUF_BYTES)
        .ctrl_flags(RECOVERY_FLAGS | cfg.io_path.flag())
        .dev_flags(UblkFlags::UBLK_DEV_F_ADD_DEV)
        .io_threads_per_queue(io_threads)
        .build()
        .map_err(|err| match (err, id) {
            (UblkError::OtherError(e) | UblkError::UringIOError(e), Some(id))
                if e == -libc::EEXIST || e == -libc::EBUSY || e == -libc::ENOSPC =>
            {
                ServeError::IdTaken(id)
            }
            (err, _) => ublk_error("ADD_DEV")(err),
        })?;
    // libublk reports ADD_DEV's -EBUSY as success and leaves our own
    // request in dev_info (with our pid as ublksrv_pid). A real ADD
    // copies the kernel's record back, in which the server pid is -1
    // until START_DEV. Without this check a failed add would treat
    // somebody else's device as ours — and dropping the control
    // object would delete it.
    let info = ctrl.dev_info();
    if info.ublksrv_pid != -1 {
        ctrl.disown();
        return Err(match id {
            Some(id) => ServeError::IdTaken(id),
            None => ServeError::Ublk {
                what: "ADD_DEV",
                detail: "the kernel did not create a device (busy)".to_string(),
            },
        });
    }
    Ok(ctrl)
}

/// A control object re-attached to device `id`, whose server died.
fn recover_control(id: u32, io_threads: u16) -> Result<UblkCtrl, ServeError> {
    let old = open_existing(id)?;
    let info = old.dev_info();
    let state = DeviceState::from_raw(info.state);
    if !matches!(state, DeviceState::Quiesced | DeviceState::Live) {
        return Err(ServeError::NotRecoverable {
            id,
            state: state.name(),
            hint: "only a device whose server died can be recovered; 'pmem-stack del' removes it",
        });
    }
    if info.flags & u64::from(sys::UBLK_F_USER_RECOVERY) == 0 {
        return Err(ServeError::NotRecoverable {
            id,
            state: state.name(),
            hint: "the kernel did not grant user recovery for it",
        });
    }
    // Waits (up to 30 s) while the kernel still tears the old server down.
    checked("START_USER_RECOVERY", old.start_user_recover())?;
    drop(old);
    let signed = i32::try_from(id).map_err(|_| ServeError::NoSuchDevice(id))?;
    UblkCtrlBuilder::default()
        .name(TARGET_NAME)
        .id(signed)
        .nr_queues(info.nr_hw_queues)
        .depth(info.queue_depth)
        .io_buf_bytes(info.max_io_buf_bytes)
        .ctrl_flags(recovery_flags(info.flags))
        .dev_flags(UblkFlags::UBLK_DEV_F_RECOVER_DEV)
        .io_threads_per_queue(io_threads)
        .build()
        .map_err(ublk_error("recovery attach"))
}

/// The flags a re-attaching server passes back: the ones pmem-stack asks for
/// that the kernel granted the device. The kernel also reports flags it sets
/// on its own (`UBLK_F_CMD_IOCTL_ENCODE`, and since 6.16 `PER_IO_DAEMON` and
/// `BUF_REG_OFF_DAEMON`), which libublk 0.4.8's builder rejects as unknown
/// (`InvalidVal`): passing `dev_info().flags` back whole broke `recover` on
/// Linux 7.x.
fn recovery_flags(granted: u64) -> u64 {
    granted & WANTED_FLAGS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_queue_config_is_capped() {
        let cfg = QueueConfig::default_for_host();
        assert!(cfg.queues >= 1 && cfg.queues <= MAX_QUEUES);
        assert_eq!(cfg.depth, DEFAULT_DEPTH);
    }

    #[test]
    fn states_have_names() {
        assert_eq!(DeviceState::from_raw(1).name(), "live");
        assert_eq!(DeviceState::from_raw(2).name(), "quiesced");
        assert_eq!(DeviceState::from_raw(0).name(), "dead");
        assert_eq!(DeviceState::from_raw(3).name(), "fail_io");
        assert_eq!(DeviceState::from_raw(9).name(), "state-9");
    }

    #[test]
    fn recovery_passes_back_only_requested_flags() {
        // What 7.3 reports for a device added with WANTED_FLAGS: the kernel's
        // own flags on top.
        for path in [
            IoPath::UserCopy,
            IoPath::Direct,
            IoPath::BounceBuffer,
            IoPath::Batch,
        ] {
            let asked = RECOVERY_FLAGS | path.flag();
            let reported = asked
                | u64::from(sys::UBLK_F_CMD_IOCTL_ENCODE)
                | u64::from(sys::UBLK_F_PER_IO_DAEMON)
                | u64::from(sys::UBLK_F_BUF_REG_OFF_DAEMON);
            assert_eq!(recovery_flags(reported), asked, "{path:?}");
        }
        // A kernel that granted less is not asked for more.
        let partial = u64::from(sys::UBLK_F_USER_RECOVERY);
        assert_eq!(recovery_flags(partial), partial);
    }

    #[test]
    fn ok_negative_is_an_error() {
        let err = checked("X", Ok(-libc::EBUSY)).expect_err("negative");
        assert!(err.to_string().contains("busy"), "{err}");
        assert_eq!(checked("X", Ok(0)).expect("ok"), 0);
    }

    #[test]
    fn without_the_driver_nothing_is_attempted() {
        if Path::new(CONTROL_PATH).exists() {
            // On a host with ublk this test has nothing to show.
            assert!(check_driver().is_ok());
        } else {
            assert!(matches!(check_driver(), Err(ServeError::NoDriver)));
            assert!(matches!(device_info(0), Err(ServeError::NoDriver)));
            assert!(matches!(delete(0), Err(ServeError::NoDriver)));
        }
    }
}
