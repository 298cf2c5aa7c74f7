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

use std::ops::Range;
use std::os::unix::fs::MetadataExt;

use serde::Serialize;

use crate::backing::{Backing, BackingError, BackingKind, Identity};
use crate::format::geometry::{METADATA_END, PRIMARY_OFFSET, SUPERBLOCK_SIZE, backup_offset_for};
use crate::format::signatures::{Foreign, PROBE_LEN, find_foreign};
use crate::format::superblock::{
    BLOCK_LEN, VERSION_MINOR, claimed_device_size, has_magic, unverified_layout,
};
use crate::format::{DecodeError, Geometry, Owners, Slot, SuperBlock, Uuid};
use crate::progress;
use crate::remedy::{HasRemedy, Remedy};
use crate::size::Exact;
use crate::units::PMD_SIZE;

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

/// Outcome of decoding the block at one location.
enum Found {
    /// Boxed: a super block with its owner table is about 1 KiB.
    Valid(Box<SuperBlock>),
    /// With the layout it records, unverified.
    Invalid(DecodeError, Option<Geometry>),
    Missing,
}

fn read_block<M: MetadataIo + ?Sized>(io: &M, offset: u64) -> Result<Found, BackingError> {
    if offset
        .checked_add(SUPERBLOCK_SIZE)
        .is_none_or(|end| end > io.size())
    {
        return Ok(Found::Missing);
    }
    let mut block = [0u8; BLOCK_LEN];
    io.read_at(offset, &mut block)?;
    if !has_magic(&block) {
        return Ok(Found::Missing);
    }
    Ok(match SuperBlock::decode(&block, offset) {
        Ok(sb) => Found::Valid(Box::new(sb)),
        Err(err) => Found::Invalid(err, unverified_layout(&block)),
    })
}
/// Where to look for the backup copy, and what is there (FORMAT.md §2,
/// "Finding the backup"):
///
/// 1. the last 4 KiB block of the backing (the normal case);
/// 2. if the primary is valid and records another place (the backing was
///    resized), that place;
/// 3. if the primary is damaged and nothing (no magic) is at the end: the
///    place its own, unverified `device_size` field implies — damage rarely
///    takes the whole block — validated in full there;
/// 4. then a scan down from the end: every 4 KiB block when the primary
///    carries our magic (a damaged volume is certainly there), every 2 MiB
///    boundary when it carries nothing (a cheap look, so that a grown volume
///    whose primary was wiped is not formatted over).
///
/// A copy found by 3 or 4 counts only if it is valid at exactly the place
/// its own layout puts the backup. No location at all (`None`) when the
/// backing is too small to hold a backup and no valid primary names one.
fn locate_backup<M: MetadataIo + ?Sized>(
    io: &M,
    primary: &Found,
) -> Result<(Option<u64>, Found), BackingError> {
    let here = backup_offset_for(io.size());
    let backup = match here {
        Some(offset) => read_block(io, offset)?,
        None => Found::Missing,
    };
    if let Found::Valid(sb) = primary {
        let recorded = sb.geometry.backup_offset();
        if matches!(backup, Found::Missing) && Some(recorded) != here {
            return Ok((Some(recorded), read_block(io, recorded)?));
        }
        return Ok((here.or(Some(recorded)), backup));
    }
    // A newer format's intact primary: nothing of ours to search for (read
    // reports it unsupported).
    let unsupported = matches!(primary, Found::Invalid(err, _) if err.is_unsupported());
    if matches!(backup, Found::Missing) && !unsupported {
        if let Some(found) = claimed_backup(io, claimed_size(io, primary)?, here)? {
            return Ok(found);
        }
        let step = match primary {
            Found::Invalid(..) => SUPERBLOCK_SIZE,
            _ => PMD_SIZE,
        };
        if let Some(found) = scan_for_backup(io, here, step)? {
            return Ok(found);
        }
    }
    Ok((here, backup))
}

/// The device size a damaged primary claims, if it carries our magic.
fn claimed_size<M: MetadataIo + ?Sized>(
    io: &M,
    primary: &Found,
) -> Result<Option<u64>, BackingError> {
    if !matches!(primary, Found::Invalid(..)) {
        return Ok(None);
    }
    let mut block = [0u8; BLOCK_LEN];
    io.read_at(PRIMARY_OFFSET, &mut block)?;
    Ok(claimed_device_size(&block))
}

/// A valid backup copy at exactly `offset`, the place its own layout puts it.
fn backup_at(found: Found, offset: u64) -> Option<(Option<u64>, Found)> {
    match &found {
        Found::Valid(sb) if sb.geometry.backup_offset() == offset => Some((Some(offset), found)),
        _ => None,
    }
}

/// Step 3 of [`locate_backup`]: where a damaged primary's size field says.
fn claimed_backup<M: MetadataIo + ?Sized>(
    io: &M,
    claimed: Option<u64>,
    here: Option<u64>,
) -> Result<Option<(Option<u64>, Found)>, BackingError> {
    let Some(size) = claimed else {
        return Ok(None);
    };
    let Some(offset) = Some(size)
        .filter(|&size| size < io.size())
        .and_then(backup_offset_for)
        .filter(|&offset| Some(offset) != here)
    else {
        return Ok(None);
    };
    Ok(backup_at(read_block(io, offset)?, offset))
}

