//! `scan`: what every backing on the machine holds. It answers "where are my
//! volumes?" on a machine one does not know (or after namespaces were
//! reconfigured), before anything is formatted or served: every
//! `/dev/pmem*` and `/dev/dax*` device, plus the files and devices given,
//! each with its pmem-stack volume (and the device serving it), or
//! "blank", someone else's data, or why it cannot be read.
//!
//! It only looks: each backing is opened read-only and shared (never
//! exclusively, so it runs beside live servers and holds nobody up), and
//! nothing is written. It stays quick on a large blank backing because the
//! search for a lost backup copy skips a sparse image's holes.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use pmem_stack::backing::{Access, Backing, BackingKind};
use pmem_stack::format::superblock::VERSION_MAJOR;
use pmem_stack::format::{ReserveMode, SuperBlock};
use pmem_stack::metadata::{self, Metadata, MetadataError};
use pmem_stack::registry::Registry;
use pmem_stack::size::Human;

use super::args::ScanArgs;
use super::render::ServedKind;
use super::{print_json, served_by};

/// Where the devices are.
const DEV: &str = "/dev";

/// What a backing holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum State {
    /// A pmem-stack volume with a valid super block copy.
    Volume,
    /// Nothing recognisable: free to format.
    Blank,
    /// Someone else's data (named in `foreign`).
    Foreign,
    /// pmem-stack super blocks, none of them usable (see `error`).
    Damaged,
    /// A pmem-stack volume of a newer format than this binary reads.
    Unsupported,
    /// It could not be opened or read (see `error`).
    Unreadable,
}

/// One backing in `scan --json`.
#[derive(Debug, Serialize)]
struct ScanJson {
    path: String,
    /// `block`, `dax` or `file`; null when it could not be opened.
    kind: Option<BackingKind>,
    size: Option<u64>,
    state: State,
    uuid: Option<String>,
    format_version: Option<String>,
    /// Both copies valid and agreeing, and the volume fits the backing.
    healthy: Option<bool>,
    mode: Option<ReserveMode>,
    data_size: Option<u64>,
    reserve_size: Option<u64>,
    /// `/dev/ublkbN` or `/dev/mapper/NAME` when the volume is served.
    served_by: Option<String>,
    served_kind: Option<ServedKind>,
    /// What was found instead of a volume, for `foreign`.
    foreign: Vec<String>,
    /// Why, for `damaged`, `unsupported` and `unreadable`.
    error: Option<String>,
}

impl ScanJson {
    fn new(path: &Path, state: State) -> ScanJson {
        ScanJson {
            path: path.display().to_string(),
            kind: None,
            size: None,
            state,
            uuid: None,
            format_version: None,
            healthy: None,
            mode: None,
            data_size: None,
            reserve_size: None,
            served_by: None,
            served_kind: None,
            foreign: Vec::new(),
            error: None,
        }
    }

    /// `why`, without the path it starts with (the row already names it).
    fn failed(path: &Path, state: State, why: &str) -> ScanJson {
        let prefix = format!("{}: ", path.display());
        ScanJson {
            error: Some(why.strip_prefix(&prefix).unwrap_or(why).to_string()),
            ..ScanJson::new(path, state)
        }
    }
}

/// `pmem0` < `pmem2` < `pmem10`: names compared with their digit runs as
/// numbers.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let key = |s| {
        chunks(s)
            .into_iter()
            .map(|(digits, text)| {
                let number = if digits {
                    text.trim_start_matches('0').len()
                } else {
                    0
                };
                (number, text)
            })
            .collect::<Vec<_>>()
    };
    key(a).cmp(&key(b))
}

/// Every `/dev/pmem*` block device and `/dev/dax*` character device, in
/// natural order (partitions and sector-mode devices included: scan what
/// exists).
fn devices() -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut names: Vec<String> = std::fs::read_dir(DEV)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                return false;
            };
            let kind = meta.file_type();
            (name.starts_with("pmem") && kind.is_block_device())
                || (name.starts_with("dax") && kind.is_char_device())
        })
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort_by(|a, b| natural_cmp(a, b));
    names.into_iter().map(|n| Path::new(DEV).join(n)).collect()
}

/// What `path` holds, reading only.
fn look(path: &Path, registry: &Registry) -> ScanJson {
    let backing = match Backing::open(path, Access::ReadOnly) {
        Ok(backing) => backing,
        Err(err) => return ScanJson::failed(path, State::Unreadable, &err.to_string()),
    };
    let mut found = match metadata::read(&backing) {
        Ok(m) => match m.current {
            Some(sb) => volume(path, &backing, &sb, &m, registry),
            None if m.has_any_copy() => {
                let why = m
                    .require_current()
                    .err()
                    .map_or_else(|| "no valid copy".to_string(), |e| e.to_string());
                ScanJson::failed(path, State::Damaged, &why)
            }
            None => not_ours(path, &backing),
        },
        Err(err @ MetadataError::Unsupported { .. }) => {
            ScanJson::failed(path, State::Unsupported, &err.to_string())
        }
        Err(err) => ScanJson::failed(path, State::Unreadable, &err.to_string()),
    };
    found.kind = Some(backing.kind());
    found.size = Some(backing.size());
    found
}

