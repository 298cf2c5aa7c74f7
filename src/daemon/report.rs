//! The handshake's wire format, and what the reports read so far add up to.
//!
//! The child writes one line per [`Report`]; the parent re-reads everything
//! it has received and turns it into a [`Heard`], then into a
//! [`StartOutcome`] once the child has given its verdict or closed its end.
//! Both sides are the same binary (a fork), so the format is private and
//! unversioned. It is kept apart from the fork and the pipe so that it can be
//! tested without either.

use std::fmt;

/// How a server start ended, seen from the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The device is live.
    Live { id: u32 },
    /// The server reported an error.
    Failed {
        id: Option<u32>,
        reason: String,
        /// The name of the way out, if the server knew one.
        remedy: Option<String>,
    },
    /// The server exited without a report.
    Died { id: Option<u32> },
    /// No report in time; the server was killed.
    TimedOut { id: Option<u32> },
}

/// One line the server sends over the handshake pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Report {
    /// `ADDED <id>`: the kernel has added (or handed back) device `id`.
    Added(u32),
    /// `LIVE <id>`: device `id` serves I/O.
    Live(u32),
    /// `REMEDY <name>`: the way out of the error that follows.
    Remedy(String),
    /// `ERROR <reason>`: the server cannot start.
    Error(String),
}

impl fmt::Display for Report {
    /// The report as one line, without its newline: a newline in an error's
    /// reason becomes a space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Added(id) => write!(f, "ADDED {id}"),
            Report::Live(id) => write!(f, "LIVE {id}"),
            Report::Remedy(name) => write!(f, "REMEDY {}", name.replace('\n', " ")),
            Report::Error(reason) => write!(f, "ERROR {}", reason.replace('\n', " ")),
        }
    }
}

impl Report {
    /// Parse one line; `None` for anything that is not a report.
    fn parse(line: &str) -> Option<Report> {
        if let Some(id) = line.strip_prefix("ADDED ") {
            id.trim().parse().ok().map(Report::Added)
        } else if let Some(id) = line.strip_prefix("LIVE ") {
            id.trim().parse().ok().map(Report::Live)
        } else if let Some(name) = line.strip_prefix("REMEDY ") {
            Some(Report::Remedy(name.trim().to_string()))
        } else {
            let reason = line.strip_prefix("ERROR ")?;
            Some(Report::Error(reason.to_string()))
        }
    }
}

/// What the reports received so far add up to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Heard {
    /// The device, as last named by `ADDED` or `LIVE`.
    pub id: Option<u32>,
    /// `LIVE` has arrived.
    pub live: bool,
    /// The reason of the last `ERROR`, if one arrived.
    pub error: Option<String>,
    /// The last `REMEDY`, if one arrived.
    pub remedy: Option<String>,
}

impl Heard {
    /// Add up the reports in `text`, everything read from the pipe so far.
    pub fn read(text: &str) -> Heard {
        let mut progress = Heard::default();
        for report in text.lines().filter_map(Report::parse) {
            match report {
                Report::Added(id) => progress.id = Some(id),
                Report::Live(id) => {
                    progress.id = Some(id);
                    progress.live = true;
                }
                Report::Remedy(name) => progress.remedy = Some(name),
                Report::Error(reason) => progress.error = Some(reason),
            }
        }
        progress
    }

    /// The server's verdict, once it has given one: live (which wins over an
    /// error) or failed.
    pub fn verdict(&self) -> Option<StartOutcome> {
        match (self.live, self.id, &self.error) {
            (true, Some(id), _) => Some(StartOutcome::Live { id }),
            (_, id, Some(reason)) => Some(StartOutcome::Failed {
                id,
                reason: reason.clone(),
                remedy: self.remedy.clone(),
            }),
            _ => None,
        }
    }

    /// The outcome once the server has closed its end: its verdict, or that
    /// it died without one.
    pub fn at_end(&self) -> StartOutcome {
        self.verdict().unwrap_or(StartOutcome::Died { id: self.id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(id: Option<u32>, live: bool, error: Option<&str>) -> Heard {
        Heard {
            id,
            live,
            error: error.map(str::to_string),
            remedy: None,
        }
    }

    #[test]
    fn reports_add_up() {
        assert_eq!(Heard::read(""), progress(None, false, None));
        assert_eq!(Heard::read("ADDED 3\n"), progress(Some(3), false, None));
        assert_eq!(
            Heard::read("ADDED 3\nLIVE 3\n"),
            progress(Some(3), true, None)
        );
        assert_eq!(
            Heard::read("ADDED 3\nERROR no space\n"),
            progress(Some(3), false, Some("no space"))
        );
        // A partial line is not a report yet.
        assert_eq!(Heard::read("ADDED 1\nLIV"), progress(Some(1), false, None));
        // Neither is a line that is not one of ours.
        assert_eq!(
            Heard::read("ADDED 1\nADDED x\nLIVE\nhello\n"),
            progress(Some(1), false, None)
        );
    }

    #[test]
    fn reports_round_trip() {
        for report in [
            Report::Added(0),
            Report::Live(u32::MAX),
            Report::Error("no space left".to_string()),
        ] {
            assert_eq!(Report::parse(&report.to_string()), Some(report));
        }
        // A reason spanning lines still makes one report.
        let text = format!("{}\n", Report::Error("a\nb".to_string()));
        assert_eq!(text, "ERROR a b\n");
        assert_eq!(Heard::read(&text).error.as_deref(), Some("a b"));
    }

    #[test]
    fn verdicts() {
        assert_eq!(Heard::read("ADDED 2\n").verdict(), None);
        assert_eq!(
            Heard::read("ADDED 2\nLIVE 2\n").verdict(),
            Some(StartOutcome::Live { id: 2 })
        );
        assert_eq!(
            Heard::read("ADDED 2\nERROR bad\n").verdict(),
            Some(StartOutcome::Failed {
                id: Some(2),
                reason: "bad".to_string(),
                remedy: None,
            })
        );
        assert_eq!(
            Heard::read("ERROR early\n").verdict(),
            Some(StartOutcome::Failed {
                id: None,
                reason: "early".to_string(),
                remedy: None,
            })
        );
        // Live wins over an error in the same read.
        assert_eq!(
            Heard::read("LIVE 2\nERROR late\n").verdict(),
            Some(StartOutcome::Live { id: 2 })
        );
    }

    #[test]
    fn a_remedy_travels_with_the_error() {
        let text = format!(
            "{}\n{}\n",
            Report::Remedy("OtherDeviceId".into()),
            Report::Error("device id 0 is already taken".into())
        );
        assert_eq!(
            Heard::read(&text).verdict(),
            Some(StartOutcome::Failed {
                id: None,
                reason: "device id 0 is already taken".to_string(),
                remedy: Some("OtherDeviceId".to_string()),
            })
        );
    }

    #[test]
    fn outcomes_at_end_of_file() {
        assert_eq!(Heard::read("").at_end(), StartOutcome::Died { id: None });
        assert_eq!(
            Heard::read("ADDED 7\n").at_end(),
            StartOutcome::Died { id: Some(7) }
        );
        assert_eq!(
            Heard::read("ADDED 7\nLIVE 7").at_end(),
            StartOutcome::Live { id: 7 }
        );
        assert_eq!(
            Heard::read("ADDED 7\nERROR gone").at_end(),
            StartOutcome::Failed {
                id: Some(7),
                reason: "gone".to_string(),
                remedy: None,
            }
        );
    }
}