/// What a scan for a lost backup copy reports as it goes.
const SCAN_WHAT: &str = "searching the backing for a backup super block";

/// How far below the current end a scan looks: a backing that grew by more
/// than this since it was formatted, and then lost its primary, is beyond
/// the search (FORMAT.md §2 says so). It keeps the scan of a blank multi-TiB
/// backing (every 2 MiB) to half a million reads, and a full 4 KiB scan to
/// at most 1 TiB read.
pub const SCAN_LIMIT: u64 = 1 << 40;

/// Step 4 of [`locate_backup`]: the last 4 KiB block of every `step`-aligned
/// end below the current one, from the top down (a grown volume's old end is
/// most likely near the new one). The scan ends at the first block with our
/// magic: the newest volume's backup is the highest one, and if that one is
/// damaged, an older volume's backup further down must not be taken for it
/// (repair would then write the old volume over the new one's primary).
///
/// Only blocks that may hold data are read: on a sparse image the holes
/// (which read as zeros) are skipped, so a blank 2 TiB image costs a few
/// `lseek`s instead of half a million reads; a grown volume's old backup is
/// data, so it is still found.
fn scan_for_backup<M: MetadataIo + ?Sized>(
    io: &M,
    here: Option<u64>,
    step: u64,
) -> Result<Option<(Option<u64>, Found)>, BackingError> {
    let total = io.size();
    let lowest_end = METADATA_END + SUPERBLOCK_SIZE;
    let top = total - total % step;
    let floor = total.saturating_sub(SCAN_LIMIT).max(lowest_end);
    if top < floor {
        return Ok(None);
    }
    // The blocks of the candidates span [floor - 4 KiB, top).
    let span = floor - SUPERBLOCK_SIZE..top;
    let ranges = io
        .data_ranges(span.start, span.end)
        .unwrap_or_else(|| vec![span.clone()]);
    let scan = Scan {
        here,
        step,
        floor,
        top,
    };
    let mut buf = vec![0u8; usize::try_from(scan.window()).expect("invariant: 1 MiB fits usize")];
    // Below the lowest end scanned so far: adjacent stretches can share a
    // candidate, which is read once.
    let mut below = top;
    for range in ranges.iter().rev() {
        // The ends whose block [end - 4 KiB, end) meets the stretch.
        let hi = range.end.saturating_add(SUPERBLOCK_SIZE - 1).min(below);
        let hi = hi - hi % step;
        let lo = range.start.saturating_add(1).max(floor);
        if hi < lo {
            continue;
        }
        if let Some(offset) = scan.first_magic(io, lo, hi, &mut buf)? {
            progress::finish(SCAN_WHAT);
            return Ok(backup_at(read_block(io, offset)?, offset));
        }
        match lo.checked_sub(1) {
            Some(next) => below = next,
            None => break,
        }
    }
    progress::finish(SCAN_WHAT);
    Ok(None)
}

/// One backup scan: candidate ends are the multiples of `step` in
/// `[floor, top]`, except the block at `here` (already looked at).
struct Scan {
    here: Option<u64>,
    step: u64,
    floor: u64,
    top: u64,
}

impl Scan {
    /// How much is read at once: 1 MiB when candidates are closer than
    /// that, else one block per candidate.
    fn window(&self) -> u64 {
        const WINDOW: u64 = 1 << 20;
        if self.step < WINDOW {
            WINDOW
        } else {
            SUPERBLOCK_SIZE
        }
    }

    /// The highest candidate end in `[lo, hi]` (`hi` a multiple of the
    /// step) whose block carries our magic: that block's offset.
    fn first_magic<M: MetadataIo + ?Sized>(
        &self,
        io: &M,
        lo: u64,
        hi: u64,
        buf: &mut [u8],
    ) -> Result<Option<u64>, BackingError> {
        let window = self.window();
        let mut top = hi;
        while top >= lo {
            // The window ends at `top`; every candidate end inside it has
            // its copy in the 4 KiB block before it.
            let start = top
                .saturating_sub(window)
                .max(lo.saturating_sub(SUPERBLOCK_SIZE));
            let len = usize::try_from(top - start).expect("invariant: at most 1 MiB");
            io.read_at(start, &mut buf[..len])?;
            let mut end = top;
            while end >= start + SUPERBLOCK_SIZE {
                let offset = end - SUPERBLOCK_SIZE;
                let at = usize::try_from(offset - start).expect("invariant: inside the window");
                if Some(offset) != self.here && has_magic(&buf[at..len]) {
                    return Ok(Some(offset));
                }
                match end.checked_sub(self.step) {
                    Some(lower) => end = lower,
                    None => return Ok(None),
                }
            }
            progress::update(
                SCAN_WHAT,
                self.top - start.max(self.floor),
                self.top - self.floor,
            );
            top = end;
        }
        Ok(None)
    }
}

