//! The guest suite's run lock (`tests/run_lock`), on the host: a second run
//! is refused with the holder's pid and what to do; a lock whose run is gone
//! is taken over; a lock is released when its run ends.

mod run_lock;

use run_lock::RunLock;

fn lock_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".lock");
    name.into()
}

#[test]
fn a_second_run_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("suite");
    let first = RunLock::take(&dir, "").expect("the first run takes it");
    let text = std::fs::read_to_string(lock_file(&dir)).expect("lock file");
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
    assert!(!lock_file(&dir).exists(), "released when the run ends");
    let _again = RunLock::take(&dir, "").expect("free again");
}

#[test]
fn a_lock_left_by_a_run_that_is_gone_is_taken_over() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("scratch");
    // A process that is no suite (sleep) holding the pid in the lock: as if
    // the suite's pid had been reused after it was killed.
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    std::fs::write(lock_file(&dir), format!("{}\n", other.id())).expect("stale lock");
    let taken = RunLock::take(&dir, "");
    other.kill().expect("kill sleep");
    other.wait().expect("reap sleep");
    let taken = taken.expect("a lock whose pid is no suite is stale");
    let text = std::fs::read_to_string(lock_file(&dir)).expect("lock file");
    assert_eq!(text.trim(), std::process::id().to_string());
    // A pid that is no process at all, and a lock with no pid in it.
    drop(taken);
    for stale in ["4194303\n", "", "garbage"] {
        std::fs::write(lock_file(&dir), stale).expect("stale lock");
        let lock = RunLock::take(&dir, "").expect("stale lock taken over");
        drop(lock);
    }
}
