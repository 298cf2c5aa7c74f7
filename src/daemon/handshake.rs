//! The fork and the start-up handshake between the starting command and its
//! server.
//!
//! libublk does not daemonize, and its known failure is a start-up handshake
//! that hangs when the server dies before reporting. Here the parent forks
//! (while it is still single-threaded) and reads a pipe whose only write end
//! the child holds. The child reports `ADDED <id>` as soon as the kernel has
//! the device, then `LIVE <id>` or `ERROR <reason>`. The parent therefore
//! always learns something: a report, end-of-file when the child dies (the
//! kernel closes the pipe), or its own timeout — and in every failure case it
//! knows which device id to clean up.
//!
//! The child also leaves the caller's world: a new session, `/` as working
//! directory (it must not pin a mount), stdin/stdout on `/dev/null`, stderr on
//! a log file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Signal, WaitOptions};

use super::report::{Heard, Report, StartOutcome};

/// The parent's end.
#[derive(Debug)]
pub struct Handshake {
    pipe: File,
    child: Pid,
}

/// The child's end.
#[derive(Debug)]
pub struct Reporter {
    pipe: Option<File>,
}

/// Result of forking.
#[derive(Debug)]
pub enum Forked {
    /// We are the caller.
    Parent(Handshake),
    /// We are the server.
    Child(Reporter),
}

/// Userspace threads of this process, from `/proc/self/task`. io_uring's
/// kernel workers (`iou-wrk-*`, `iou-sqp-*`) are listed there too once a ring
/// has run a blocking command (libublk's control ring does), but they run no
/// userspace code and hold no userspace lock, so they do not count.
fn thread_count() -> io::Result<usize> {
    let mut threads = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let comm = std::fs::read_to_string(task?.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("iou-") {
            threads += 1;
        }
    }
    Ok(threads)
}

/// Fork the server. Refuses (rather than risk a child that inherited locks
/// held by other threads) unless the process has a single thread.
pub fn fork_server() -> io::Result<Forked> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "cannot fork the server from a process with {threads} threads (a bug in pmem-stack)"
        )));
    }
    let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    let (read, write) = (File::from(read), File::from(write));
    // SAFETY: fork has no safe wrapper because, in a process with several
    // threads, the child gets only the calling thread and may inherit locks
    // (the allocator's, stdio's) held by the others forever; it could then
    // only call async-signal-safe functions. This function's contract is
    // that the process is single-threaded (checked just above: the CLI forks
    // before `run::serve` starts its signal and queue threads), so no lock can
    // be held by a thread that does not exist in the child, and both sides
    // may go on with ordinary Rust code. rustix offers only `kernel_fork`,
    // which skips libc's atfork handlers and so is unsound next to libc:
    // hence libc's fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    match Pid::from_raw(pid) {
        None => {
            drop(read);
            detach()?;
            Ok(Forked::Child(Reporter { pipe: Some(write) }))
        }
        Some(child) => {
            drop(write);
            Ok(Forked::Parent(Handshake { pipe: read, child }))
        }
    }
}

fn detach() -> io::Result<()> {
    // In a fresh child this cannot fail with EPERM: the child is never a
    // process group leader.
    rustix::process::setsid()?;
    std::env::set_current_dir("/")?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(&null)?;
    // Until the device has a log file, what the server has to say travels
    // over the pipe; nothing may land on the caller's terminal.
    rustix::stdio::dup2_stderr(&null)?;
    Ok(())
}

impl Reporter {
    fn send(&mut self, report: &Report) {
        if let Some(pipe) = self.pipe.as_mut() {
            // One write per line: a pipe write of at most PIPE_BUF bytes is
            // atomic, so the parent never reads half of a short report.
            if let Err(err) = pipe.write_all(format!("{report}\n").as_bytes()) {
                log::warn!("could not report to the starting command: {err}");
            }
        }
    }

    /// The kernel has added (or handed back) device `id`.
    pub fn added(&mut self, id: u32) {
        self.send(&Report::Added(id));
    }

    /// Device `id` serves I/O; the starting command may return.
    pub fn live(&mut self, id: u32) {
        self.send(&Report::Live(id));
        // Nothing more to say: close so the parent is never kept waiting.
        self.pipe = None;
    }

    /// The server cannot start; `remedy` names the way out, if any.
    pub fn failed(&mut self, reason: &str, remedy: Option<&str>) {
        if let Some(name) = remedy {
            self.send(&Report::Remedy(name.to_string()));
        }
        self.send(&Report::Error(reason.to_string()));
        self.pipe = None;
    }

    /// Send stderr (and so the log) to `log` from now on.
    pub fn log_to(&self, log: &File) -> io::Result<()> {
        if self.pipe.is_none() {
            return Ok(());
        }
        rustix::stdio::dup2_stderr(log)?;
        Ok(())
    }
}

impl Handshake {
    /// Pid of the server.
    pub fn child(&self) -> i32 {
        self.child.as_raw_pid()
    }

