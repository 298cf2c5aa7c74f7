//! Usage errors: the command line asked for something that cannot be meant
//! (a missing or contradictory option, an unknown name). They exit 2, like
//! clap's own parse errors, so a script can tell "you called me wrong" from
//! "what you asked for failed" (exit 1). Every check that raises one runs
//! before the backing is opened, so a usage error never touches a device.

use std::fmt;

/// A usage error: the one-line message says what is wrong and what to give.
#[derive(Debug)]
pub struct Usage(String);

impl Usage {
    /// A usage error saying `message`.
    pub fn new(message: impl Into<String>) -> Usage {
        Usage(message.into())
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Return early with a [`Usage`] error.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err($crate::cli::usage::Usage::new(format!($($arg)*)).into())
    };
}
pub(crate) use usage;

/// Whether `err` (or any error behind it) is a usage error.
pub fn is_usage(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<Usage>())
}
