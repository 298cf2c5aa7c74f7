//! A one-line progress indicator on a terminal's stderr: `what: 37%`,
//! redrawn in place at most ten times a second and erased when the work is
//! over. Installed only when stderr is a terminal, so scripts and logs never
//! see it.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pmem_stack::progress::{self, Sink};

/// Redraws at most this often.
const INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct ProgressLine {
    last: Mutex<Option<Instant>>,
}

impl Sink for ProgressLine {
    fn update(&self, what: &str, done: u64, total: u64) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        let percent = u128::from(done) * 100 / u128::from(total.max(1));
        let _ = write!(std::io::stderr(), "\r{what}: {percent}%");
    }

    fn finish(&self, _what: &str) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.take().is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

/// Show progress on stderr when it is a terminal.
pub fn install_if_terminal() {
    if std::io::stderr().is_terminal() {
        progress::install(Box::new(ProgressLine::default()));
    }
}
