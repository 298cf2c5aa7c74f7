//! What pmem-stack serves, for `list`, `del`, `recover` and the refusals of a
//! second `add` of the same backing.
//!
//! The kernel knows a device's state, queues and server pid but not which
//! backing or layout it serves, so each server records that in
//! `/run/pmem-stack/ublkbN.json` (tmpfs: it dies with the devices at reboot).
//! Files are written to a temporary name, synced and renamed into place, so a
//! reader never sees half a record — unlike libublk's own JSON, which is
//! written in place. A record whose device the kernel no longer has is stale
//! and ignored (and swept by `list`).

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backing::Identity;
use crate::engine::StatsSnapshot;
use crate::format::{ReserveMode, Uuid};
use crate::ublk::affinity::Affinity;

/// Environment variable that moves the registry (tests use it).
pub const RUN_DIR_ENV: &str = "PMEM_STACK_RUN_DIR";

/// One served device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// N of `/dev/ublkbN`.
    pub id: u32,
    /// The backing as the user named it.
    pub backing: PathBuf,
    /// The backing's identity (recorded as [`Identity::to_key`]), so a
    /// backing named by another path is still recognised.
    pub identity: Identity,
    /// Volume uuid.
    pub uuid: Uuid,
    /// Server pid.
    pub pid: i32,
    /// Queues.
    pub queues: u16,
    /// Queue depth.
    pub depth: u16,
    /// Whether requests are copied with user copy.
    pub user_copy: bool,
    /// Whether a dead server can be recovered.
    pub recovery: bool,
    /// Reserve mode.
    #[serde(with = "mode_name")]
    pub mode: ReserveMode,
    /// Reserve offset in the backing.
    pub reserve_offset: u64,
    /// Reserve size.
    pub reserve_size: u64,
    /// Data area offset in the backing.
    pub data_offset: u64,
    /// Data area size (= device size).
    pub data_size: u64,
    /// The server's log file.
    pub log: Option<PathBuf>,
    /// The server runs under a service manager (`Type=notify`, e.g. the
    /// `pmem-stack@.service` unit), which restarts it after a hand-over;
    /// `restart` then waits for that instead of starting one itself.
    #[serde(default)]
    pub supervised: bool,
    /// When this server recorded itself, in nanoseconds since the Unix
    /// epoch: a successor's record differs from its predecessor's even when
    /// it kept the pid (a supervised server hands over by re-executing
    /// itself). 0 in records from before this field.
    #[serde(default)]
    pub started: u64,
    /// Where its queue threads run (records from before this field: the
    /// default).
    #[serde(default)]
    pub affinity: Affinity,
}

/// A reserve mode recorded by its name (`none`, `hypervisor`, `os`).
mod mode_name {
    use crate::format::ReserveMode;