/// Judge what was found at one copy's location against the newest valid copy.
fn judge(
    slot: Slot,
    offset: Option<u64>,
    found: &Found,
    current: Option<SuperBlock>,
) -> CopyReport {
    let recorded = match found {
        Found::Invalid(_, recorded) => *recorded,
        _ => None,
    };
    let (state, problem, decoded) = match found {
        Found::Missing => (CopyState::Missing, Some(CopyProblem::NotFound), None),
        Found::Invalid(err, _) => (
            CopyState::Corrupt,
            Some(CopyProblem::Invalid(err.clone())),
            None,
        ),
        Found::Valid(sb) => match current {
            Some(cur) if cur == **sb => (CopyState::Ok, None, Some(**sb)),
            Some(cur) if sb.generation < cur.generation => (
                CopyState::Stale,
                Some(CopyProblem::Older {
                    generation: sb.generation,
                    current: cur.generation,
                }),
                Some(**sb),
            ),
            _ => (CopyState::Stale, Some(CopyProblem::Differs), Some(**sb)),
        },
    };
    CopyReport {
        slot,
        offset,
        state,
        problem,
        decoded,
        recorded,
    }
}

/// Read and judge both copies.
pub fn read<M: MetadataIo + ?Sized>(io: &M) -> Result<Metadata, MetadataError> {
    let primary = read_block(io, PRIMARY_OFFSET)?;
    let (backup_offset, backup) = locate_backup(io, &primary)?;

    for (slot, found) in [(Slot::Primary, &primary), (Slot::Backup, &backup)] {
        if let Found::Invalid(err, _) = found
            && err.is_unsupported()
        {
            return Err(MetadataError::Unsupported {
                slot,
                source: err.clone(),
            });
        }
    }

    let current = match (&primary, &backup) {
        (Found::Valid(p), Found::Valid(b)) => Some(if b.generation > p.generation {
            **b
        } else {
            **p
        }),
        (Found::Valid(p), _) => Some(**p),
        (_, Found::Valid(b)) => Some(**b),
        _ => None,
    };

    // If the newest copy places the backup elsewhere than where we looked,
    // report against the location it records.
    let backup_report = match current {
        Some(cur) if Some(cur.geometry.backup_offset()) != backup_offset => {
            let offset = cur.geometry.backup_offset();
            let found = read_block(io, offset)?;
            judge(Slot::Backup, Some(offset), &found, current)
        }
        _ => judge(Slot::Backup, backup_offset, &backup, current),
    };

    Ok(Metadata {
        current,
        primary: judge(Slot::Primary, Some(PRIMARY_OFFSET), &primary, current),
        backup: backup_report,
    })
}

