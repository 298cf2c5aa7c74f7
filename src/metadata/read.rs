//! Finding and judging the two copies: the primary at byte 4096, the backup
//! at the end of the backing — or, after the backing was resized, where a
//! copy says it is, or where a search down from the end finds it.

use crate::backing::BackingError;
use crate::format::geometry::{METADATA_END, PRIMARY_OFFSET, SUPERBLOCK_SIZE, backup_offset_for};
use crate::format::signatures::{Foreign, PROBE_LEN, find_foreign};
use crate::format::superblock::{BLOCK_LEN, claimed_device_size, has_magic, unverified_layout};
use crate::format::{DecodeError, Geometry, Slot, SuperBlock};
use crate::progress;
use crate::units::PMD_SIZE;

use super::{CopyProblem, CopyReport, CopyState, Metadata, MetadataError, MetadataIo, check_fits};

/// Outcome of decoding the block at one location.
pub(super) enum Found {
    /// Boxed: a super block with its owner table is about 1 KiB.
    Valid(Box<SuperBlock>),
    /// With the layout it records, unverified.
    Invalid(DecodeError, Option<Geometry>),
    Missing,
}

pub(super) fn read_block<M: MetadataIo + ?Sized>(
    io: &M,
    offset: u64,
) -> Result<Found, BackingError> {
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

/// Read the first bytes of the backing for the foreign-signature probe.
pub fn probe_foreign<M: MetadataIo + ?Sized>(io: &M) -> Result<Vec<Foreign>, BackingError> {
    // The probe window, or the whole backing when it is smaller (a size that
    // does not fit a usize is certainly larger).
    let len = usize::try_from(io.size()).map_or(PROBE_LEN, |size| size.min(PROBE_LEN));
    let mut head = vec![0u8; len];
    io.read_at(0, &mut head)?;
    Ok(find_foreign(&head))
}
