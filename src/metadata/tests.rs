//! The metadata layer's tests: reading, the backup search, writing with
//! cuts at every write, repair. `MemImage` is also the other layers' test
//! medium.

use super::read::*;
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
    let sb = write_new_volume(&img, geometry(size as u64, 4 * MIB), generation).expect("format");
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