    pub fn serialize<S: serde::Serializer>(mode: &ReserveMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(mode.as_str())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ReserveMode, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        [ReserveMode::None, ReserveMode::Hypervisor, ReserveMode::Os]
            .into_iter()
            .find(|mode| mode.as_str() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown reserve mode {name}")))
    }

    use serde::Deserialize;
}

/// A held device lock ([`Registry::lock_device`]).
#[derive(Debug)]
pub struct DeviceLock {
    _file: fs::File,
}

/// The directory of records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// `/run/pmem-stack`, or `$PMEM_STACK_RUN_DIR`.
    pub fn system() -> Registry {
        Registry {
            dir: std::env::var_os(RUN_DIR_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/run/pmem-stack")),
        }
    }

    /// A registry in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Registry {
        Registry { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn entry_path(&self, id: u32) -> PathBuf {
        self.dir.join(format!("ublkb{id}.json"))
    }

    fn stats_path(&self, id: u32) -> PathBuf {
        self.dir.join(format!("ublkb{id}.stats"))
    }

    /// Publish the server's request counters (replaced atomically; not
    /// synced: they are for watching, and die with the server).
    pub fn save_stats(&self, id: u32, stats: &StatsSnapshot) -> io::Result<()> {
        let tmp = self
            .dir
            .join(format!(".ublkb{id}.stats.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut file =
            Self::open_private(&tmp, fs::OpenOptions::new().write(true).create_new(true))?;
        file.write_all(&serde_json::to_vec(stats).map_err(io::Error::other)?)?;
        fs::rename(&tmp, self.stats_path(id))
    }

    /// The counters device `id`'s server published last, if any.
    pub fn load_stats(&self, id: u32) -> Option<StatsSnapshot> {
        if !self.check_dir().ok()? {
            return None;
        }
        serde_json::from_slice(&fs::read(self.stats_path(id)).ok()?).ok()
    }

    /// The server log file for device `id`.
    pub fn log_path(&self, id: u32) -> PathBuf {
        self.dir.join(format!("ublkb{id}.log"))
    }

    /// Create the directory (mode 0700), or check the one that is there:
    /// a real directory (not a symbolic link), owned by this user, writable
    /// by nobody else. Records and logs steer root's tools; a directory
    /// someone else can write could feed them a forged record.
    pub fn prepare_dir(&self) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => self.check_dir().map(|_| ()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // A missing parent (a test's scratch directory): make it.
                fs::DirBuilder::new()
                    .mode(0o700)
                    .recursive(true)
                    .create(&self.dir)
            }
            Err(err) => Err(err),
        }
    }

    /// Whether the directory exists, and when it does, that it is safe to
    /// believe: a real directory of this user's that nobody else can write
    /// (readers check too: a forged record would steer `recover` and `del`).
    fn check_dir(&self) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let meta = match fs::symlink_metadata(&self.dir) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(err),
        };
        let refuse = |why: &str| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} {why}; refusing to use records there",
                    self.dir.display()
                ),
            )
        };
        if !meta.file_type().is_dir() {
            return Err(refuse("is not a directory (a symbolic link?)"));
        }
        if meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(refuse("belongs to another user"));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(refuse("is writable by others"));
        }
        Ok(true)
    }

    /// Open `path` in the registry for writing, never through a symbolic
    /// link, readable by this user only.
    fn open_private(path: &std::path::Path, options: &mut fs::OpenOptions) -> io::Result<fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    }

    /// The server log of device `id`, opened for appending.
    pub fn open_log(&self, id: u32) -> io::Result<fs::File> {
        self.prepare_dir()?;
        Self::open_private(
            &self.log_path(id),
            fs::OpenOptions::new().create(true).append(true),
        )
    }

    /// Write (or replace) the record atomically: a new file (never an
    /// existing one, never through a link), synced, renamed into place, and
    /// the directory synced.
    pub fn save(&self, entry: &Entry) -> io::Result<()> {
        self.prepare_dir()?;
        let final_path = self.entry_path(entry.id);
        let tmp = self
            .dir
            .join(format!(".ublkb{}.json.{}", entry.id, std::process::id()));
        // A leftover of a crashed save (or a planted link): remove the name,
        // never what it points to.
        let _ = fs::remove_file(&tmp);
        let mut file =
            Self::open_private(&tmp, fs::OpenOptions::new().write(true).create_new(true))?;
        let text = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
        file.write_all(&text)?;
        file.sync_all()?;
        fs::rename(&tmp, &final_path)?;
        fs::File::open(&self.dir)?.sync_all()
    }

    /// The record for device `id`, if any.
    pub fn load(&self, id: u32) -> io::Result<Option<Entry>> {
        if !self.check_dir()? {
            return Ok(None);
        }
        match fs::read(self.entry_path(id)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Every readable record, by id.
    pub fn all(&self) -> Vec<Entry> {
        if let Err(err) = self.check_dir() {
            log::warn!("{err}");
            return Vec::new();
        }
        let mut entries: Vec<Entry> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|dirent| {
                let name = dirent.file_name();
                let id: u32 = name
                    .to_str()?
                    .strip_prefix("ublkb")?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()?;
                match self.load(id) {
                    Ok(entry) => entry,
                    Err(err) => {
                        log::warn!(
                            "ignoring unreadable record {}: {err}",
                            dirent.path().display()
                        );
                        None
                    }
                }
            })
            .collect();
        entries.sort_by_key(|e| e.id);
        entries
    }

    /// Take device `id`'s lock, waiting at most `timeout` for its holder.
    ///
    /// It orders the commands that change which server a device has: `grow`
    /// of a served backing holds it from before its server hands the device
    /// over until the volume has grown, so a successor started meanwhile (a
    /// service manager's `serve`, which recovers) waits for the grown volume
    /// rather than racing it. Released when the guard drops; the file is
    /// close-on-exec, and callers drop it before a server forks.
    pub fn lock_device(&self, id: u32, timeout: std::time::Duration) -> io::Result<DeviceLock> {
        self.prepare_dir()?;
        let path = self.dir.join(format!("ublkb{id}.lock"));
        let file = Self::open_private(&path, fs::OpenOptions::new().create(true).write(true))?;
        let every = std::time::Duration::from_millis(20);
        let locked = crate::retry::until(timeout, every, |last| {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Err(rustix::io::Errno::WOULDBLOCK) if !last => None,
                other => Some(other),
            }
        });
        match locked {
            Ok(()) => Ok(DeviceLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "another pmem-stack command has held /dev/ublkb{id} for {} s ({})",
                    timeout.as_secs(),
                    path.display()
                ),
            )),
            Err(err) => Err(err.into()),
        }
    }

    /// Forget device `id` (its record and counters; the log is kept for
    /// post-mortems).
    pub fn remove(&self, id: u32) -> io::Result<()> {
        let _ = fs::remove_file(self.stats_path(id));
        match fs::remove_file(self.entry_path(id)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_lock_excludes_until_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let registry = Registry::at(dir.path().join("run"));
        let short = std::time::Duration::from_millis(60);
        let held = registry.lock_device(3, short).expect("first");
        let err = registry.lock_device(3, short).expect_err("held");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(err.to_string().contains("/dev/ublkb3"), "{err}");
        registry
            .lock_device(4, short)
            .expect("another device's lock is free");
        drop(held);
        registry.lock_device(3, short).expect("free again");
    }

    fn sample(id: u32) -> Entry {
        Entry {
            id,
            backing: PathBuf::from("/dev/pmem0"),
            identity: Identity::from_key("dev:259:0").expect("key"),
            uuid: Uuid::parse("0f2d4c1e-9a3b-4c5d-8e7f-102132435465").expect("uuid"),
            pid: 42,
            queues: 2,
            depth: 128,
            user_copy: true,
            recovery: true,
            mode: ReserveMode::Hypervisor,
            reserve_offset: 2 << 20,
            reserve_size: 512 << 20,
            data_offset: 514 << 20,
            data_size: 1532 << 20,
            log: None,
            supervised: false,
            started: 0,
            affinity: Affinity::Queue,
        }
    }

    #[test]
    fn records_and_logs_are_private_and_never_followed() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let top = tempfile::tempdir().expect("dir");
        let reg = Registry::at(top.path().join("run"));
        reg.save(&sample(1)).expect("save");
        let mode = |p: &std::path::Path| fs::metadata(p).expect("stat").mode() & 0o777;
        assert_eq!(mode(reg.dir()), 0o700);
        assert_eq!(mode(&reg.entry_path(1)), 0o600);
        drop(reg.open_log(1).expect("log"));
        assert_eq!(mode(&reg.log_path(1)), 0o600);
        // A log name planted as a link to another file is not followed.
        let victim = top.path().join("victim");
        fs::write(&victim, b"keep").expect("victim");
        std::os::unix::fs::symlink(&victim, reg.log_path(2)).expect("link");
        assert!(reg.open_log(2).is_err());
        // A temporary name planted as a link is replaced, not written through.
        let tmp = reg
            .dir()
            .join(format!(".ublkb3.json.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).expect("link");
        reg.save(&sample(3)).expect("save");
        assert_eq!(fs::read(&victim).expect("victim"), b"keep");
        // A registry directory others can write, or a link, is refused.
        fs::set_permissions(reg.dir(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = reg.save(&sample(4)).expect_err("world-writable");
        assert!(err.to_string().contains("writable by others"), "{err}");
        assert!(reg.load(1).is_err(), "nor are records read from it");
        assert!(reg.all().is_empty());
        let linked = Registry::at(top.path().join("linked"));
        std::os::unix::fs::symlink(top.path().join("run"), linked.dir()).expect("link");
        let err = linked.save(&sample(5)).expect_err("link");
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert_eq!(
            fs::metadata(&victim).expect("victim").mode() & 0o777,
            mode(&victim)
        );
    }

    #[test]
    fn the_record_keeps_its_text_form() {
        // Records written by earlier versions stay readable: the typed fields
        // are stored as the same strings.
        let text = serde_json::to_value(sample(1)).expect("json");
        assert_eq!(text["identity"], "dev:259:0");
        assert_eq!(text["uuid"], "0f2d4c1e-9a3b-4c5d-8e7f-102132435465");
        assert_eq!(text["mode"], "hypervisor");
        assert_eq!(text["affinity"], "queue");
        let back: Entry = serde_json::from_value(text.clone()).expect("parse");
        assert_eq!(back, sample(1));
        // A record from before the later fields gets their defaults.
        let mut old = text;
        let fields = old.as_object_mut().expect("object");
        fields.remove("affinity");
        fields.remove("supervised");
        let back: Entry = serde_json::from_value(old).expect("parse an older record");
        assert_eq!(back.affinity, Affinity::Node);
        assert!(!back.supervised);
    }

    #[test]
    fn save_load_list_remove() {
        let dir = tempfile::tempdir().expect("dir");
        let reg = Registry::at(dir.path());
        reg.save(&sample(3)).expect("save");
        reg.save(&sample(1)).expect("save");
        fs::write(dir.path().join("ublkb7.json"), b"{not json").expect("junk");
        fs::write(dir.path().join("other.txt"), b"x").expect("junk");
        assert_eq!(reg.load(3).expect("load"), Some(sample(3)));
        assert_eq!(reg.load(9).expect("load"), None);
        assert!(reg.load(7).is_err());
        let ids: Vec<u32> = reg.all().iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![1, 3]);
        reg.remove(3).expect("remove");
        reg.remove(3).expect("idempotent");
        assert_eq!(reg.load(3).expect("load"), None);
        // No temporary files left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
        assert_eq!(reg.log_path(3), dir.path().join("ublkb3.log"));
    }
}
