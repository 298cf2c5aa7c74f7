//! Whether a server process still runs.
//!
//! `list`, `del` and `add` ask this about servers that are not our children
//! (they were started by another command, maybe long ago), so `waitpid` and
//! its exit status are not available: the only witness is `/proc`. A zombie
//! counts as gone — it serves no I/O, and its parent, not us, must reap it —
//! but only once its whole thread group has exited: a group leader turns
//! zombie while its other threads may still be exiting (a queue thread
//! cancelling its io_uring commands), and until the last one has, the process
//! still holds its files, among them the backing opened exclusively, which a
//! successor (`restart`, `recover`) must open next.

use std::time::{Duration, Instant};

/// Whether process `pid` is gone (or a zombie nobody reaped yet whose
/// threads have all exited).
pub fn process_gone(pid: i32) -> bool {
    if pid <= 0 {
        return true;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    exited(&stat) && other_threads(pid) == 0
}

/// Whether a `/proc/PID/stat` line shows a task that has exited (zombie or
/// dead). The state follows the parenthesised command name, which may itself
/// hold parentheses and spaces.
fn exited(stat: &str) -> bool {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

/// How many threads of process `pid` other than its leader are still listed
/// (an exiting thread is listed until it has released what it held).
fn other_threads(pid: i32) -> usize {
    let leader = pid.to_string();
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |tasks| {
        tasks
            .filter_map(Result::ok)
            .filter(|task| task.file_name().to_str() != Some(leader.as_str()))
            .count()
    })
}

/// Wait until process `pid` is gone, at most `timeout` (reporting progress
/// against the timeout, for a terminal).
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let what = format!("waiting for pid {pid} to exit");
    let start = Instant::now();
    let gone = crate::retry::until(timeout, Duration::from_millis(20), |last| {
        if process_gone(pid) {
            return Some(true);
        }
        if last {
            return Some(false);
        }
        crate::progress::update(&what, millis(start.elapsed()), millis(timeout));
        None
    });
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

    #[test]
    fn threads_besides_the_leader_are_counted() {
        let me = i32::try_from(std::process::id()).expect("pid");
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || stopped.recv());
        // At least the worker; the test harness runs threads of its own.
        assert!(other_threads(me) >= 1);
        drop(stop);
        worker
            .join()
            .expect("worker")
            .expect_err("stopped by the drop");
        assert_eq!(other_threads(0), 0, "no such process: no threads left");
    }

    #[test]
    fn stat_states() {
        assert!(exited("42 (pmem-stack) Z 1 42 42 0 -1"));
        assert!(exited("42 (pmem-stack) X 1 42 42 0 -1"));
        assert!(!exited("42 (pmem-stack) S 1 42 42 0 -1"));
        assert!(!exited("42 (pmem-stack) R 1 42 42 0 -1"));
        // A command name that looks like a state: the last ')' ends it.
        assert!(!exited("42 (a) Z (b) S 1 42 42 0 -1"));
        assert!(exited("42 (a) S (b) Z 1 42 42 0 -1"));
        assert!(!exited("garbage"));
    }
}
