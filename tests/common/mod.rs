//! Helpers for tests that run the `pmem-stack` binary on image files.

#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory with its own registry, so tests never touch /run.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A sparse image of `size` bytes.
    pub fn image(&self, name: &str, size: u64) -> PathBuf {
        let path = self.path(name);
        let file = fs::File::create(&path).expect("create image");
        file.set_len(size).expect("size image");
        path
    }

    /// Run pmem-stack with these arguments.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.run_with(&[], args)
    }

    /// Run pmem-stack with these arguments and these variables set.
    pub fn run_with<I, S>(&self, vars: &[(&str, &str)], args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let output = Command::new(env!("CARGO_BIN_EXE_pmem-stack"))
            .args(args)
            .env("PMEM_STACK_RUN_DIR", self.path("run"))
            .env_remove("RUST_LOG")
            .env_remove("PMEM_STACK_RING")
            .env_remove("PMEM_STACK_IO_THREADS")
            .envs(vars.iter().copied())
            .output()
            .expect("run pmem-stack");
        Run(output)
    }
}

/// A finished run.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().expect("exit code")
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout()))
    }
    /// Assert success and return self.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code(),
            0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self
    }
    /// Assert failure with `code`, a one-line error on stderr containing every
    /// fragment, and return self.
    pub fn fails(self, code: i32, fragments: &[&str]) -> Run {
        assert_eq!(
            self.code(),
            code,
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        let err = self.stderr();
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("warning:") && !l.starts_with("note:"))
            .collect();
        assert_eq!(lines.len(), 1, "expected a one-line error, got: {err:?}");
        assert!(lines[0].starts_with("error: "), "{err}");
        for fragment in fragments {
            assert!(err.contains(fragment), "{fragment:?} not in {err:?}");
        }
        self
    }
}

/// CRC32C of a whole file's content, with its length. Holes are hashed as the
/// zeros they read as, without reading them (images are large and sparse).
pub fn digest(path: &Path) -> (u64, u32) {
    use std::io::{Seek, SeekFrom};
    use std::os::fd::AsRawFd;
    let mut file = fs::File::open(path).expect("open for digest");
    let len = file.metadata().expect("stat").len();
    let zeros = vec![0u8; 1 << 20];
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = 0u32;
    let mut pos = 0u64;
    let fd = file.as_raw_fd();
    let seek = |whence: libc::c_int, from: u64| -> u64 {
        // SAFETY: lseek on an open fd.
        let r = unsafe { libc::lseek(fd, i64::try_from(from).expect("i64"), whence) };
        if r < 0 {
            len
        } else {
            u64::try_from(r).expect("u64")
        }
    };
    while pos < len {
        let data = seek(libc::SEEK_DATA, pos).min(len);
        while pos < data {
            let n = usize::try_from((data - pos).min(zeros.len() as u64)).expect("usize");
            crc = crc32c::crc32c_append(crc, &zeros[..n]);
            pos += n as u64;
        }
        let hole = seek(libc::SEEK_HOLE, pos).min(len);
        file.seek(SeekFrom::Start(pos)).expect("seek");
        while pos < hole {
            let n = usize::try_from((hole - pos).min(buf.len() as u64)).expect("usize");
            file.read_exact(&mut buf[..n]).expect("read for digest");
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            pos += n as u64;
        }
    }
    (len, crc)
}

/// Read `len` bytes at `offset`.
pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    fs::File::open(path)
        .expect("open")
        .read_exact_at(&mut buf, offset)
        .expect("read_at");
    buf
}

/// Write `data` at `offset`.
pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .write_all_at(data, offset)
        .expect("write_at");
}

/// Run an external tool the test depends on; a missing tool fails the test
/// (the project's setup script installs them), it never skips it.
pub fn tool(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is required (scripts/setup installs it): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fingerprint of a file's content that costs only what the file holds:
/// its length and CRC32C over (offset, bytes) of every 4 KiB block that is
/// not all zeros. Holes and blocks of zeros are skipped alike, so two files
/// have equal fingerprints exactly when (up to a CRC collision) every byte
/// is equal. [`digest`] reads holes as zeros, which on a multi-GiB sparse
/// image costs seconds in a debug build; this does not.
pub fn sparse_digest(path: &Path) -> (u64, u32) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    const BLOCK: u64 = 4096;
    let file = fs::File::open(path).expect("open for digest");
    let len = file.metadata().expect("stat").len();
    let fd = file.as_raw_fd();
    let seek = |whence: libc::c_int, from: u64| -> u64 {
        // SAFETY: lseek on an open fd; it changes nothing but the offset.
        let r = unsafe { libc::lseek(fd, i64::try_from(from).expect("i64"), whence) };
        u64::try_from(r).map_or(len, |r| r.min(len))
    };
    let mut buf = vec![0u8; usize::try_from(BLOCK).expect("usize")];
    let mut crc = 0u32;
    let mut pos = 0u64;
    while pos < len {
        let data = seek(libc::SEEK_DATA, pos) / BLOCK * BLOCK;
        if data >= len {
            break;
        }
        let hole = seek(libc::SEEK_HOLE, data);
        let mut at = data.max(pos);
        while at < hole {
            let n = usize::try_from(BLOCK.min(len - at)).expect("usize");
            file.read_exact_at(&mut buf[..n], at)
                .expect("read for digest");
            if buf[..n].iter().any(|&b| b != 0) {
                crc = crc32c::crc32c_append(crc, &at.to_le_bytes());
                crc = crc32c::crc32c_append(crc, &buf[..n]);
            }
            at += BLOCK;
        }
        pos = at.max(pos + BLOCK);
    }
    (len, crc)
}

/// Fail, naming the Debian package, when `tool` (which must answer
/// `--version`) is not installed: a test that needs it never skips.
pub fn require(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed: this test needs it ('apt-get install {package}'; scripts/setup installs it)"
    );
}
