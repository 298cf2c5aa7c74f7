//! How a queue thread's io_uring is set up.
//!
//! libublk makes each queue thread's ring when the queue is made, with
//! `COOP_TASKRUN`: the kernel runs the task work that delivers ublk's
//! commands to the server at the thread's next transition into the kernel,
//! without interrupting it. `DEFER_TASKRUN` (with `SINGLE_ISSUER`, Linux
//! 6.1+, so every kernel pmem-stack serves on) goes further: that work waits
//! until the thread asks for completions (`io_uring_enter` with GETEVENTS,
//! which is how the queue loop waits) and then runs as one batch, and the
//! ring skips the locking that several submitters would need. A user-copy
//! server makes other syscalls between waits (its `pread`/`pwrite` on
//! `/dev/ublkcN`, the `O_DIRECT` writes), and with `COOP_TASKRUN` each of
//! those transitions may run queued task work in the middle of a batch.
//!
//! Which one serves pmem-stack better is measured, not assumed: the setup is
//! chosen per server by `PMEM_STACK_RING` (`coop`, libublk's own, or
//! `defer`; read by [`crate::ublk::tuning`]), so one benchmark boot can run
//! both side by side (bench/README.md, "Ring setup").

use std::cell::RefCell;

use io_uring::IoUring;
use libublk::io::UblkDev;
use libublk::{UblkError, ublk_init_task_ring};

/// A queue ring's task-work mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RingSetup {
    /// `COOP_TASKRUN`: libublk's default.
    #[default]
    Coop,
    /// `SINGLE_ISSUER | DEFER_TASKRUN`.
    Defer,
}

impl RingSetup {
    /// The setup `PMEM_STACK_RING=value` names; `Err` says what is wrong.
    pub fn parse(value: &str) -> Result<RingSetup, String> {
        match value {
            "" | "coop" => Ok(RingSetup::Coop),
            "defer" => Ok(RingSetup::Defer),
            other => Err(format!(
                "PMEM_STACK_RING={other} is not a ring setup (coop or defer)"
            )),
        }
    }

    /// Its name, as `PMEM_STACK_RING` spells it.
    pub fn name(self) -> &'static str {
        match self {
            RingSetup::Coop => "coop",
            RingSetup::Defer => "defer",
        }
    }
}

/// Make this thread's queue ring the way `setup` says, before libublk's
/// `UblkQueue::new` would make its default one (it keeps a ring it finds).
/// The sizes are libublk's: the target's submission and completion depths.
pub fn prepare(dev: &UblkDev, setup: RingSetup) -> Result<(), UblkError> {
    if setup == RingSetup::Coop {
        return Ok(());
    }
    let sq = u32::from(dev.tgt.sq_depth);
    let cq = u32::from(dev.tgt.cq_depth);
    ublk_init_task_ring(|cell| {
        if cell.get().is_none() {
            let ring = IoUring::builder()
                .setup_cqsize(cq)
                .setup_single_issuer()
                .setup_defer_taskrun()
                .build(sq)
                .map_err(UblkError::IOError)?;
            cell.set(RefCell::new(ring))
                .map_err(|_| UblkError::OtherError(-libc::EEXIST))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_strangers_are_refused() {
        for setup in [RingSetup::Coop, RingSetup::Defer] {
            assert_eq!(RingSetup::parse(setup.name()), Ok(setup));
        }
        assert_eq!(RingSetup::parse(""), Ok(RingSetup::Coop));
        let err = RingSetup::parse("sqpoll").expect_err("unknown");
        assert!(err.contains("PMEM_STACK_RING=sqpoll"), "{err}");
    }

    #[test]
    fn a_deferred_ring_is_made_on_this_thread() {
        // Linux 6.1+ (every kernel pmem-stack supports): the setup flags
        // are accepted; on an older host kernel this fails loudly.
        let ring = IoUring::<io_uring::squeue::Entry>::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(8);
        assert!(ring.is_ok(), "DEFER_TASKRUN ring: {:?}", ring.err());
    }
}
