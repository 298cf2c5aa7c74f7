//! Reading, checking, writing and repairing the two super block copies.
//!
//! Reading takes the newest valid copy (highest generation, the primary on a
//! tie) and judges the other against it: `ok` (identical), `stale` (valid but
//! different — older, or from a layout that a crash interrupted), `corrupt`
//! (our magic, but it fails validation) or `missing` (no magic).
//!
//! Writing is ordered so a crash at any instant leaves a valid copy that
//! describes a consistent layout: `format` writes the backup, makes it durable,
//! then the primary. Before the backup lands the old copies (or none) stand;
//! between the two writes the backup — with a higher generation than anything
//! it replaces — wins; after, both agree. A torn write fails its CRC and the
//! other copy stands. `repair` only ever rewrites a copy that is not `ok`, from
//! the newest valid one, so it never touches the copy it relies on.
//!
//! Nothing here writes before every check has passed: a refused or failed
//! command leaves the backing byte-for-byte unchanged.
//!
//! The rooms: this module holds what the three share — the I/O a backing
//! offers ([`MetadataIo`]), the reports and the errors; `read` finds and
//! judges the copies (the backup search included), `write` decides whether
//! a format may write and writes a new volume, each copy checked by the
//! reader's decoder first; `repair` rewrites a bad copy from the good one.

use std::ops::Range;
use std::os::unix::fs::MetadataExt;

use serde::Serialize;

use crate::backing::{Backing, BackingError, BackingKind, Identity};
use crate::format::signatures::Foreign;
use crate::format::superblock::VERSION_MINOR;
use crate::format::{DecodeError, Geometry, Slot, SuperBlock, Uuid};
use crate::remedy::{HasRemedy, Remedy};
use crate::size::Exact;

/// The block I/O the metadata layer needs; [`Backing`] is the real one, tests
/// use an in-memory image that can "crash" after a number of writes.
pub trait MetadataIo {
    /// Size of the medium in bytes.
    fn size(&self) -> u64;
    /// Read exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError>;
    /// Write `buf` at `offset`, durable when this returns.
    fn write_durable_at(&self, offset: u64, buf: &[u8]) -> Result<(), BackingError>;
    /// UUID of the NVDIMM namespace underneath, if any.
    fn namespace_uuid(&self) -> Option<Uuid>;
    /// The stretches of `[start, end)` that may hold data, ascending and
    /// disjoint, when the medium can tell: a sparse image's holes read as
    /// zeros, so no super block can be in one, and the backup search skips
    /// them instead of reading a blank multi-TiB image every 2 MiB. `None`
    /// (the default; devices) when it cannot: then all of it may.
    fn data_ranges(&self, start: u64, end: u64) -> Option<Vec<Range<u64>>> {
        let _ = (start, end);
        None
    }
}

impl MetadataIo for Backing {
    fn size(&self) -> u64 {
        Backing::size(self)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        Backing::read_at(self, offset, buf)
    }
    fn write_durable_at(&self, offset: u64, buf: &[u8]) -> Result<(), BackingError> {
        Backing::write_durable_at(self, offset, buf)
    }
    fn namespace_uuid(&self) -> Option<Uuid> {
        Backing::namespace_uuid(self)
    }
    fn data_ranges(&self, start: u64, end: u64) -> Option<Vec<Range<u64>>> {
        // Only a regular file has holes to ask about (a devdax device's
        // lseek ignores SEEK_DATA; a block device has none). The backing's
        // own descriptor is not exposed, so the path is opened again,
        // read-only, and used only if it is still the same file.
        if self.kind() != BackingKind::File {
            return None;
        }
        let file = std::fs::File::open(self.path()).ok()?;
        let meta = file.metadata().ok()?;
        let same = Identity::File {
            dev: meta.dev(),
            ino: meta.ino(),
        } == self.identity();
        if !same {
            return None;
        }
        data_ranges_of(&file, start, end)
    }
}