/// A backing with a valid super block copy.
fn volume(
    path: &Path,
    backing: &Backing,
    sb: &SuperBlock,
    m: &Metadata,
    registry: &Registry,
) -> ScanJson {
    let g = &sb.geometry;
    let fits = metadata::check_fits(g, backing.size()).is_ok();
    let served = served_by(registry, backing);
    ScanJson {
        uuid: Some(sb.uuid.to_string()),
        format_version: Some(format!("{VERSION_MAJOR}.{}", sb.version_minor)),
        healthy: Some(m.is_healthy() && fits),
        mode: Some(g.mode()),
        data_size: Some(g.data_size()),
        reserve_size: Some(g.reserve_size()),
        served_kind: served.as_ref().map(|s| s.kind),
        served_by: served.map(|s| s.device),
        ..ScanJson::new(path, State::Volume)
    }
}

/// A backing without our magic: blank, or someone else's.
fn not_ours(path: &Path, backing: &Backing) -> ScanJson {
    match metadata::probe_foreign(backing) {
        Ok(found) if found.is_empty() => ScanJson::new(path, State::Blank),
        Ok(found) => ScanJson {
            foreign: found.iter().map(ToString::to_string).collect(),
            ..ScanJson::new(path, State::Foreign)
        },
        Err(err) => ScanJson::failed(path, State::Unreadable, &err.to_string()),
    }
}

/// The last column of the text table.
fn describe(s: &ScanJson) -> String {
    let why = s.error.as_deref().unwrap_or("unknown");
    match s.state {
        State::Blank => "blank".to_string(),
        State::Foreign => format!("foreign ({})", s.foreign.join(", ")),
        State::Damaged => format!("damaged pmem-stack volume: {why}"),
        State::Unsupported => format!("pmem-stack volume of a newer format: {why}"),
        State::Unreadable => format!("not readable: {why}"),
        State::Volume => {
            let mut out = format!(
                "pmem-stack volume {}, uuid {}, {}",
                s.format_version.as_deref().unwrap_or("?"),
                s.uuid.as_deref().unwrap_or("?"),
                if s.healthy == Some(true) {
                    "healthy"
                } else {
                    "NOT healthy ('pmem-stack check' says why)"
                }
            );
            if let (Some(data), Some(reserve)) = (s.data_size, s.reserve_size) {
                let _ = write!(out, ", data {}, reserve {}", Human(data), Human(reserve));
            }
            if let Some(mode) = s.mode {
                let _ = write!(out, " ({mode})");
            }
            match &s.served_by {
                Some(device) => {
                    let _ = write!(out, ", served by {device}");
                }
                None => out.push_str(", not served"),
            }
            out
        }
    }
}

/// The text table: one line per backing.
fn print_table(found: &[ScanJson]) {
    let width = found
        .iter()
        .map(|s| s.path.chars().count())
        .chain(std::iter::once("BACKING".len()))
        .max()
        .unwrap_or_default();
    println!(
        "{:<width$}  {:<5}  {:>10}  CONTENT",
        "BACKING", "KIND", "SIZE"
    );
    for s in found {
        let kind = match s.kind {
            Some(BackingKind::Block) => "block",
            Some(BackingKind::Dax) => "dax",
            Some(BackingKind::File) => "file",
            None => "-",
        };
        let size = s
            .size
            .map_or_else(|| "-".to_string(), |n| Human(n).to_string());
        println!("{:<width$}  {kind:<5}  {size:>10}  {}", s.path, describe(s));
    }
}

/// `scan [PATH…]`: exit 1 when a PATH given cannot be read (a device found
/// in /dev that cannot be is only reported).
pub fn scan(args: &ScanArgs) -> Result<ExitCode> {
    let registry = Registry::system();
    // Each backing, and whether it was given on the command line.
    let mut paths: Vec<(PathBuf, bool)> = devices().into_iter().map(|p| (p, false)).collect();
    for given in &args.paths {
        // A path given that names a device already listed is shown once.
        let canonical = std::fs::canonicalize(given).ok();
        match paths
            .iter_mut()
            .find(|(p, _)| canonical.as_ref() == Some(p))
        {
            Some((_, was_given)) => *was_given = true,
            None => paths.push((given.clone(), true)),
        }
    }
    let found: Vec<ScanJson> = paths.iter().map(|(p, _)| look(p, &registry)).collect();
    let failed = paths
        .iter()
        .zip(&found)
        .any(|((_, given), s)| *given && s.state == State::Unreadable);
    if args.json {
        print_json(&found)?;
    } else if found.is_empty() {
        println!(
            "no /dev/pmem* or /dev/dax* devices on this machine (give image files or devices to look at them)"
        );
    } else {
        print_table(&found);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_sort_by_number() {
        let mut names = vec![
            "pmem10", "pmem2", "dax1.0", "pmem0p1", "pmem0", "dax0.10", "dax0.2",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "dax0.2", "dax0.10", "dax1.0", "pmem0", "pmem0p1", "pmem2", "pmem10"
            ]
        );
    }
}
