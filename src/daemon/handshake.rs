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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// The parent's end.
#[derive(Debug)]
pub struct Handshake {
    pipe: File,
    child: libc::pid_t,
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

/// How a server start ended, seen from the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The device is live.
    Live { id: u32 },
    /// The server reported an error.
    Failed { id: Option<u32>, reason: String },
    /// The server exited without a report.
    Died { id: Option<u32> },
    /// No report in time; the server was killed.
    TimedOut { id: Option<u32> },
}

fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(read), File::from(write)))
}

/// Fork the server. Must be called while the process has a single thread.
pub fn fork_server() -> io::Result<Forked> {
    let (read, write) = pipe()?;
    // SAFETY: the caller guarantees a single-threaded process, so the child
    // cannot inherit a lock held by another thread; both sides continue with
    // ordinary Rust code.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read);
            detach()?;
            Ok(Forked::Child(Reporter { pipe: Some(write) }))
        }
        child => {
            drop(write);
            Ok(Forked::Parent(Handshake { pipe: read, child }))
        }
    }
}

fn redirect(fd: libc::c_int, file: &File) -> io::Result<()> {
    // SAFETY: dup2 between two open fds; `fd` is a standard stream number.
    if unsafe { libc::dup2(file.as_raw_fd(), fd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn detach() -> io::Result<()> {
    // SAFETY: setsid has no memory-safety preconditions; in a fresh child it
    // cannot fail with EPERM (the child is never a group leader).
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    redirect(libc::STDIN_FILENO, &null)?;
    redirect(libc::STDOUT_FILENO, &null)?;
    // Until the device has a log file, what the server has to say travels
    // over the pipe; nothing may land on the caller's terminal.
    redirect(libc::STDERR_FILENO, &null)?;
    Ok(())
}

impl Reporter {
    /// A reporter for a server running in the foreground (reports go nowhere;
    /// the caller prints the device itself).
    pub fn foreground() -> Reporter {
        Reporter { pipe: None }
    }

    fn send(&mut self, line: &str) {
        if let Some(pipe) = self.pipe.as_mut() {
            let one_line = line.replace('\n', " ");
            if let Err(err) = writeln!(pipe, "{one_line}") {
                log::warn!("could not report to the starting command: {err}");
            }
        }
    }

    /// The kernel has added (or handed back) device `id`.
    pub fn added(&mut self, id: u32) {
        self.send(&format!("ADDED {id}"));
    }

    /// Device `id` serves I/O; the starting command may return.
    pub fn live(&mut self, id: u32) {
        self.send(&format!("LIVE {id}"));
        // Nothing more to say: close so the parent is never kept waiting.
        self.pipe = None;
    }

    /// The server cannot start.
    pub fn failed(&mut self, reason: &str) {
        self.send(&format!("ERROR {reason}"));
        self.pipe = None;
    }

    /// Send stderr (and so the log) to `path` from now on.
    pub fn log_to(&self, path: &Path) -> io::Result<()> {
        if self.pipe.is_none() {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = OpenOptions::new().create(true).append(true).open(path)?;
        redirect(libc::STDERR_FILENO, &log)
    }
}

/// Parse the handshake lines read so far: (device id, live?, error).
fn parse_reports(text: &str) -> (Option<u32>, bool, Option<String>) {
    let mut id = None;
    let mut live = false;
    let mut error = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("ADDED ") {
            id = rest.trim().parse().ok().or(id);
        } else if let Some(rest) = line.strip_prefix("LIVE ") {
            id = rest.trim().parse().ok().or(id);
            live = true;
        } else if let Some(rest) = line.strip_prefix("ERROR ") {
            error = Some(rest.to_string());
        }
    }
    (id, live, error)
}

impl Handshake {
    /// Pid of the server.
    pub fn child(&self) -> libc::pid_t {
        self.child
    }

    /// Wait for the server's verdict, at most `timeout`. On timeout the server
    /// is killed; the caller removes any device it had added.
    pub fn wait(mut self, timeout: Duration) -> io::Result<StartOutcome> {
        let deadline = Instant::now() + timeout;
        let mut text = String::new();
        let mut buf = [0u8; 512];
        loop {
            let (id, live, error) = parse_reports(&text);
            if live {
                if let Some(id) = id {
                    return Ok(StartOutcome::Live { id });
                }
            }
            if let Some(reason) = error {
                self.reap();
                return Ok(StartOutcome::Failed { id, reason });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.kill();
                return Ok(StartOutcome::TimedOut { id });
            }
            let mut pfd = libc::pollfd {
                fd: self.pipe.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd, count 1.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if rc == 0 {
                continue;
            }
            match self.pipe.read(&mut buf) {
                Ok(0) => {
                    let (id, live, error) = parse_reports(&text);
                    self.reap();
                    return Ok(match (live, id, error) {
                        (true, Some(id), _) => StartOutcome::Live { id },
                        (_, id, Some(reason)) => StartOutcome::Failed { id, reason },
                        (_, id, None) => StartOutcome::Died { id },
                    });
                }
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    fn kill(&self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child, libc::SIGKILL) };
        self.reap();
    }

    /// Collect the child, which has reported failure, closed its end or been
    /// killed. A child still tearing down after `REAP_GRACE` is killed: the
    /// starting command must never hang on it.
    fn reap(&self) {
        const REAP_GRACE: Duration = Duration::from_secs(30);
        let deadline = Instant::now() + REAP_GRACE;
        loop {
            let mut status = 0;
            // SAFETY: polling our own child; `status` is a valid out pointer.
            let rc = unsafe { libc::waitpid(self.child, &mut status, libc::WNOHANG) };
            if rc != 0 {
                return; // reaped, or not our child any more
            }
            if Instant::now() >= deadline {
                // SAFETY: signalling our own child by pid.
                unsafe { libc::kill(self.child, libc::SIGKILL) };
                // SAFETY: as above; after SIGKILL the wait is short.
                unsafe { libc::waitpid(self.child, &mut status, 0) };
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        assert_eq!(parse_reports(""), (None, false, None));
        assert_eq!(parse_reports("ADDED 3\n"), (Some(3), false, None));
        assert_eq!(parse_reports("ADDED 3\nLIVE 3\n"), (Some(3), true, None));
        assert_eq!(
            parse_reports("ADDED 3\nERROR no space\n"),
            (Some(3), false, Some("no space".to_string()))
        );
        // A partial line is not a report yet.
        assert_eq!(parse_reports("ADDED 1\nLIV"), (Some(1), false, None));
    }
}