/// At most this many separate stretches are listed; the rest of the span
/// then counts as one (a badly fragmented image is read as before).
const MAX_DATA_RANGES: usize = 4096;

/// The data stretches of `file` in `[start, end)`, by `SEEK_DATA` and
/// `SEEK_HOLE`; `None` when the file system answers something that makes no
/// sense (then nothing is skipped). A file system without hole support
/// reports the whole file as data, which is right.
fn data_ranges_of(file: &std::fs::File, start: u64, end: u64) -> Option<Vec<Range<u64>>> {
    use rustix::fs::{SeekFrom, seek};
    let mut ranges = Vec::new();
    let mut pos = start;
    while pos < end {
        let data = match seek(file, SeekFrom::Data(pos)) {
            Ok(data) => data,
            // No data at or after `pos`.
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return None,
        };
        if data >= end {
            break;
        }
        if data < pos {
            return None;
        }
        let hole = seek(file, SeekFrom::Hole(data)).ok()?;
        if hole <= data {
            return None;
        }
        if ranges.len() == MAX_DATA_RANGES {
            ranges.push(data..end);
            break;
        }
        ranges.push(data..hole.min(end));
        pos = hole;
    }
    Some(ranges)
}

/// Health of one copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyState {
    /// Valid and identical to the newest copy.
    Ok,
    /// Carries our magic but fails validation.
    Corrupt,
    /// No pmem-stack super block there.
    Missing,
    /// Valid but not the newest (or differing at the same generation).
    Stale,
}

impl CopyState {
    /// The name used in messages and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            CopyState::Ok => "ok",
            CopyState::Corrupt => "corrupt",
            CopyState::Missing => "missing",
            CopyState::Stale => "stale",
        }
    }
}

/// What was found at one copy's location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// Which copy.
    pub slot: Slot,
    /// Where it was looked for; `None` for a backup on a backing too small
    /// to hold one (and no valid primary naming where it was).
    pub offset: Option<u64>,
    /// Its health.
    pub state: CopyState,
    /// Why it is not `ok`.
    pub problem: Option<CopyProblem>,
    /// The decoded copy, when valid.
    pub decoded: Option<SuperBlock>,
    /// For a corrupt copy: the layout it records, unverified (see
    /// `unverified_layout`), when its fields still obey the layout rules.
    pub recorded: Option<Geometry>,
}

/// Why a copy is not `ok`: what was found there, typed, so callers can tell
/// a checksum failure from a copy of another layout without reading text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CopyProblem {
    /// No pmem-stack magic at the copy's place (or no place for it).
    #[error("no pmem-stack super block")]
    NotFound,
    /// Our magic, but the block does not decode.
    #[error(transparent)]
    Invalid(DecodeError),
    /// Valid, but an older generation than the other copy.
    #[error("generation {generation} is older than the other copy's {current}")]
    Older { generation: u64, current: u64 },
    /// Valid, same generation, different contents.
    #[error("differs from the other copy")]
    Differs,
}

/// The state of the metadata on a backing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// The newest valid copy, which describes the volume.
    pub current: Option<SuperBlock>,
    /// The primary copy.
    pub primary: CopyReport,
    /// The backup copy.
    pub backup: CopyReport,
}

impl Metadata {
    /// The metadata of a volume just written as `sb` (both copies ok): what
    /// reading it back will find, for showing a layout not yet written.
    pub fn as_written(sb: &SuperBlock) -> Metadata {
        let report = |slot: Slot| CopyReport {
            slot,
            offset: Some(slot.offset(&sb.geometry)),
            state: CopyState::Ok,
            problem: None,
            decoded: Some(*sb),
            recorded: None,
        };
        Metadata {
            current: Some(*sb),
            primary: report(Slot::Primary),
            backup: report(Slot::Backup),
        }
    }

    /// Both copies valid and identical.
    pub fn is_healthy(&self) -> bool {
        self.primary.state == CopyState::Ok && self.backup.state == CopyState::Ok
    }

