//! Whether a server process still runs, and a server re-executing itself.
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

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;
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

/// Whether `pid` no longer serves as the server it was recorded as: it is
/// gone, or it is this very process — a server that re-executed itself
/// ([`reexec`]) and now recovers its own device.
pub fn server_gone(pid: i32) -> bool {
    is_this_process(pid) || process_gone(pid)
}

/// Whether `pid` is this process.
pub fn is_this_process(pid: i32) -> bool {
    i32::try_from(std::process::id()).is_ok_and(|me| me == pid)
}

/// The threads of process `pid` other than its leader, by id.
fn thread_ids(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or_else(
        |_| Vec::new(),
        |tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|task| task.file_name().to_str()?.parse().ok())
                .filter(|&tid| tid != pid)
                .collect()
        },
    )
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
    wait_until(&format!("waiting for pid {pid} to exit"), timeout, || {
        process_gone(pid)
    })
}

/// Poll `done` until it holds or `timeout` passes, reporting progress as
/// `what`; whether it held.
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let held = crate::retry::until(timeout, Duration::from_millis(20), |last| {
        if done() {
            return Some(true);
        }
        if last {
            return Some(false);
        }
        crate::progress::update(what, millis(start.elapsed()), millis(timeout));
        None
    });
    crate::progress::finish(what);
    held
}

/// Wait until the program that process `pid` runs now is gone, at most
/// `timeout`: the process exited, or it executed a new program ([`reexec`]),
/// which ends every thread but the leader — none of the threads it has now
/// remains, and with them went everything it held (its files close on exec).
pub fn wait_image_gone(pid: i32, timeout: Duration) -> bool {
    let before = thread_ids(pid);
    wait_until(
        &format!("waiting for pid {pid} to hand over"),
        timeout,
        || {
            let now = thread_ids(pid);
            process_gone(pid) || (!before.is_empty() && !before.iter().any(|t| now.contains(t)))
        },
    )
}

/// How this process was started: the program's path and the arguments.
static INVOCATION: OnceLock<(PathBuf, Vec<OsString>)> = OnceLock::new();

/// Remember how this process was started, for [`reexec`]: the program as
/// its caller named it (`argv[0]`: the unit's `ExecStart=` path, or a name
/// looked up in `PATH`), so that after an upgrade replaced that file the
/// new program runs (`/proc/self/exe` would still be the old one); a
/// relative path is made absolute now, while the working directory is the
/// caller's.
pub fn remember_invocation() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(invocation) = std::env::current_dir()
        .ok()
        .and_then(|cwd| invocation_of(args, &cwd))
    {
        let _ = INVOCATION.set(invocation);
    }
}

/// The program to execute for command line `args` started in `cwd`: a path
/// with a directory in it made absolute, a bare name left to `PATH`.
fn invocation_of(args: Vec<OsString>, cwd: &std::path::Path) -> Option<(PathBuf, Vec<OsString>)> {
    let arg0 = PathBuf::from(args.first()?);
    let exe = if arg0.is_relative() && arg0.components().count() > 1 {
        cwd.join(arg0)
    } else {
        arg0
    };
    Some((exe, args))
}

/// Replace this process's program with a fresh start of the same command
/// line, from the program file's path (the upgraded binary, after an
/// upgrade), keeping the pid and the environment. Returns only on failure.
pub fn reexec() -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let Some((exe, args)) = INVOCATION.get() else {
        return std::io::Error::other("the command line was not remembered");
    };
    let mut command = std::process::Command::new(exe);
    if let Some((arg0, rest)) = args.split_first() {
        command.arg0(arg0).args(rest);
    }
    command.exec()
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
    fn the_program_to_re_execute() {
        let cwd = std::path::Path::new("/srv/work");
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let exe = |v: &[&str]| invocation_of(args(v), cwd).map(|(exe, _)| exe);
        assert_eq!(
            exe(&["/usr/local/sbin/pmem-stack", "serve", "/dev/pmem0"]),
            Some(PathBuf::from("/usr/local/sbin/pmem-stack"))
        );
        assert_eq!(
            exe(&["target/release/pmem-stack", "serve"]),
            Some(PathBuf::from("/srv/work/target/release/pmem-stack"))
        );
        assert_eq!(exe(&["pmem-stack"]), Some(PathBuf::from("pmem-stack")));
        assert_eq!(exe(&[]), None);
        let (_, kept) = invocation_of(args(&["pmem-stack", "serve", "x"]), cwd).expect("some");
        assert_eq!(kept, args(&["pmem-stack", "serve", "x"]));
    }

    #[test]
    fn this_process_is_a_gone_server_to_itself() {
        assert!(server_gone(i32::try_from(std::process::id()).expect("pid")));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn");
        let pid = i32::try_from(child.id()).expect("pid");
        assert!(!server_gone(pid));
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert!(server_gone(pid));
    }

    #[test]
    fn an_image_is_gone_when_its_process_executes_another() {
        // A process with a second thread that then executes `sleep`: its pid
        // lives on, its threads do not.
        let script = "import os, threading, time\n\
                      threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n\
                      time.sleep(0.5)\n\
                      os.execv('/bin/sleep', ['sleep', '5'])";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .spawn()
            .expect("python3 (scripts/setup installs it)");
        let pid = i32::try_from(child.id()).expect("pid");
        let threaded =
            crate::retry::until(Duration::from_secs(5), Duration::from_millis(10), |last| {
                (!thread_ids(pid).is_empty() || last).then_some(!thread_ids(pid).is_empty())
            });
        assert!(threaded, "the child never had a second thread");
        assert!(
            wait_image_gone(pid, Duration::from_secs(10)),
            "the exec was not seen"
        );
        assert!(!process_gone(pid), "the pid lives on in the new program");
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert!(
            wait_image_gone(pid, Duration::from_secs(1)),
            "an exited process is gone"
        );
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
