//! pmem-stack: a stacked pseudo device on a persistent-memory namespace.
//!
//! The layers, bottom up — each only uses the ones before it:
//!
//! 0. [`units`]: the sector, page and huge-page sizes (plain constants);
//!    [`retry`]: trying again until an answer or a deadline.
//! 1. [`format`]: the on-media super block and layout rules (pure; the
//!    `no_std` crate `pmem-stack-format` in `format/`, re-exported).
//! 2. [`layout`]: planning a layout from what the user asks for (pure; the
//!    format crate's planner, worded for the CLI).
//! 3. [`backing`]: opening the namespace, device or file; the mapping and how
//!    to make it durable (owns the mapping's `unsafe`).
//! 4. [`metadata`]: reading, checking, writing and repairing the two copies.
//!    [`update`]: changing a volume in place (`reserve split`, `grow`).
//! 5. [`engine`]: the I/O engine, pure logic over a mapping.
//! 6. [`ublk`]: the glue to the kernel's ublk driver (control vs data plane).
//! 7. [`server`]: a server's life cycle — format on first use, record, go
//!    live, stop durably — with [`daemon`] (fork and handshake) and
//!    [`registry`] (records of served devices).
//!    [`dm`] is the other way to serve a data area: a device-mapper linear
//!    device the kernel serves itself (uses [`backing`] and [`format`]).
//! 8. the CLI in `main.rs` and `cli/`: arguments, messages, exit codes.

pub mod backing;
pub mod daemon;
pub mod dm;
pub mod engine;
pub mod format;
pub mod layout;
pub mod metadata;
pub mod notify;
pub mod progress;
pub mod registry;
pub mod remedy;
pub mod retry;
pub mod server;
pub mod size;
pub mod ublk;
pub mod units;
pub mod update;
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