    /// Whether any pmem-stack super block (valid or not) is on the backing.
    pub fn has_any_copy(&self) -> bool {
        self.primary.state != CopyState::Missing || self.backup.state != CopyState::Missing
    }

    /// With no valid copy: when every copy that carries our magic is intact
    /// but records another place than where it was read — a copy of another
    /// layout, left behind when the namespace was resized or reconfigured
    /// (e.g. fsdax to devdax, which moves the device's start) — where the
    /// first one was found and where it says it belongs.
    pub fn other_layout(&self) -> Option<(u64, u64)> {
        if self.current.is_some() {
            return None;
        }
        let mut found = None;
        for report in [&self.primary, &self.backup] {
            match (&report.problem, report.offset) {
                (Some(CopyProblem::NotFound), _) => {}
                (
                    Some(CopyProblem::Invalid(DecodeError::WrongLocation { recorded, actual })),
                    Some(_),
                ) => {
                    found = found.or(Some((*actual, *recorded)));
                }
                _ => return None,
            }
        }
        found
    }

    /// The newest valid copy, or why there is none: `NotFormatted` when no
    /// copy carries our magic, `NoValidCopy` (naming both copies' states) when
    /// one does but none is valid. The one place that tells the two apart, for
    /// `open_volume`, `repair` and `check`.
    pub fn require_current(&self) -> Result<SuperBlock, MetadataError> {
        if let Some((found_at, recorded)) = self.other_layout() {
            return Err(MetadataError::OtherLayout { found_at, recorded });
        }
        match self.current {
            Some(current) => Ok(current),
            None if self.has_any_copy() => Err(MetadataError::NoValidCopy {
                primary: describe_copy(&self.primary),
                backup: describe_copy(&self.backup),
                recorded: self.primary.recorded.or(self.backup.recorded),
            }),
            None => Err(MetadataError::NotFormatted),
        }
    }

    /// The report for a slot.
    pub fn copy(&self, slot: Slot) -> &CopyReport {
        match slot {
            Slot::Primary => &self.primary,
            Slot::Backup => &self.backup,
        }
    }
}

/// Why a format was refused (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("it already holds a pmem-stack volume (uuid {uuid}, generation {generation})")]
    ExistingVolume { uuid: Uuid, generation: u64 },
    #[error("it holds a damaged pmem-stack super block ({detail})")]
    DamagedVolume { detail: String },
    #[error("it holds {}", list_foreign(.0))]
    Foreign(Vec<Foreign>),
    #[error(
        "it holds a pmem-stack super block copy of another layout at byte {found_at} (it records itself at byte {recorded}): the device was resized or reconfigured since that volume was formatted"
    )]
    OtherLayout { found_at: u64, recorded: u64 },
}

impl HasRemedy for Refusal {
    fn remedy(&self) -> Option<Remedy> {
        Some(match self {
            Refusal::ExistingVolume { .. } => Remedy::Reformat,
            Refusal::Foreign(_) => Remedy::Overwrite,
            Refusal::OtherLayout { .. } => Remedy::RestoreOrOverwrite,
            // Raised only when no copy is valid: nothing to repair from.
            Refusal::DamagedVolume { .. } => Remedy::StartOver,
        })
    }
}

/// What a damaged copy still records, for the message that says the volume
/// can only be written anew: with it, the new volume gets the same data area.
fn recorded_layout(recorded: &Option<Geometry>) -> String {
    match recorded {
        Some(g) => format!(
            "; a damaged copy still records (unverified) reserve {} bytes (mode {}), align {}, {}-byte blocks, data area at byte {} ({} bytes)",
            g.reserve_size(),
            g.mode(),
            g.align(),
            g.logical_block_size().bytes(),
            g.data_offset(),
            g.data_size()
        ),
        None => String::new(),
    }
}