/// The volume on a backing, or why there is none usable. Also refuses a volume
/// whose data area no longer fits on the backing.
pub fn open_volume<M: MetadataIo + ?Sized>(
    io: &M,
) -> Result<(SuperBlock, Metadata), MetadataError> {
    let metadata = read(io)?;
    let current = metadata.require_current()?;
    check_fits(&current.geometry, io.size())?;
    Ok((current, metadata))
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

/// Read the first bytes of the backing for the foreign-signature probe.
pub fn probe_foreign<M: MetadataIo + ?Sized>(io: &M) -> Result<Vec<Foreign>, BackingError> {
    // The probe window, or the whole backing when it is smaller (a size that
    // does not fit a usize is certainly larger).
    let len = usize::try_from(io.size()).map_or(PROBE_LEN, |size| size.min(PROBE_LEN));
    let mut head = vec![0u8; len];
    io.read_at(0, &mut head)?;
    Ok(find_foreign(&head))
}

/// Everything `format` checks before writing; `Ok` means writing is allowed.
///
/// Returns the generation the new volume must carry: above any copy already
/// there, so that a crash between the two writes of a re-format lets the new
/// backup win over the old primary.
pub fn check_format_allowed<M: MetadataIo + ?Sized>(
    io: &M,
    force: bool,
) -> Result<u64, MetadataError> {
    let metadata = match read(io) {
        Ok(metadata) => Some(metadata),
        // A newer version's volume: only --force may overwrite it.
        Err(MetadataError::Unsupported { .. }) if force => None,
        Err(err) => return Err(err),
    };
    if !force {
        if let Some(m) = &metadata {
            if let Some(cur) = m.current {
                return Err(Refusal::ExistingVolume {
                    uuid: cur.uuid,
                    generation: cur.generation,
                }
                .into());
            }
            if let Some((found_at, recorded)) = m.other_layout() {
                return Err(Refusal::OtherLayout { found_at, recorded }.into());
            }
            if m.has_any_copy() {
                let report = if m.primary.state == CopyState::Missing {
                    &m.backup
                } else {
                    &m.primary
                };
                return Err(Refusal::DamagedVolume {
                    detail: format!("{} {}", report.slot.name(), describe_copy(report)),
                }
                .into());
            }
        }
        let foreign = probe_foreign(io)?;
        if !foreign.is_empty() {
            return Err(Refusal::Foreign(foreign).into());
        }
    }
    // Every valid copy counts, even beside one a newer version wrote.
    let mut newest = 0;
    for offset in [Some(PRIMARY_OFFSET), backup_offset_for(io.size())]
        .into_iter()
        .flatten()
    {
        if let Found::Valid(sb) = read_block(io, offset)? {
            newest = newest.max(sb.generation);
        }
    }
    if let Some(m) = &metadata {
        for sb in [m.primary.decoded, m.backup.decoded].into_iter().flatten() {
            newest = newest.max(sb.generation);
        }
    }
    Ok(newest.saturating_add(1))
}

/// Both copies of `sb` as they are to be written, each decoded first with the
/// reader's own decoder at the place it goes and required to read back as
/// `sb`, on a volume that fits a backing of `device_size` bytes. Every
/// writer (format, reserve split, grow, repair) goes through here before
/// its first write, so nothing writes a volume its own reader would reject:
/// a check a writer missed turns into a refusal with the backing untouched.
pub fn verified_blocks(
    sb: &SuperBlock,
    device_size: u64,
) -> Result<[(u64, [u8; BLOCK_LEN]); 2], MetadataError> {
    let block = |slot: Slot| -> Result<(u64, [u8; BLOCK_LEN]), MetadataError> {
        let offset = slot.offset(&sb.geometry);
        let bytes = sb.encode(slot);
        let refuse = |detail: String| MetadataError::WouldNotRead { slot, detail };
        match SuperBlock::decode(&bytes, offset) {
            Ok(back) if back == *sb => {}
            Ok(_) => return Err(refuse("it decodes to a different volume".to_string())),
            Err(err) => return Err(refuse(err.to_string())),
        }
        check_fits(&sb.geometry, device_size).map_err(|err| refuse(err.to_string()))?;
        Ok((offset, bytes))
    };
    // Backup first: the order every writer writes in.
    Ok([block(Slot::Backup)?, block(Slot::Primary)?])
}

/// Write a new volume with `geometry`: backup first, then primary, each durable
/// before the next. The caller has run [`check_format_allowed`].
pub fn write_new_volume<M: MetadataIo + ?Sized>(
    io: &M,
    geometry: Geometry,
    generation: u64,
) -> Result<SuperBlock, MetadataError> {
    write_new_volume_with(io, geometry, Owners::NONE, generation)
}

/// The super block a new volume with `geometry` and `owners` gets (format
/// 1.1 with owners, else 1.0), checked by [`verified_blocks`] as if it were
/// about to be written; nothing is written (`format --dry-run`).
pub fn new_volume<M: MetadataIo + ?Sized>(
    io: &M,
    geometry: Geometry,
    owners: Owners,
    generation: u64,
) -> Result<SuperBlock, MetadataError> {
    let mut sb = SuperBlock {
        version_minor: SuperBlock::minor_for(&owners),
        compat_features: 0,
        incompat_features: 0,
        uuid: crate::format::random_uuid().map_err(MetadataError::Random)?,
        parent_uuid: io.namespace_uuid().unwrap_or(Uuid::NIL),
        generation,
        geometry,
        owners: Owners::NONE,
    };
    sb.set_owners(owners);
    verified_blocks(&sb, io.size())?;
    Ok(sb)
}

/// [`write_new_volume`] with the reserve split among `owners` (format 1.1;
/// the caller validated them against `geometry`). Without owners the copies
/// are version 1.0, byte for byte what a 1.0 writer writes.
pub fn write_new_volume_with<M: MetadataIo + ?Sized>(
    io: &M,
    geometry: Geometry,
    owners: Owners,
    generation: u64,
) -> Result<SuperBlock, MetadataError> {
    let sb = new_volume(io, geometry, owners, generation)?;
    for (offset, block) in verified_blocks(&sb, io.size())? {
        io.write_durable_at(offset, &block)?;
    }
    Ok(sb)
}

/// What `repair` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairOutcome {
    /// Copies rewritten (empty when both were already ok).
    pub rewritten: Vec<Slot>,
    /// The metadata after the repair.
    pub after: Metadata,
}

