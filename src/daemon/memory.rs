//! The server when memory runs short.
//!
//! When memory runs short the kernel frees it by writing dirty pages back,
//! and every page of a file system on `/dev/ublkbN` is written back through
//! this process. Two ways that goes wrong, and what guards each:
//!
//! * **The OOM killer picks the server.** Its resident size can look large (the
//!   pages of the backing it has mapped count), so it may be the victim —
//!   and once it is gone every I/O to the device waits for a `recover` that
//!   may never come, the file system stops, and the memory held by its dirty
//!   pages is never freed. The server lowers its own `oom_score_adj` to
//!   [`OOM_SCORE_ADJ`], the value the systemd unit sets (`OOMScoreAdjust=`),
//!   so it is protected the same way however it was started. Not -1000:
//!   a server that leaks must still be killable as the last resort. A lower
//!   value someone set already is kept.
//! * **The server's own allocations wait on its own writeback.** An
//!   allocation that enters direct reclaim may write back dirty pages of
//!   `/dev/ublkbN` and wait for them — for the server, which is the one
//!   waiting. `PR_SET_IO_FLUSHER` (Linux 5.6) is the kernel's mark for "this
//!   process is part of the I/O path": its allocations do not start I/O
//!   (`PF_MEMALLOC_NOIO`) and it is throttled on its own device's dirty pages
//!   only (`PF_LOCAL_THROTTLE`), as the kernel does for its loop and nbd
//!   paths. Threads inherit it, so it is set before the queues start.
//!
//! Both need `CAP_SYS_RESOURCE` (root has it). Without it the server runs
//! anyway and says what it could not do.

/// The server's `oom_score_adj` (the systemd unit's `OOMScoreAdjust=`).
const OOM_SCORE_ADJ: i32 = -900;

/// Make this process fit to serve writeback under memory pressure: lower its
/// OOM score and mark it an I/O flusher. Call before any thread starts.
/// Returns what could not be done, one line each, for the log.
pub fn serve_under_memory_pressure() -> Vec<String> {
    let mut missed = Vec::new();
    if let Err(err) = lower_oom_score() {
        missed.push(format!(
            "could not set oom_score_adj to {OOM_SCORE_ADJ} ({err}): the OOM killer may pick this server"
        ));
    }
    if let Err(err) = rustix::process::configure_io_flusher_behavior(true) {
        missed.push(format!(
            "could not mark the server an I/O flusher (PR_SET_IO_FLUSHER: {err}): under memory pressure its own allocations may wait on its device's writeback"
        ));
    }
    missed
}

fn lower_oom_score() -> std::io::Result<()> {
    const PATH: &str = "/proc/self/oom_score_adj";
    match new_oom_score(&std::fs::read_to_string(PATH)?) {
        Some(adj) => std::fs::write(PATH, adj.to_string()),
        None => Ok(()),
    }
}

/// The `oom_score_adj` to write over `now` (the file's text), if any: ours,
/// unless `now` protects the server as much already.
fn new_oom_score(now: &str) -> Option<i32> {
    match now.trim().parse::<i32>() {
        Ok(adj) if adj <= OOM_SCORE_ADJ => None,
        _ => Some(OOM_SCORE_ADJ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_the_score_and_keeps_a_lower_one() {
        assert_eq!(new_oom_score("0\n"), Some(-900));
        assert_eq!(new_oom_score("500"), Some(-900));
        assert_eq!(new_oom_score("-899"), Some(-900));
        assert_eq!(new_oom_score("-900\n"), None);
        assert_eq!(new_oom_score("-1000"), None);
        assert_eq!(new_oom_score("what"), Some(-900));
    }

    #[test]
    fn the_unit_protects_the_server_as_much() {
        let unit = include_str!("../../dist/pmem-stack@.service.in");
        assert!(unit.contains(&format!("\nOOMScoreAdjust={OOM_SCORE_ADJ}\n")));
    }
}