fn list_foreign(found: &[Foreign]) -> String {
    let names: Vec<String> = found.iter().map(ToString::to_string).collect();
    names.join(" and ")
}

impl HasRemedy for MetadataError {
    fn remedy(&self) -> Option<Remedy> {
        match self {
            MetadataError::NotFormatted => Some(Remedy::Format),
            MetadataError::NoValidCopy { .. } => Some(Remedy::StartOver),
            MetadataError::OtherLayout { .. } => Some(Remedy::RestoreOrOverwrite),
            MetadataError::Shrunk { .. } => Some(Remedy::RestoreSize),
            MetadataError::Refused(refusal) => refusal.remedy(),
            _ => None,
        }
    }
}

/// Errors of the metadata layer.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error(transparent)]
    Backing(#[from] BackingError),
    #[error("the {} super block", .slot.name())]
    Unsupported {
        slot: Slot,
        #[source]
        source: DecodeError,
    },
    #[error("no pmem-stack super block found (not formatted)")]
    NotFormatted,
    #[error(
        "no volume of this device: its only pmem-stack super block copy, at byte {found_at}, belongs to another layout (it records itself at byte {recorded}); the device was resized or reconfigured since that volume was formatted"
    )]
    OtherLayout { found_at: u64, recorded: u64 },
    #[error(
        "no valid pmem-stack super block: primary {primary}, backup {backup}; nothing to repair from{}",
        recorded_layout(recorded)
    )]
    NoValidCopy {
        primary: String,
        backup: String,
        /// The layout a damaged copy still records (unverified).
        recorded: Option<Geometry>,
    },
    #[error(
        "the super block has format version 1.{minor}, newer than this pmem-stack writes (1.{VERSION_MINOR}); upgrade pmem-stack before repairing"
    )]
    NewerMinor { minor: u16 },
    #[error(
        "the backing is {} but the volume was formatted on {} and needs at least {}: its data area ends beyond the device (the namespace or file was shrunk)",
        Exact(*actual),
        Exact(*recorded),
        Exact(*needed)
    )]
    Shrunk {
        /// The device size the volume was formatted on.
        recorded: u64,
        /// The bytes the volume occupies (up to the end of its backup copy).
        needed: u64,
        /// The backing's size now.
        actual: u64,
    },
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("could not create a volume uuid")]
    Random(#[source] std::io::Error),
    #[error("repair wrote the {} copy but it does not read back as ok: {detail}", .slot.name())]
    RepairUnverified { slot: Slot, detail: String },
    /// The one rule of every writer: a super block the reader would reject
    /// is never written ([`verified_blocks`]). Reaching this is a bug in the
    /// writer's own checks, caught before the backing was touched.
    #[error(
        "refusing to write: the new {} copy would not read back ({detail}); nothing was written",
        .slot.name()
    )]
    WouldNotRead { slot: Slot, detail: String },
}

/// Whether a volume with `geometry` still fits a backing of `actual` bytes
/// (`Shrunk` if not): the one check behind `open_volume`, `repair` and the
/// reports of `info` and `check`.
pub fn check_fits(geometry: &Geometry, actual: u64) -> Result<(), MetadataError> {
    let needed = geometry.required_size();
    if actual < needed {
        return Err(MetadataError::Shrunk {
            recorded: geometry.device_size(),
            needed,
            actual,
        });
    }
    Ok(())
}

/// Human summary of a copy's state, e.g. `corrupt (checksum mismatch ...)`.
pub fn describe_copy(report: &CopyReport) -> String {
    match &report.problem {
        Some(problem) => format!("{} ({problem})", report.state.name()),
        None => report.state.name().to_string(),
    }
}

mod read;
mod repair;
mod write;

pub use read::{SCAN_LIMIT, open_volume, probe_foreign, read};
pub use repair::{RepairOutcome, repair};
pub use write::{
    check_format_allowed, new_volume, verified_blocks, write_new_volume, write_new_volume_with,
};

#[cfg(test)]
pub(crate) mod tests;
