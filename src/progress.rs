//! How far long work has got, for whoever watches.
//!
//! A few operations take time proportional to the backing — scanning it for
//! a lost backup copy, zeroing, waiting for a device node — and a person at
//! a terminal should see them move, while a script or a log must not get a
//! stream of carriage returns. The library only *reports*; the CLI installs
//! a sink when (and only when) stderr is a terminal. Without a sink, reports
//! cost a relaxed load.

use std::sync::OnceLock;

/// Receives progress reports.
pub trait Sink: Send + Sync {
    /// `what` has done `done` of `total` units (bytes, usually).
    fn update(&self, what: &str, done: u64, total: u64);
    /// `what` is over (clear the line).
    fn finish(&self, what: &str);
}

static SINK: OnceLock<Box<dyn Sink>> = OnceLock::new();

/// Install the process's sink (the first one wins).
pub fn install(sink: Box<dyn Sink>) {
    let _ = SINK.set(sink);
}

/// Report progress of `what`.
pub fn update(what: &str, done: u64, total: u64) {
    if let Some(sink) = SINK.get() {
        sink.update(what, done, total);
    }
}

/// `what` is over.
pub fn finish(what: &str) {
    if let Some(sink) = SINK.get() {
        sink.finish(what);
    }
}
