//! pmem-stack: a stacked pseudo device on a persistent-memory namespace.
//!
//! The layers, bottom up. A module uses only modules of its own layer or of
//! the layers before it, and no two files import each other, directly or
//! round a loop (`tests/architecture.rs` reads the sources and checks both,
//! and that this list names every module, each in one layer):
//!
//! 0. Helpers that use nothing else of the crate:
//!    - [`units`]: the sector, page and huge-page sizes;
//!    - [`size`]: sizes as users type and read them;
//!    - [`retry`]: trying again until an answer or a deadline;
//!    - [`progress`]: progress of long scans, for whoever shows it;
//!    - [`remedy`]: the ways out of an error, named (each error knows its own);
//!    - [`notify`]: the service manager's readiness protocol (`sd_notify`).
//! 1. The on-media format:
//!    - [`format`]: the super block and layout rules (pure; the `no_std`
//!      crate `pmem-stack-format` in `format/`, re-exported).
//! 2. Planning a layout:
//!    - [`layout`]: a layout from what the user asks for (the format crate's
//!      planner, worded for the CLI).
//! 3. The backing:
//!    - [`backing`]: opening the namespace, device or file; the mapping and
//!      how to make it durable; the `O_DIRECT` handle (owns the `unsafe`).
//! 4. The volume on a backing:
//!    - [`metadata`]: reading, checking, writing and repairing the two copies;
//!    - [`volume`]: what `format` and `add` will do, decided before writing
//!      (`volume::plan`), and changing a volume in place (`volume::amend`:
//!      `reserve split`, `grow`).
//! 5. The I/O engine:
//!    - [`engine`]: pure logic over a mapping, testable without a kernel.
//! 6. The kernel's ublk driver:
//!    - [`ublk`]: control plane, data planes, features, queue placement.
//! 7. A server's life and its neighbours:
//!    - [`registry`]: records of served devices under /run;
//!    - [`daemon`]: fork, handshake, the server's mount namespace;
//!    - [`server`]: format on first use, record, go live, stop durably;
//!    - [`recovery`]: the rules for re-attaching a server to a device whose
//!      server died, checked before anything starts;
//!    - [`dm`]: the other way to serve a data area, a device-mapper linear
//!      device the kernel serves itself.
//! 8. The CLI, in the binary (`main.rs` and `cli/`): arguments, messages,
//!    exit codes.
//!
//! Layers 3 to 8 and the crates they need (libublk, devicemapper, io-uring,
//! clap, ...) are the `server` feature, on by default. Without it the crate
//! is layers 0 to 2 alone, pure and quick to build: the fuzz targets link it
//! that way.

#[cfg(feature = "server")]
pub mod backing;
#[cfg(feature = "server")]
pub mod daemon;
#[cfg(feature = "server")]
pub mod dm;
#[cfg(feature = "server")]
pub mod engine;
pub mod format;
pub mod layout;
#[cfg(feature = "server")]
pub mod metadata;
pub mod notify;
pub mod progress;
#[cfg(feature = "server")]
pub mod recovery;
#[cfg(feature = "server")]
pub mod registry;
pub mod remedy;
pub mod retry;
#[cfg(feature = "server")]
pub mod server;
pub mod size;
#[cfg(feature = "server")]
pub mod ublk;
pub mod units;
#[cfg(feature = "server")]
pub mod volume;

/// An error and every error behind it, as one line: `outer: inner: root`.
/// For the places that show an error without `anyhow`'s `{:#}` (the server's
/// report to the starting command, log lines): messages here never repeat
/// their source, so the chain is how the whole story is told.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}
