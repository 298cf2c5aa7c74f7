//! The guest suite's run lock (`tests/run_lock`), on the host: a second run
//! is refused with the holder's pid and what to do; a lock is free again
//! when its holder ends, however it ends.

mod run_lock;

use std::process::{Command, Stdio};

use run_lock::{RunLock, lock_path};

#[test]
fn a_second_run_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("suite");
    let first = RunLock::take(&dir, "").expect("the first run takes it");
    let text = std::fs::read_to_string(lock_path(&dir)).expect("lock file");
    assert_eq!(text.trim(), std::process::id().to_string());
    let err = match RunLock::take(&dir, ", or do X") {
        Ok(_) => panic!("a second run while the first holds it"),
        Err(err) => err,
    };
    assert!(
        err.contains(&format!("pid {}", std::process::id())) && err.contains("wait for it to end"),
        "{err}"
    );
    assert!(err.ends_with(", or do X"), "{err}");
    drop(first);
    // Free again, though not always at once: the other test here spawns
    // processes, and a child forked while this lock was open holds its
    // descriptor until it execs (the descriptor is close-on-exec).
    let again = take_within_10s(&dir);
    assert!(again.is_some(), "free again once the first is dropped");
}

/// The lock of `dir` as soon as it is free, trying for at most 10 s.
fn take_within_10s(dir: &std::path::Path) -> Option<RunLock> {
    for _ in 0..200 {
        if let Ok(lock) = RunLock::take(dir, "") {
            return Some(lock);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

#[test]
fn a_lock_is_free_again_when_its_holder_is_killed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("scratch");
    // Another process holding the same kind of lock (util-linux flock(1)),
    // as a run that is then killed.
    let mut holder = Command::new("flock")
        .arg("--exclusive")
        .arg(lock_path(&dir))
        .args(["sleep", "60"])
        .stdout(Stdio::null())
        .spawn()
        .expect("flock(1) runs");
    // Wait until it holds the lock (at most 10 s).
    let mut refused = None;
    for _ in 0..200 {
        match RunLock::take(&dir, "") {
            Ok(lock) => drop(lock),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let refused = refused.expect("flock(1) took the lock within 10 s");
    assert!(
        refused.contains("another guest suite run (pid "),
        "{refused}"
    );
    // Killed: the kernel frees the lock (flock's child sleep may live on
    // alone; it holds the same descriptor, so end it too).
    Command::new("pkill")
        .args(["-P", &holder.id().to_string()])
        .status()
        .expect("pkill runs");
    holder.kill().expect("kill flock");
    holder.wait().expect("reap flock");
    let taken = take_within_10s(&dir);
    assert!(taken.is_some(), "the lock of a killed holder is free");
    let text = std::fs::read_to_string(lock_path(&dir)).expect("lock file");
    assert_eq!(text.trim(), std::process::id().to_string());
}