/// Rewrite every copy that is not `ok` from the newest valid one.
pub fn repair<M: MetadataIo + ?Sized>(io: &M) -> Result<RepairOutcome, MetadataError> {
    let before = read(io)?;
    let current = before.require_current()?;
    if current.is_newer_minor() {
        return Err(MetadataError::NewerMinor {
            minor: current.version_minor,
        });
    }
    check_fits(&current.geometry, io.size())?;
    let [backup, primary] = verified_blocks(&current, io.size())?;
    let mut rewritten = Vec::new();
    for (slot, (offset, block)) in [(Slot::Primary, primary), (Slot::Backup, backup)] {
        if before.copy(slot).state != CopyState::Ok {
            io.write_durable_at(offset, &block)?;
            rewritten.push(slot);
        }
    }
    let after = read(io)?;
    for slot in [Slot::Primary, Slot::Backup] {
        let report = after.copy(slot);
        if report.state != CopyState::Ok {
            return Err(MetadataError::RepairUnverified {
                slot,
                detail: describe_copy(report),
            });
        }
    }
    Ok(RepairOutcome { rewritten, after })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::layout::{LayoutRequest, ReserveRequest, plan};
    use std::cell::{Cell, RefCell};
    use std::path::PathBuf;

    const MIB: u64 = 1 << 20;

    /// An in-memory medium that stops writing (like a power cut) after
    /// `writes_left` durable writes.
    pub(crate) struct MemImage {
        pub bytes: RefCell<Vec<u8>>,
        pub writes_left: Cell<usize>,
        pub writes: RefCell<Vec<u64>>,
    }

    impl MemImage {
        pub(crate) fn new(size: usize) -> MemImage {
            MemImage {
                bytes: RefCell::new(vec![0; size]),
                writes_left: Cell::new(usize::MAX),
                writes: RefCell::new(Vec::new()),
            }
        }
    }

    impl MetadataIo for MemImage {
        fn size(&self) -> u64 {
            self.bytes.borrow().len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
            let off = usize::try_from(offset).expect("small");
            buf.copy_from_slice(&self.bytes.borrow()[off..off + buf.len()]);
            Ok(())
        }
        fn write_durable_at(&self, offset: u64, buf: &[u8]) -> Result<(), BackingError> {
            if self.writes_left.get() == 0 {
                return Err(BackingError::Io {
                    path: PathBuf::from("mem"),
                    op: "write",
                    source: std::io::Error::other("power cut"),
                });
            }
            self.writes_left.set(self.writes_left.get() - 1);
            self.writes.borrow_mut().push(offset);
            let off = usize::try_from(offset).expect("small");
            self.bytes.borrow_mut()[off..off + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn namespace_uuid(&self) -> Option<Uuid> {
            None
        }
    }

    /// The layout `add --reserve` gives with every other option at its default.
    fn geometry(size: u64, reserve: u64) -> Geometry {
        plan(
            size,
            &LayoutRequest::new(ReserveRequest::Bytes(reserve), None),
        )
        .expect("fits")
        .geometry
    }

    fn formatted(size: usize) -> (MemImage, SuperBlock) {
        let img = MemImage::new(size);
        let generation = check_format_allowed(&img, false).expect("blank");
        let sb =
            write_new_volume(&img, geometry(size as u64, 4 * MIB), generation).expect("format");
        (img, sb)
    }

    /// Damage done to a primary copy's 4 KiB.
    type Damage = fn(&mut [u8]);

    /// A volume formatted on `size` bytes whose backing then grew by `grow`
    /// and whose primary copy then suffered `damage`.
    fn grown_and_damaged(size: usize, grow: usize, damage: Damage) -> (MemImage, SuperBlock) {
        let (img, sb) = formatted(size);
        img.bytes.borrow_mut().resize(size + grow, 0);
        damage(&mut img.bytes.borrow_mut()[4096..8192]);
        (img, sb)
    }

    #[test]
    fn a_grown_backing_with_a_damaged_primary_finds_its_backup() {
        let damages: [(&str, Damage); 3] = [
            // A changed byte: the size field still names the old end.
            ("one byte", |b| b[0x30] ^= 0x55),
            // The size field itself damaged: only the scan finds it.
            ("size field", |b| b[0x68] ^= 0x01),
            // The whole block gone: the cheap 2 MiB probe finds it.
            ("wiped", |b| b.fill(0)),
        ];
        for (what, damage) in damages {
            let (img, sb) = grown_and_damaged(32 << 20, 16 << 20, damage);
            let m = read(&img).expect(what);
            assert_eq!(m.current, Some(sb), "{what}");
            assert_eq!(m.backup.state, CopyState::Ok, "{what}");
            assert_eq!(m.backup.offset, Some((32 << 20) - 4096), "{what}");
            // The message must never suggest destroying it ...
            assert!(matches!(
                check_format_allowed(&img, false),
                Err(MetadataError::Refused(_))
            ));
            // ... and repair brings the primary back.
            assert_eq!(repair(&img).expect(what).rewritten, vec![Slot::Primary]);
            assert!(read(&img).expect("read").is_healthy(), "{what}");
        }
    }

    #[test]
    fn the_scan_finds_an_old_end_that_is_not_2m_aligned() {
        // An image grown from a size that is not a multiple of 2 MiB, its
        // primary's size field damaged: the 4 KiB scan finds the backup.
        let (img, sb) = grown_and_damaged((32 << 20) + 12288, 5 << 20, |b| b[0x68] ^= 0x10);
        let m = read(&img).expect("read");
        assert_eq!(m.current, Some(sb));
        assert_eq!(m.backup.offset, Some((32 << 20) + 8192));
    }

    #[test]
    fn a_damaged_copy_at_the_end_is_not_passed_over_for_an_older_one() {
        // A volume formatted at 32 MiB, then re-formatted (--force) at
        // 48 MiB; both of the new copies damaged. The old volume's backup is
        // still at 32 MiB, but the damaged copy at the end says a newer
        // volume is there: no scan, nothing "recovered" from the past.
        let (img, _) = formatted(32 << 20);
        img.bytes.borrow_mut().resize(48 << 20, 0);
        let generation = check_format_allowed(&img, true).expect("force");
        write_new_volume(&img, geometry(48 << 20, 4 * MIB), generation).expect("format");
        img.bytes.borrow_mut()[4096 + 0x30] ^= 1;
        img.bytes.borrow_mut()[(48 << 20) - 4096 + 0x30] ^= 1;
        assert!(read(&img).expect("read").current.is_none());
    }

    #[test]
    fn the_scan_never_resurrects_an_older_volume() {
        // A at 32 MiB; grown to 48 MiB and re-formatted as B; grown to
        // 64 MiB; then both of B's copies damaged. The scan meets B's
        // damaged backup at 48 MiB first and must stop there, not go on to
        // A's intact backup at 32 MiB (repair would write A over B).
        let (img, _a) = formatted(32 << 20);
        img.bytes.borrow_mut().resize(48 << 20, 0);
        let generation = check_format_allowed(&img, true).expect("force");
        write_new_volume(&img, geometry(48 << 20, 4 * MIB), generation).expect("format B");
        img.bytes.borrow_mut().resize(64 << 20, 0);
        img.bytes.borrow_mut()[4096 + 0x30] ^= 1;
        img.bytes.borrow_mut()[(48 << 20) - 4096 + 0x30] ^= 1;
        let before = img.bytes.borrow().clone();
        assert!(read(&img).expect("read").current.is_none());
        assert!(matches!(
            repair(&img),
            Err(MetadataError::NoValidCopy { .. })
        ));
        assert_eq!(*img.bytes.borrow(), before, "nothing written");
    }

    #[test]
    fn a_copy_of_another_layout_is_named_as_such() {
        // fsdax -> devdax: the new device starts 4 MiB further in and is
        // that much shorter, so the old backup sits in its last block but
        // records a place 4 MiB later.
        let (old, _) = formatted(64 << 20);
        let shifted = old.bytes.borrow()[4 << 20..].to_vec();
        let img = MemImage::new(shifted.len());
        *img.bytes.borrow_mut() = shifted;
        let before = img.bytes.borrow().clone();
        let m = read(&img).expect("read");
        assert_eq!(
            m.other_layout(),
            Some(((60 << 20) - 4096, (64 << 20) - 4096))
        );
        let err = m.require_current().expect_err("not this device's");
        assert!(matches!(err, MetadataError::OtherLayout { .. }), "{err}");
        assert!(err.to_string().contains("another layout"), "{err}");
        assert_eq!(err.remedy(), Some(Remedy::RestoreOrOverwrite));
        let refusal = check_format_allowed(&img, false).expect_err("refused");
        assert!(matches!(
            refusal,
            MetadataError::Refused(Refusal::OtherLayout { .. })
        ));
        assert!(matches!(
            repair(&img),
            Err(MetadataError::OtherLayout { .. })
        ));
        assert_eq!(*img.bytes.borrow(), before, "nothing written");
        check_format_allowed(&img, true).expect("--force may");
    }

    #[test]
    fn blank_reads_as_not_formatted() {
        let img = MemImage::new(16 << 20);
        let m = read(&img).expect("read");
        assert_eq!(m.current, None);
        assert_eq!(m.primary.state, CopyState::Missing);
        assert_eq!(m.backup.state, CopyState::Missing);
        assert!(matches!(
            open_volume(&img),
            Err(MetadataError::NotFormatted)
        ));
    }

    #[test]
    fn format_writes_backup_then_primary_and_reads_healthy() {
        let (img, sb) = formatted(16 << 20);
        assert_eq!(*img.writes.borrow(), vec![(16 << 20) - 4096, 4096]);
        assert_eq!(sb.generation, 1);
        let m = read(&img).expect("read");
        assert!(m.is_healthy());
        assert_eq!(m.current, Some(sb));
        assert!(
            img.bytes.borrow()[..4096].iter().all(|&b| b == 0),
            "head untouched"
        );
    }

    #[test]
    fn crash_between_the_two_writes_of_a_first_format() {
        let img = MemImage::new(16 << 20);
        img.writes_left.set(1);
        let generation = check_format_allowed(&img, false).expect("blank");
        assert!(write_new_volume(&img, geometry(16 << 20, 4 * MIB), generation).is_err());
        let m = read(&img).expect("read");
        let cur = m.current.expect("backup survives");
        assert_eq!(m.primary.state, CopyState::Missing);
        assert_eq!(m.backup.state, CopyState::Ok);
        // A repeat format without --force refuses: the volume exists.
        assert!(matches!(
            check_format_allowed(&img, false),
            Err(MetadataError::Refused(Refusal::ExistingVolume { .. }))
        ));
        img.writes_left.set(usize::MAX);
        let out = repair(&img).expect("repair");
        assert_eq!(out.rewritten, vec![Slot::Primary]);
        assert!(out.after.is_healthy());
        assert_eq!(out.after.current, Some(cur));
    }

    #[test]
    fn crash_between_the_two_writes_of_a_reformat() {
        let (img, old) = formatted(16 << 20);
        img.writes_left.set(1);
        let generation = check_format_allowed(&img, true).expect("forced");
        assert_eq!(generation, 2);
        let new_geometry = geometry(16 << 20, 0);
        assert!(write_new_volume(&img, new_geometry, generation).is_err());
        let m = read(&img).expect("read");
        let cur = m.current.expect("a valid copy");
        // The new backup wins over the old primary: a consistent (new) layout.
        assert_eq!(cur.geometry, new_geometry);
        assert_ne!(cur.uuid, old.uuid);
        assert_eq!(m.primary.state, CopyState::Stale);
        assert_eq!(m.backup.state, CopyState::Ok);
        img.writes_left.set(usize::MAX);
        repair(&img).expect("repair");
        assert_eq!(read(&img).expect("read").current, Some(cur));
    }

    #[test]
    fn each_copy_can_be_corrupted_and_repaired() {
        for slot in [Slot::Primary, Slot::Backup] {
            let (img, sb) = formatted(16 << 20);
            let off = usize::try_from(slot.offset(&sb.geometry)).expect("small") + 0x90;
            img.bytes.borrow_mut()[off] ^= 0xFF;
            let m = read(&img).expect("read");
            assert_eq!(m.current, Some(sb), "the other copy carries on");
            assert_eq!(m.copy(slot).state, CopyState::Corrupt);
            assert!(matches!(
                m.copy(slot).problem,
                Some(CopyProblem::Invalid(DecodeError::Checksum { .. }))
            ));
            let out = repair(&img).expect("repair");
            assert_eq!(out.rewritten, vec![slot]);
            assert!(read(&img).expect("read").is_healthy());
        }
    }

    #[test]
    fn missing_backup_is_reported_and_repaired() {
        let (img, sb) = formatted(16 << 20);
        let off = usize::try_from(sb.geometry.backup_offset()).expect("small");
        img.bytes.borrow_mut()[off..off + 4096].fill(0);
        let m = read(&img).expect("read");
        assert_eq!(m.backup.state, CopyState::Missing);
        assert_eq!(m.primary.state, CopyState::Ok);
        repair(&img).expect("repair");
        assert!(read(&img).expect("read").is_healthy());
    }

    #[test]
    fn both_copies_corrupt_cannot_be_repaired_and_are_left_alone() {
        let (img, sb) = formatted(16 << 20);
        for slot in [Slot::Primary, Slot::Backup] {
            let off = usize::try_from(slot.offset(&sb.geometry)).expect("small") + 0x50;
            img.bytes.borrow_mut()[off] ^= 1;
        }
        let before = img.bytes.borrow().clone();
        assert!(matches!(
            repair(&img),
            Err(MetadataError::NoValidCopy { .. })
        ));
        assert!(matches!(
            open_volume(&img),
            Err(MetadataError::NoValidCopy { .. })
        ));
        assert!(matches!(
            check_format_allowed(&img, false),
            Err(MetadataError::Refused(Refusal::DamagedVolume { .. }))
        ));
        assert_eq!(*img.bytes.borrow(), before);
    }

    /// Rewrite the copy at `at` as a writer of format major 2 would have.
    fn make_newer_major(img: &MemImage, at: usize) {
        let mut bytes = img.bytes.borrow_mut();
        let block: &mut [u8; 4096] = (&mut bytes[at..at + 4096]).try_into().expect("block");
        block[0x10..0x12].copy_from_slice(&2u16.to_le_bytes());
        let sum = crate::format::superblock::checksum(block);
        block[0x14..0x18].copy_from_slice(&sum.to_le_bytes());
    }

    #[test]
    fn a_damaged_version_byte_is_corruption_and_the_backup_carries_on() {
        for value in [0u8, 3, 0xFF] {
            let (img, sb) = formatted(16 << 20);
            img.bytes.borrow_mut()[4096 + 0x10] = value;
            let m = read(&img).expect("the backup is intact");
            assert_eq!(m.current, Some(sb));
            assert_eq!(m.primary.state, CopyState::Corrupt);
            assert!(matches!(
                m.primary.problem,
                Some(CopyProblem::Invalid(DecodeError::Checksum { .. }))
            ));
            assert_eq!(repair(&img).expect("repair").rewritten, vec![Slot::Primary]);
            assert!(read(&img).expect("read").is_healthy());
        }
    }

    #[test]
    fn newer_major_is_never_overwritten_without_force() {
        let (img, _) = formatted(16 << 20);
        make_newer_major(&img, 4096);
        let before = img.bytes.borrow().clone();
        assert!(matches!(
            read(&img),
            Err(MetadataError::Unsupported {
                slot: Slot::Primary,
                ..
            })
        ));
        assert!(matches!(
            repair(&img),
            Err(MetadataError::Unsupported { .. })
        ));
        assert!(matches!(
            check_format_allowed(&img, false),
            Err(MetadataError::Unsupported { .. })
        ));
        assert_eq!(*img.bytes.borrow(), before);
        assert_eq!(check_format_allowed(&img, true).expect("force"), 2);
    }

    #[test]
    fn foreign_data_refuses_format() {
        let img = MemImage::new(16 << 20);
        img.bytes.borrow_mut()[0..4].copy_from_slice(b"XFSB");
        let err = check_format_allowed(&img, false).expect_err("xfs");
        // The problem here; the CLI words the way out (`--force`).
        assert_eq!(err.to_string(), "it holds an xfs file system");
        assert_eq!(err.remedy(), Some(Remedy::Overwrite));
        assert_eq!(check_format_allowed(&img, true).expect("force"), 1);
    }

    #[test]
    fn grown_backing_still_finds_the_backup() {
        let (img, sb) = formatted(16 << 20);
        img.bytes.borrow_mut().resize(32 << 20, 0);
        let m = read(&img).expect("read");
        assert_eq!(m.current, Some(sb));
        assert!(m.is_healthy(), "{m:?}");
        assert_eq!(m.backup.offset, Some((16 << 20) - 4096));
    }

    /// A [`MemImage`] that reports only `ranges` as data (the rest as holes,
    /// as a sparse file does) and counts the bytes read.
    struct Sparse {
        img: MemImage,
        ranges: Vec<Range<u64>>,
        read: Cell<u64>,
    }

    impl MetadataIo for Sparse {
        fn size(&self) -> u64 {
            self.img.size()
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
            self.read.set(self.read.get() + buf.len() as u64);
            self.img.read_at(offset, buf)
        }
        fn write_durable_at(&self, offset: u64, buf: &[u8]) -> Result<(), BackingError> {
            self.img.write_durable_at(offset, buf)
        }
        fn namespace_uuid(&self) -> Option<Uuid> {
            None
        }
        fn data_ranges(&self, start: u64, end: u64) -> Option<Vec<Range<u64>>> {
            Some(
                self.ranges
                    .iter()
                    .filter(|r| r.end > start && r.start < end)
                    .map(|r| r.start.max(start)..r.end.min(end))
                    .collect(),
            )
        }
    }

    #[test]
    fn the_scan_skips_holes_and_still_finds_a_wiped_grown_volume() {
        let old_end: u64 = 32 << 20;
        let backup = old_end - 4096;
        // The data stretch around the old backup as a file system could
        // report it: the block itself, or stretches that only just reach
        // into it from either side.
        for (what, data) in [
            ("the block", backup..old_end),
            ("its last byte", old_end - 1..old_end + (8 << 10)),
            ("its first byte", backup - (8 << 10)..backup + 1),
            ("a larger stretch", (16 << 20)..(40 << 20)),
        ] {
            let (img, sb) = grown_and_damaged(32 << 20, 480 << 20, |b| b.fill(0));
            let sparse = Sparse {
                img,
                ranges: vec![0..(1 << 20), data],
                read: Cell::new(0),
            };
            let m = read(&sparse).expect(what);
            assert_eq!(m.current, Some(sb), "{what}");
            assert_eq!(m.backup.offset, Some(backup), "{what}");
            // Never the 2 MiB probe of the whole 512 MiB: a few blocks.
            assert!(
                sparse.read.get() <= 16 * 4096,
                "{what}: {}",
                sparse.read.get()
            );
        }
    }

    #[test]
    fn a_blank_sparse_backing_is_not_formatted_without_scanning() {
        let sparse = Sparse {
            img: MemImage::new(256 << 20),
            ranges: Vec::new(),
            read: Cell::new(0),
        };
        let m = read(&sparse).expect("read");
        assert!(matches!(
            m.require_current(),
            Err(MetadataError::NotFormatted)
        ));
        // The primary and the block at the end, nothing else.
        assert_eq!(sparse.read.get(), 2 * 4096);
        // A damaged primary (our magic) searches every 4 KiB block, but
        // still only where there is data.
        sparse.img.bytes.borrow_mut()[4096..4096 + 16].copy_from_slice(b"PMEM-STACK-SUPER");
        let sparse = Sparse {
            ranges: vec![0..8192, (100 << 20)..(101 << 20)],
            read: Cell::new(0),
            ..sparse
        };
        let m = read(&sparse).expect("read");
        assert_eq!(m.primary.state, CopyState::Corrupt);
        assert!(
            sparse.read.get() <= 4 * 4096 + (1 << 20),
            "{}",
            sparse.read.get()
        );
    }

    #[test]
    fn a_backing_too_small_for_a_backup_reports_no_backup_location() {
        let img = MemImage::new(10 << 10);
        // Our magic and major version, then garbage: a corrupt primary.
        img.bytes.borrow_mut()[4096..4096 + 16].copy_from_slice(b"PMEM-STACK-SUPER");
        img.bytes.borrow_mut()[4096 + 0x10] = 1;
        let m = read(&img).expect("read");
        assert_eq!(m.primary.state, CopyState::Corrupt);
        assert_eq!(m.backup.state, CopyState::Missing);
        assert_eq!(m.backup.offset, None, "no place for a backup, not byte 0");
        assert!(matches!(
            open_volume(&img),
            Err(MetadataError::NoValidCopy { .. })
        ));
    }

    #[test]
    fn shrunk_backing_is_refused() {
        let (img, _) = formatted(16 << 20);
        img.bytes.borrow_mut().truncate(8 << 20);
        assert!(matches!(
            open_volume(&img),
            Err(MetadataError::Shrunk { .. })
        ));
    }
}
