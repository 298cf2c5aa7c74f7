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
//!
//! A process that is being killed is neither: `kill -9 PID; pmem-stack
//! recover N` asks while the server's threads are still on their way out
//! (a fast exec wins that race). Such a process — `SIGKILL` pending, or
//! its leader already in `do_exit` — is waited for, briefly, so that it
//! counts as gone once it is, instead of as a server that still runs.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a process that is being killed may take to finish exiting
/// before it counts as running after all (a queue thread cancels its
/// io_uring commands on the way out; that takes milliseconds).
pub const EXIT_WAIT: Duration = Duration::from_secs(10);

/// Where a process stands, as `/proc` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Running (or stopped, or asleep): it may serve.
    Running,
    /// Killed or exiting, some of its threads still there.
    Exiting,
    /// Gone, or a zombie whose threads have all exited.
    Gone,
}

/// Where process `pid` stands.
fn life(pid: i32) -> Life {
    if pid <= 0 {
        return Life::Gone;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Life::Gone;
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    life_of(&stat, &status, other_threads(pid))
}

/// Where a process stands, from its leader's `/proc/PID/stat` and
/// `/proc/PID/status` and how many other threads it has.
fn life_of(stat: &str, status: &str, other_threads: usize) -> Life {
    if exited(stat) {
        return if other_threads == 0 {
            Life::Gone
        } else {
            Life::Exiting
        };
    }
    if task_flags(stat).is_some_and(|flags| flags & PF_EXITING != 0) || sigkill_pending(status) {
        Life::Exiting
    } else {
        Life::Running
    }
}

/// The kernel's `PF_EXITING` task flag: the task is in `do_exit`.
const PF_EXITING: u64 = 0x4;

/// The task flags of a `/proc/PID/stat` line (its ninth field).
fn task_flags(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(6)?.parse().ok()
}

/// Whether a `/proc/PID/status` shows `SIGKILL` pending for the thread or
/// its whole group (`SigPnd`, `ShdPnd`: hexadecimal masks, bit 8 is
/// signal 9).
fn sigkill_pending(status: &str) -> bool {
    const SIGKILL_BIT: u64 = 1 << 8;
    status.lines().any(|line| {
        ["SigPnd:", "ShdPnd:"].iter().any(|key| {
            line.strip_prefix(key)
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
                .is_some_and(|mask| mask & SIGKILL_BIT != 0)
        })
    })
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet whose
/// threads have all exited). A process that is being killed is waited for,
/// at most [`EXIT_WAIT`].
pub fn process_gone(pid: i32) -> bool {
    match life(pid) {
        Life::Gone => true,
        Life::Running => false,
        Life::Exiting => wait_until(
            &format!("waiting for pid {pid} to finish exiting"),
            EXIT_WAIT,
            || life(pid) == Life::Gone,
        ),
    }
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
        life(pid) == Life::Gone
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
            life(pid) == Life::Gone
                || (!before.is_empty() && !before.iter().any(|t| now.contains(t)))
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

    /// Lines in proc(5)'s format for: a server asleep (its flags those of a
    /// forked, randomized task), the same after `kill -9` (SIGKILL pending
    /// for the thread or the group), its leader in `do_exit` (`PF_EXITING`),
    /// and a zombie leader with and without threads left.
    #[test]
    fn a_killed_process_is_exiting_not_running() {
        let stat = |state: &str, flags: u32| {
            format!(
                "267 (pmem-stack (x)) {state} 1 267 267 0 -1 {flags} 5012 0 0 0 12 40 0 0 20 0 3 0 911 1"
            )
        };
        let status = |sigpnd: &str, shdpnd: &str| {
            format!(
                "Name:\tpmem-stack\nState:\tS (sleeping)\nSigQ:\t0/7643\nSigPnd:\t{sigpnd}\nShdPnd:\t{shdpnd}\nSigBlk:\t0000000000000000\n"
            )
        };
        let quiet = status("0000000000000000", "0000000000000000");
        let killed = status("0000000000000100", "0000000000000000");
        let group_killed = status("0000000000000000", "0000000000000100");
        let other_signal = status("0000000000004000", "0000000000000002");
        assert_eq!(task_flags(&stat("S", 4_194_560)), Some(4_194_560));
        assert_eq!(life_of(&stat("S", 4_194_560), &quiet, 2), Life::Running);
        assert_eq!(
            life_of(&stat("S", 4_194_560), &other_signal, 2),
            Life::Running
        );
        assert_eq!(life_of(&stat("S", 4_194_560), &killed, 2), Life::Exiting);
        assert_eq!(
            life_of(&stat("R", 4_194_560), &group_killed, 2),
            Life::Exiting
        );
        assert_eq!(life_of(&stat("D", 4_194_564), &quiet, 2), Life::Exiting);
        assert_eq!(life_of(&stat("Z", 4_194_564), &quiet, 1), Life::Exiting);
        assert_eq!(life_of(&stat("Z", 4_194_564), &quiet, 0), Life::Gone);
        assert_eq!(life_of(&stat("X", 0), "", 0), Life::Gone);
    }

    /// Asked right after `kill -9`, as `recover` is: gone, not running,
    /// whether the child was still exiting or already a zombie. (The window
    /// is too short to hold open on purpose here; the guest suite hits it
    /// with a real server: `tests/guest/iopaths.sh` runs `kill -9` and
    /// `recover` back to back.)
    #[test]
    fn a_killed_child_is_gone_once_it_has_exited() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn");
        let pid = i32::try_from(child.id()).expect("pid");
        assert_eq!(life(pid), Life::Running);
        assert!(!process_gone(pid));
        child.kill().expect("kill -9");
        assert!(process_gone(pid), "killed: gone once exited (a zombie)");
        child.wait().expect("reap");
        assert_eq!(life(pid), Life::Gone);
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
