//! Torn super block updates: every way a power cut can leave the metadata.
//!
//! A medium promises nothing about a 4 KiB write that a power cut
//! interrupts: any of its eight 512-byte sectors may hold the new bytes and
//! the others the old ones. [`TornImage`] replays an update with the cut at
//! every write boundary (before each copy's write: the copies are written one
//! at a time) and, for the write it tears, with every one of the 256
//! old/new mixes of its sectors. After each, the backing must still read as
//! a volume (`info` works), and `check --repair` must heal it to exactly the
//! layout before or exactly the layout after the update — never a third.
//!
//! The same holds for the updates that keep the volume (`reserve split`,
//! which writes a 1.1 owner table, and `grow`, which moves the backup to
//! the new end and then zeroes the old one): each cut heals to exactly the
//! volume before or exactly the volume after.
//!
//! Every 1.0 field of a copy sits in its first sector (0x000–0x09F; the rest
//! is reserved zeros), so for a reformat sector mixes alone are benign by
//! construction; a 1.1 owner table reaches into the third sector, where the
//! checksum is what catches a mix. Raw
//! pmem without BTT promises only 8-byte atomic stores, so the torn write is
//! also cut inside that sector at every 8-byte boundary: there the checksum
//! is what keeps a half-new copy from being believed.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;

use pmem_stack::backing::BackingError;
use pmem_stack::format::geometry::SUPERBLOCK_SIZE;
use pmem_stack::format::{Alignment, Geometry, LogicalBlockSize, ReserveMode, SuperBlock, Uuid};
use pmem_stack::format::{OwnerKind, OwnerName};
use pmem_stack::metadata::{self, MetadataIo};
use pmem_stack::volume::amend::{self, OwnerSize, OwnerSpec};

const MIB: u64 = 1 << 20;
const SECTOR: usize = 512;
const SECTORS: usize = 4096 / SECTOR;

/// How the torn write lands.
#[derive(Clone, Copy, Debug)]
enum Tear {
    /// The sectors in the mask have the new bytes, the others the old.
    Sectors(u8),
    /// The first N bytes are new (8-byte atomic stores, in order).
    Prefix(usize),
}

/// An in-memory backing that tears the `tear_at`-th write (0-based) as
/// `tear` says and then loses power: every later write fails.
struct TornImage {
    bytes: RefCell<Vec<u8>>,
    writes: Cell<usize>,
    tear_at: usize,
    tear: Tear,
}

impl TornImage {
    fn new(bytes: Vec<u8>, tear_at: usize, tear: Tear) -> TornImage {
        TornImage {
            bytes: RefCell::new(bytes),
            writes: Cell::new(0),
            tear_at,
            tear,
        }
    }

    /// An image that never tears.
    fn whole(size: u64) -> TornImage {
        let bytes = vec![0; usize::try_from(size).expect("small")];
        TornImage::new(bytes, usize::MAX, Tear::Sectors(0))
    }
}

