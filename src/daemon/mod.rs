//! Running the server in the background and telling the caller how it went.
//!
//! libublk does not daemonize, and its known failure is a start-up handshake
//! that hangs when the server dies before reporting. So starting a server
//! takes three things, each in its own module because each fails in its own
//! way and is tested on its own:
//!
//! * `handshake`: the fork and the pipe over which the child reports
//!   `ADDED <id>`, then `LIVE <id>` or `ERROR <reason>`. The parent always
//!   learns something — a report, end-of-file when the child dies, or its own
//!   timeout — and in every failure case it knows which device to clean up.
//!   Its wire format, and how the parent adds up what it has read, are in
//!   `report`, testable without a fork.
//! * `mount_ns`: the server's private mount namespace, without copies of
//!   mounts of ublk devices (a server holding a mount of its own device
//!   deadlocks on exit, libublk-rs#51).
//! * `process`: whether a server (any pid, not only our child) still runs,
//!   read from `/proc`; a supervised server re-executing itself to hand over.
//! * `memory`: what a server that the kernel's writeback goes through needs
//!   when memory runs short (a low OOM score, `PR_SET_IO_FLUSHER`).
//!
//! The rest of the crate uses only the re-exports below.

mod handshake;
mod memory;
mod mount_ns;
mod process;
mod report;

pub use handshake::{Forked, Handshake, Reporter, fork_server};
pub use memory::serve_under_memory_pressure;
pub use mount_ns::private_mount_namespace;
pub use process::{
    is_this_process, process_gone, reexec, remember_invocation, request_handover, server_gone,
    wait_gone, wait_image_gone,
};
pub use report::StartOutcome;
