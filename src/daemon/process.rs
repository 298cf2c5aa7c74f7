//! Whether a server process still runs.
//!
//! `list`, `del` and `add` ask this about servers that are not our children
//! (they were started by another command, maybe long ago), so `waitpid` and
//! its exit status are not available: the only witness is `/proc`. A zombie
//! counts as gone — it serves no I/O, and its parent, not us, must reap it.

use std::time::{Duration, Instant};

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
pub fn process_gone(pid: i32) -> bool {
    if pid <= 0 {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Wait until process `pid` is gone, at most `timeout` (reporting progress
/// against the timeout, for a terminal).
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let what = format!("waiting for pid {pid} to exit");
    let start = Instant::now();
    let deadline = start + timeout;
    let gone = loop {
        if process_gone(pid) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        crate::progress::update(&what, millis(start.elapsed()), millis(timeout));
        std::thread::sleep(Duration::from_millis(20));
    };
    crate::progress::finish(&what);
    gone
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Ask the server `pid` to hand its device over to a successor (see
/// `ublk::control::HANDOVER_SIGNAL`): it flushes and exits, leaving the
/// device quiesced.
pub fn request_handover(pid: i32) -> std::io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    rustix::process::kill_process(pid, rustix::process::Signal::USR1).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_come_and_go() {
        assert!(!process_gone(
            i32::try_from(std::process::id()).expect("pid")
        ));
        assert!(process_gone(0));
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = i32::try_from(child.id()).expect("pid");
        assert!(
            wait_gone(pid, Duration::from_secs(5)),
            "zombie counts as gone"
        );
        child.wait().expect("reap");
        assert!(process_gone(pid));
    }
}