impl MetadataIo for TornImage {
    fn size(&self) -> u64 {
        self.bytes.borrow().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackingError> {
        let at = usize::try_from(offset).expect("small");
        buf.copy_from_slice(&self.bytes.borrow()[at..at + buf.len()]);
        Ok(())
    }

    fn write_durable_at(&self, offset: u64, buf: &[u8]) -> Result<(), BackingError> {
        let n = self.writes.get();
        self.writes.set(n + 1);
        let cut = || BackingError::Io {
            path: PathBuf::from("torn"),
            op: "write",
            source: std::io::Error::other("power cut"),
        };
        if n > self.tear_at {
            return Err(cut());
        }
        let at = usize::try_from(offset).expect("small");
        let mut bytes = self.bytes.borrow_mut();
        if n < self.tear_at {
            bytes[at..at + buf.len()].copy_from_slice(buf);
            return Ok(());
        }
        assert_eq!(buf.len(), 4096, "super block writes are whole copies");
        match self.tear {
            Tear::Sectors(mask) => {
                for sector in 0..SECTORS {
                    if mask & (1 << sector) != 0 {
                        let range = sector * SECTOR..(sector + 1) * SECTOR;
                        bytes[at + range.start..at + range.end].copy_from_slice(&buf[range]);
                    }
                }
            }
            Tear::Prefix(n) => bytes[at..at + n].copy_from_slice(&buf[..n]),
        }
        Err(cut())
    }

    fn namespace_uuid(&self) -> Option<Uuid> {
        None
    }
}

fn layout(size: u64, reserve: u64, align: Alignment) -> Geometry {
    Geometry::derive(
        size,
        align,
        LogicalBlockSize::B512,
        ReserveMode::Hypervisor,
        reserve,
    )
    .expect("valid")
}

/// Every way the torn write can land: the 256 sector mixes, then every
/// 8-byte prefix of the first sector (where all the fields are).
fn tears() -> impl Iterator<Item = Tear> {
    (0..=u8::MAX)
        .map(Tear::Sectors)
        .chain((8..SECTOR).step_by(8).map(Tear::Prefix))
}

/// What the backing holds after `update` ran on a copy of `start` with the
/// cut at write `tear_at` (landing as `tear`): healed by repair.
fn after_cut(
    start: &[u8],
    tear_at: usize,
    tear: Tear,
    update: &dyn Fn(&TornImage),
) -> Result<SuperBlock, String> {
    let img = TornImage::new(start.to_vec(), tear_at, tear);
    update(&img);
    let fresh = TornImage::new(img.bytes.into_inner(), usize::MAX, Tear::Sectors(0));
    let m = metadata::read(&fresh).map_err(|e| format!("info cannot read it: {e}"))?;
    let current = m.require_current().map_err(|e| format!("no volume: {e}"))?;
    let out = metadata::repair(&fresh).map_err(|e| format!("repair failed: {e}"))?;
    if !out.after.is_healthy() {
        return Err(format!("not healthy after repair: {:?}", out.after));
    }
    let healed = metadata::read(&fresh)
        .ok()
        .and_then(|m| m.current)
        .ok_or("unreadable after repair")?;
    if healed != current {
        return Err("repair changed the volume it read".into());
    }
    Ok(healed)
}

/// Run `update` from `start` (holding `before`) cut at every write and every
/// tear; each outcome must heal to exactly `before`, or to wholly the new
/// volume: the `after` layout under a new uuid and a newer generation —
/// never a mix. Returns how many cuts were made.
fn every_cut(
    start: &[u8],
    before: SuperBlock,
    after: Geometry,
    update: &dyn Fn(&TornImage),
) -> usize {
    let mut cuts = 0;
    let mut saw = (false, false);
    for tear_at in 0..=2 {
        for tear in tears() {
            let outcome = after_cut(start, tear_at, tear, update)
                .unwrap_or_else(|e| panic!("cut at write {tear_at}, {tear:?}: {e}"));
            let is_new = outcome.geometry == after
                && outcome.uuid != before.uuid
                && outcome.generation > before.generation;
            assert!(
                outcome == before || is_new,
                "cut at write {tear_at}, {tear:?}: neither the old nor the new volume: {outcome:?}"
            );
            saw.0 |= outcome == before;
            saw.1 |= is_new;
            cuts += 1;
        }
    }
    assert!(
        saw.0 && saw.1,
        "the cuts reach both the old and the new layout"
    );
    cuts
}

#[test]
fn a_torn_reformat_heals_to_the_old_or_the_new_layout() {
    let size = 16 * MIB;
    let before = layout(size, 4 * MIB, Alignment::M2);
    let after = layout(size, 6 * MIB, Alignment::K4);
    let img = TornImage::whole(size);
    let first = metadata::check_format_allowed(&img, false).expect("blank");
    let old = metadata::write_new_volume(&img, before, first).expect("format");
    let start = img.bytes.into_inner();
    let reformat = |img: &TornImage| {
        let generation = metadata::check_format_allowed(img, true).expect("force");
        let _ = metadata::write_new_volume(img, after, generation);
    };
    let cuts = every_cut(&start, old, after, &reformat);
    assert_eq!(cuts, 3 * (256 + 63));
}

#[test]
fn a_torn_repair_heals_with_the_layout_unchanged() {
    let size = 16 * MIB;
    let g = layout(size, 4 * MIB, Alignment::M2);
    let img = TornImage::whole(size);
    let first = metadata::check_format_allowed(&img, false).expect("blank");
    let volume = metadata::write_new_volume(&img, g, first).expect("format");
    for slot_offset in [4096, size - SUPERBLOCK_SIZE] {
        // One copy damaged in every sector; repair's rewrite of it is torn.
        let mut start = img.bytes.borrow().clone();
        let at = usize::try_from(slot_offset).expect("small");
        for sector in 0..SECTORS {
            start[at + sector * SECTOR + 100] ^= 0x5A;
        }
        for tear in tears() {
            let repair = |img: &TornImage| {
                let _ = metadata::repair(img);
            };
            let outcome = after_cut(&start, 0, tear, &repair)
                .unwrap_or_else(|e| panic!("copy at {slot_offset}, {tear:?}: {e}"));
            assert_eq!(outcome, volume, "the volume and its layout never change");
        }
    }
}

/// Run `update` from `start` (holding `before`) cut at each of its
/// `writes` writes and every tear; each outcome must heal to exactly
/// `before` or exactly `after` (same uuid: the volume is kept), and both
/// must occur.
fn every_cut_keeping(
    start: &[u8],
    before: SuperBlock,
    after: SuperBlock,
    writes: usize,
    update: &dyn Fn(&TornImage),
) -> usize {
    let mut cuts = 0;
    let mut saw = (false, false);
    for tear_at in 0..writes {
        for tear in tears() {
            let outcome = after_cut(start, tear_at, tear, update)
                .unwrap_or_else(|e| panic!("cut at write {tear_at}, {tear:?}: {e}"));
            assert!(
                outcome == before || outcome == after,
                "cut at write {tear_at}, {tear:?}: neither the old nor the new volume: {outcome:?}\nbefore {before:?}\nafter {after:?}"
            );
            saw.0 |= outcome == before;
            saw.1 |= outcome == after;
            cuts += 1;
        }
    }
    assert!(
        saw.0 && saw.1,
        "the cuts reach both the old and the new volume"
    );
    cuts
}

fn spec(name: &str, kind: OwnerKind, size: OwnerSize) -> OwnerSpec {
    OwnerSpec {
        name: OwnerName::new(name).expect("name"),
        kind,
        size,
    }
}

#[test]
fn a_torn_reserve_split_heals_to_the_old_or_the_new_split() {
    let size = 16 * MIB;
    let g = layout(size, 8 * MIB, Alignment::M2);
    let img = TornImage::whole(size);
    let first = metadata::check_format_allowed(&img, false).expect("blank");
    let old = metadata::write_new_volume(&img, g, first).expect("format");
    let specs = [
        spec("xen", OwnerKind::Hypervisor, OwnerSize::Bytes(2 * MIB)),
        spec("dom0", OwnerKind::Os, OwnerSize::Rest),
    ];
    let owners = amend::lay_out_owners(&specs, &g).expect("fits");
    let (_, next) = amend::plan_split(&img, owners).expect("plan");
    // Splitting a split reserve again: the second split's cuts, from the first.
    let start = img.bytes.borrow().clone();
    let split = |img: &TornImage| {
        let (_, next) = amend::plan_split(img, owners).expect("plan");
        let _ = amend::write_split(img, &next);
    };
    let cuts = every_cut_keeping(&start, old, next, 2, &split);
    assert_eq!(cuts, 2 * (256 + 63));

    amend::write_split(&img, &next).expect("split");
    let resplit = [
        spec("xen", OwnerKind::Hypervisor, OwnerSize::Bytes(MIB)),
        spec("fw", OwnerKind::Other, OwnerSize::Bytes(4096)),
        spec("dom0", OwnerKind::Os, OwnerSize::Rest),
    ];
    let owners2 = amend::lay_out_owners(&resplit, &g).expect("fits");
    let (_, next2) = amend::plan_split(&img, owners2).expect("plan");
    let start = img.bytes.into_inner();
    let split2 = |img: &TornImage| {
        let (_, n) = amend::plan_split(img, owners2).expect("plan");
        let _ = amend::write_split(img, &n);
    };
    every_cut_keeping(&start, next, next2, 2, &split2);
}

#[test]
fn a_torn_grow_heals_to_the_old_or_the_grown_volume() {
    let size = 16 * MIB;
    let g = layout(size, 4 * MIB, Alignment::M2);
    let img = TornImage::whole(size);
    let first = metadata::check_format_allowed(&img, false).expect("blank");
    let old = metadata::write_new_volume(&img, g, first).expect("format");
    // The backing grows by 8 MiB (what `truncate -s` or a namespace resize
    // does), then `grow` runs.
    let mut start = img.bytes.into_inner();
    start.resize(usize::try_from(24 * MIB).expect("small"), 0);
    let grown = TornImage::new(start.clone(), usize::MAX, Tear::Sectors(0));
    let plan = amend::plan_grow(&grown).expect("plan");
    assert_eq!(plan.before, old);
    let grow = |img: &TornImage| {
        let plan = amend::plan_grow(img).expect("plan");
        let _ = amend::write_grow(img, &plan);
    };
    // Three writes: the new backup, the primary, the old backup's zeroes.
    let cuts = every_cut_keeping(&start, old, plan.after, 3, &grow);
    assert_eq!(cuts, 3 * (256 + 63));
}
