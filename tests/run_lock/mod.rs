//! One guest suite run at a time per directory (used by `real_kernel`,
//! tested on the host by `suite_lock`).

use std::fs;
use std::path::{Path, PathBuf};

/// A directory one suite run owns while it runs: `DIR.lock` holds the
/// owner's pid, made with `create_new` so two runs starting at once cannot
/// both take it. Two runs at once (a `scripts/fresh-check` and a developer's
/// `cargo test --test real_kernel`, say) would otherwise share
/// `/dev/shm/pmem-stack-suite/` — each clears it when it starts and writes
/// NVDIMM images under the same names — and a checkout's results, and fail
/// or pass on each other's files. A lock left by a run that was killed
/// (its pid gone, or now another program's) is taken over. Released on drop.
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Own `dir` (its lock is `dir` + `.lock`, beside it), or say who does
    /// and, after "wait for it to end", `or` what else to do.
    pub fn take(dir: &Path, or: &str) -> Result<RunLock, String> {
        let mut name = dir.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(parent) = path.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let me = std::process::id();
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    use std::io::Write;
                    file.write_all(format!("{me}\n").as_bytes())
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path).unwrap_or_default();
                    let holder = holder.trim();
                    if suite_alive(holder) {
                        return Err(format!(
                            "another guest suite run (pid {holder}) is using {}; wait for it to \
                             end (one guest at a time on this machine){or}",
                            dir.display()
                        ));
                    }
                    // Its run was killed: the lock is stale.
                    let _ = fs::remove_file(&path);
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
        Err(format!(
            "cannot take {}: it came back after removing a stale one; is another run starting?",
            path.display()
        ))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether `pid` (a lock's text) is a running suite: alive, and this test
/// binary (a pid reused by another program since is no holder).
pub fn suite_alive(pid: &str) -> bool {
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let mine = fs::read_link("/proc/self/exe").ok();
    let theirs = fs::read_link(format!("/proc/{pid}/exe")).ok();
    match (mine, theirs) {
        (_, None) => false,
        // Same binary, or one of another checkout's builds of this suite.
        (Some(mine), Some(theirs)) => {
            theirs == mine
                || theirs
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("real_kernel"))
        }
        (None, Some(_)) => true,
    }
}