    /// Wait for the server's verdict, at most `timeout`. On timeout the server
    /// is killed; the caller removes any device it had added.
    pub fn wait(mut self, timeout: Duration) -> io::Result<StartOutcome> {
        let deadline = Instant::now() + timeout;
        let mut bytes = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            // While the pipe is open, only whole lines count: a report cut
            // at a read boundary ("LIVE 1" of "LIVE 12") is not one yet.
            let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let progress = Heard::read(&String::from_utf8_lossy(&bytes[..whole]));
            if let Some(outcome) = progress.verdict() {
                // A live server goes on; a failed one is on its way out.
                if !matches!(outcome, StartOutcome::Live { .. }) {
                    self.reap();
                }
                return Ok(outcome);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.kill();
                return Ok(StartOutcome::TimedOut { id: progress.id });
            }
            if !readable(&self.pipe, left)? {
                continue;
            }
            match self.pipe.read(&mut buf) {
                Ok(0) => {
                    self.reap();
                    // The server is gone: what it wrote last counts too.
                    return Ok(Heard::read(&String::from_utf8_lossy(&bytes)).at_end());
                }
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    fn kill(&self) {
        // Our child exists until we reap it (as a zombie if it has exited),
        // so there is no failure here worth reporting.
        let _ = rustix::process::kill_process(self.child, Signal::KILL);
        self.reap();
    }

    /// Collect the child, which has reported failure, closed its end or been
    /// killed. A child still tearing down after `REAP_GRACE` is killed: the
    /// starting command must never hang on it.
    fn reap(&self) {
        const REAP_GRACE: Duration = Duration::from_secs(30);
        crate::retry::until(REAP_GRACE, Duration::from_millis(20), |last| {
            let status = rustix::process::waitpid(Some(self.child), WaitOptions::NOHANG);
            if !matches!(status, Ok(None)) {
                return Some(()); // reaped, or not our child any more
            }
            if last {
                let _ = rustix::process::kill_process(self.child, Signal::KILL);
                // After SIGKILL the wait is short.
                let _ = rustix::process::waitpid(Some(self.child), WaitOptions::empty());
                return Some(());
            }
            None
        });
    }
}

/// Whether `pipe` has something to read (data or end-of-file) within `left`;
/// `false` on timeout or when a signal interrupted the wait.
fn readable(pipe: &File, left: Duration) -> io::Result<bool> {
    // A timeout too long for a timespec is no timeout at all.
    let timeout = Timespec::try_from(left).ok();
    let mut fds = [PollFd::new(pipe, PollFlags::IN)];
    match rustix::event::poll(&mut fds, timeout.as_ref()) {
        Ok(n) => Ok(n > 0),
        Err(Errno::INTR) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;
    use std::process::{Child, Command, Stdio};

    use super::*;
    use crate::daemon::process_gone;

    /// A handshake with `sh -c script` standing in for the forked server:
    /// what it prints is what the server reports.
    fn handshake(script: &str) -> (Handshake, Child) {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let stdout = child.stdout.take().expect("piped stdout");
        let handshake = Handshake {
            pipe: File::from(OwnedFd::from(stdout)),
            child: Pid::from_child(&child),
        };
        (handshake, child)
    }

    const PATIENCE: Duration = Duration::from_secs(10);

    #[test]
    fn fork_is_refused_in_a_threaded_process() {
        // The test harness runs tests on worker threads: this process has
        // more than one, so forking must be refused, not attempted.
        let helper = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(200)));
        assert!(thread_count().expect("count") > 1);
        let err = fork_server().expect_err("threaded");
        assert!(err.to_string().contains("threads"), "{err}");
        helper.join().expect("join");
    }

    #[test]
    fn live_server_is_left_running() {
        let (handshake, mut child) = handshake("echo ADDED 3; echo LIVE 3; exec sleep 10");
        assert_eq!(
            handshake.wait(PATIENCE).expect("wait"),
            StartOutcome::Live { id: 3 }
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "still serving"
        );
        child.kill().expect("kill");
        child.wait().expect("reap");
    }

    #[test]
    fn a_report_split_across_reads_is_read_whole() {
        // "LIVE 12" arrives as "LIVE 1" and "2\n": the id is 12, not 1.
        let (handshake, child) =
            handshake("printf 'ADDED 12\\nLIVE 1'; sleep 0.3; printf '2\\n'; sleep 5");
        assert_eq!(
            handshake.wait(PATIENCE).expect("wait"),
            StartOutcome::Live { id: 12 }
        );
        drop(child);
    }

    #[test]
    fn failed_server_is_reaped() {
        let (handshake, child) = handshake("echo ADDED 4; echo ERROR no space");
        let pid = handshake.child();
        assert_eq!(
            handshake.wait(PATIENCE).expect("wait"),
            StartOutcome::Failed {
                id: Some(4),
                reason: "no space".to_string(),
                remedy: None,
            }
        );
        drop(child);
        assert!(process_gone(pid));
    }

    #[test]
    fn silent_exit_is_a_death() {
        let (handshake, _child) = handshake("echo ADDED 5");
        assert_eq!(
            handshake.wait(PATIENCE).expect("wait"),
            StartOutcome::Died { id: Some(5) }
        );
    }

    #[test]
    fn slow_server_is_killed() {
        let (handshake, _child) = handshake("echo ADDED 6; exec sleep 30");
        let pid = handshake.child();
        let started = Instant::now();
        assert_eq!(
            handshake.wait(Duration::from_millis(300)).expect("wait"),
            StartOutcome::TimedOut { id: Some(6) }
        );
        assert!(started.elapsed() < PATIENCE);
        assert!(process_gone(pid), "killed and reaped");
    }

    #[test]
    fn reporter_writes_one_line_per_report_then_closes() {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).expect("pipe");
        let mut reporter = Reporter {
            pipe: Some(File::from(write)),
        };
        reporter.added(1);
        reporter.failed("bad\nnews", None);
        assert!(reporter.pipe.is_none());
        // Closed: nothing more goes out, and no error either.
        reporter.live(1);
        let mut text = String::new();
        File::from(read).read_to_string(&mut text).expect("read");
        assert_eq!(text, "ADDED 1\nERROR bad news\n");
        assert_eq!(
            Heard::read(&text).at_end(),
            StartOutcome::Failed {
                id: Some(1),
                reason: "bad news".to_string(),
                remedy: None,
            }
        );
    }
}
