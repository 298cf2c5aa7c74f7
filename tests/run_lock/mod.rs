//! One guest suite run at a time per directory (used by `real_kernel`,
//! tested on the host by `suite_lock`).
//!
//! Two runs at once (a `scripts/fresh-check` and a developer's `cargo test
//! --test real_kernel`, say) would otherwise share
//! `/dev/shm/pmem-stack-suite/` — each clears it when it starts and writes
//! NVDIMM images under the same names — and a checkout's results, and fail
//! or pass on each other's files.
//!
//! The lock is `flock(2)` on `DIR.lock`, beside the directory: the kernel
//! drops it when its run ends, however it ends, so a killed run leaves
//! nothing stale to clean up and no two runs can both believe they hold
//! it. The file holds the holder's pid, for the refusal's message only.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A directory this run owns until the value is dropped.
pub struct RunLock {
    _file: fs::File,
}

/// The lock file of `dir`: `dir` + `.lock`.
pub fn lock_path(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl RunLock {
    /// Own `dir`, or say which run does and, after "wait for it to end",
    /// `or` what else to do.
    pub fn take(dir: &Path, or: &str) -> Result<RunLock, String> {
        let path = lock_path(dir);
        if let Some(parent) = path.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: flock(2) on a descriptor `file` owns and keeps open for
        // the call; it touches no memory of this process.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(format!("cannot lock {}: {err}", path.display()));
            }
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = match holder.trim() {
                "" => "pid not yet written".to_string(),
                pid => format!("pid {pid}"),
            };
            return Err(format!(
                "another guest suite run ({holder}) is using {}; wait for it to end (one \
                 guest at a time on this machine){or}",
                dir.display()
            ));
        }
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(RunLock { _file: file })
    }
}
