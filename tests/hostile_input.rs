//! Hostile input: the CLI never panics (exit 101), never hangs, and answers
//! every odd backing and every damaged image with a one-line error or a
//! correct result — and a refusal leaves the backing as it was.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, digest, write_at};

const MIB: u64 = 1 << 20;
/// Longer than any command takes here; reaching it is a hang.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Run pmem-stack with a deadline: (exit code, stdout, stderr).
fn run_bounded(t: &Scratch, args: &[&OsStr]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pmem-stack"))
        .args(args)
        .env("PMEM_STACK_RUN_DIR", t.path("run"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pmem-stack");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("pmem-stack {args:?} hung for {} s", TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every command that takes a backing, the way a user would type it.
fn commands(backing: &Path) -> Vec<Vec<&OsStr>> {
    let b = backing.as_os_str();
    let o = OsStr::new;
    vec![
        vec![o("info"), b],
        vec![o("info"), b, o("--json")],
        vec![o("check"), b],
        vec![o("check"), b, o("--repair")],
        vec![o("format"), b, o("--reserve"), o("8M")],
        vec![
            o("format"),
            b,
            o("--reserve"),
            o("auto"),
            o("--mode"),
            o("os"),
        ],
        vec![o("add"), b, o("--reserve"), o("8M")],
        vec![o("map"), b, o("--reserve"), o("8M")],
        vec![o("reserved"), b, o("--json")],
        vec![o("reserve"), o("list"), b],
        vec![
            o("reserve"),
            o("split"),
            b,
            o("--owner"),
            o("xen=4K"),
            o("--owner"),
            o("dom0=rest"),
        ],
        vec![o("grow"), b],
    ]
}

/// The verdict on one run: no panic, and a failure says one line — except
/// `check` finding a problem, which reports it on stdout and exits 1.
fn judge(args: &[&OsStr], (code, out, err): &(i32, String, String)) {
    assert_ne!(*code, 101, "pmem-stack {args:?} panicked: {err}");
    assert!(*code >= 0, "pmem-stack {args:?} died by a signal: {err}");
    let check_report = *code == 1 && args[0] == "check" && err.is_empty() && !out.is_empty();
    if *code != 0 && !check_report {
        let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("warning:")).collect();
        assert_eq!(lines.len(), 1, "pmem-stack {args:?}: not one line: {err}");
        assert!(
            lines[0].starts_with("error: "),
            "pmem-stack {args:?}: {err}"
        );
    }
}

/// Every command on `backing`: no panic, no hang, one-line errors.
fn every_command(t: &Scratch, backing: &Path) {
    for args in commands(backing) {
        judge(&args, &run_bounded(t, &args));
    }
}

/// Every command on a backing the user may not change: all must fail and
/// leave it as it was.
fn every_command_refused(t: &Scratch, backing: &Path) {
    for args in commands(backing) {
        let result = run_bounded(t, &args);
        judge(&args, &result);
        assert_ne!(result.0, 0, "pmem-stack {args:?} should have failed");
    }
}

#[test]
fn odd_backings_get_one_line_errors() {
    let t = Scratch::new();
    let dir = t.path("a-directory");
    std::fs::create_dir(&dir).expect("dir");
    let fifo = t.path("a-fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success(), "mkfifo");
    let looped = t.path("loop-a");
    std::os::unix::fs::symlink(t.path("loop-b"), &looped).expect("symlink");
    std::os::unix::fs::symlink(&looped, t.path("loop-b")).expect("symlink");
    let empty = t.image("empty.img", 0);
    let tiny = t.image("tiny.img", 12287);
    for backing in [
        dir.as_path(),
        fifo.as_path(),
        Path::new("/dev/null"),
        Path::new("/dev/zero"),
        looped.as_path(),
        empty.as_path(),
        tiny.as_path(),
        Path::new("/nonexistent/pmem0"),
    ] {
        every_command_refused(&t, backing);
    }
    assert_eq!(std::fs::metadata(&empty).expect("empty").len(), 0);
    assert_eq!(std::fs::metadata(&tiny).expect("tiny").len(), 12287);
}

#[test]
fn a_path_that_is_not_utf8_works() {
    let t = Scratch::new();
    let name = PathBuf::from(OsStr::from_bytes(b"pmem-\xff\xfe.img"));
    let img = t.dir.path().join(name);
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(64 * MIB))
        .expect("create");
    every_command(&t, &img);
    let (code, out, err) = run_bounded(&t, &[OsStr::new("info"), img.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pmem-"), "the path is shown: {out}");
}

#[test]
fn an_immutable_file_is_refused_unchanged() {
    let t = Scratch::new();
    let img = t.image("immutable.img", 64 * MIB);
    let status = Command::new("chattr")
        .arg("+i")
        .arg(&img)
        .status()
        .expect("chattr");
    assert!(
        status.success(),
        "chattr +i: this test needs an ext4/xfs scratch directory"
    );
    let before = digest(&img);
    for args in commands(&img).into_iter().filter(|a| {
        ["format", "add", "map", "grow", "reserve"]
            .iter()
            .any(|c| a[0] == *c)
    }) {
        let result = run_bounded(&t, &args);
        judge(&args, &result);
        assert_ne!(result.0, 0, "pmem-stack {args:?} wrote an immutable file");
    }
    assert_eq!(digest(&img), before);
    let status = Command::new("chattr")
        .arg("-i")
        .arg(&img)
        .status()
        .expect("chattr");
    assert!(status.success());
}

#[test]
fn a_backing_near_two_to_the_63_is_handled() {
    // tmpfs takes sparse files up to 2^63 - 1 bytes.
    let dir = tempfile::tempdir_in("/dev/shm").expect("/dev/shm is a tmpfs on Linux");
    let t = Scratch::new();
    let img = dir.path().join("huge.img");
    let size = (1u64 << 63) - MIB;
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(size))
        .expect("a sparse file near 2^63 on tmpfs");
    every_command(&t, &img);
    for reserve in ["0", "auto"] {
        let (code, out, err) = run_bounded(
            &t,
            &[
                OsStr::new("format"),
                img.as_os_str(),
                OsStr::new("--reserve"),
                OsStr::new(reserve),
                OsStr::new("--force"),
                OsStr::new("--json"),
            ],
        );
        assert_eq!(code, 0, "format --reserve {reserve} of 2^63 bytes: {err}");
        assert!(out.contains("\"data_size\""), "{out}");
    }
    let (code, _, err) = run_bounded(&t, &[OsStr::new("check"), img.as_os_str()]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn damaged_and_truncated_images_never_panic() {
    let t = Scratch::new();
    let size = 16 * MIB;
    let img = t.image("pmem.img", size);
    let (code, _, err) = run_bounded(
        &t,
        &[
            OsStr::new("format"),
            img.as_os_str(),
            OsStr::new("--reserve"),
            OsStr::new("4M"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let pristine = std::fs::read(&img).expect("read");
    let copies = [4096u64, size - 4096];
    // Every header byte of either copy, and every 64th byte of the rest.
    let positions = copies.iter().flat_map(|&copy| {
        (0..0xA0u64)
            .chain((0xA0..4096).step_by(64))
            .map(move |at| copy + at)
    });
    for at in positions {
        std::fs::write(&img, &pristine).expect("restore");
        let byte = pristine[usize::try_from(at).expect("small")];
        write_at(&img, at, &[byte ^ 0xA5]);
        for args in [
            vec![OsStr::new("info"), img.as_os_str(), OsStr::new("--json")],
            vec![OsStr::new("check"), img.as_os_str(), OsStr::new("--repair")],
        ] {
            judge(&args, &run_bounded(&t, &args));
        }
    }
    for len in [0, 100, 4096, 8192, 8193, 12288, size / 2, size - 1] {
        std::fs::write(&img, &pristine[..usize::try_from(len).expect("small")]).expect("truncate");
        every_command(&t, &img);
    }
}
