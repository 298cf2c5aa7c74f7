//! Changing a formatted volume in place, keeping its uuid and data: the
//! reserve's owner table (`reserve split`, format 1.1) and the size after
//! the backing grew (`grow`).
//!
//! Both write a successor super block — the same volume, one generation
//! newer — the way `format` writes a new one: the backup copy first (at the
//! place the *new* layout puts it), made durable, then the primary. A power
//! cut before the backup has landed leaves the old volume (a torn backup
//! fails its checksum, the old copies stand); after it, the backup has the
//! higher generation and wins, the primary reads `stale` and `check
//! --repair` completes it. `grow` then zeroes the old backup's block, which
//! now lies in (or just before) the data area: it can only hold an old copy,
//! never data, and no reader looks there once both new copies are down.
//! `tests/torn_metadata.rs` cuts both at every write.
//!
//! Every check runs before the first write; a refusal writes nothing.

use crate::format::geometry::OS_BYTES_PER_PAGE;
use crate::format::owners::{MAX_OWNERS, OWNER_ALIGN};
use crate::format::superblock::BLOCK_LEN;
use crate::format::{
    Geometry, GeometryError, Owner, OwnerError, OwnerKind, OwnerName, Owners, SuperBlock,
};
use crate::layout::xen_reserve_for_pages;
use crate::metadata::{self, MetadataError, MetadataIo};
use crate::remedy::{HasRemedy, Remedy};
use crate::size::{Exact, Human};
use crate::units::PAGE_SIZE;

/// Why an update was refused (nothing was written) or failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("its super block copies are not both ok (primary {primary}, backup {backup})")]
    NotHealthy { primary: String, backup: String },
    #[error(
        "the super block has format version 1.{minor}, newer than this pmem-stack writes; upgrade pmem-stack"
    )]
    NewerMinor { minor: u16 },
    #[error(transparent)]
    Owners(#[from] OwnerError),
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error("its reserve mode is none: there is no reserve to split")]
    NoReserve,
    #[error(
        "the backing ({}) is no larger than the volume ({}): nothing to grow",
        Human(*actual),
        Human(*recorded)
    )]
    NothingToGrow { recorded: u64, actual: u64 },
    #[error(
        "the backing grew by {} only: the data area grows in steps of the volume's alignment ({}), so it would stay {}",
        Human(*grew),
        Human(*align),
        Human(*data_size)
    )]
    BelowAlignment {
        grew: u64,
        align: u64,
        data_size: u64,
    },
    #[error(
        "the grown data area ({}) needs a reserve of at least {} for mode os (64 bytes per 4 KiB page), but the reserve is {} and cannot grow in place (the data area would move)",
        Human(*data_size),
        Human(*minimum),
        Human(*reserve)
    )]
    OsReserveTooSmall {
        data_size: u64,
        minimum: u64,
        reserve: u64,
    },
    #[error("the grown layout breaks a rule: {0}")]
    Geometry(GeometryError),
}

impl HasRemedy for UpdateError {
    fn remedy(&self) -> Option<Remedy> {
        match self {
            UpdateError::Metadata(err) => err.remedy(),
            UpdateError::NotHealthy { .. } => Some(Remedy::RepairFirst),
            UpdateError::OsReserveTooSmall { .. } => Some(Remedy::Relayout),
            // A split the reserve cannot hold: the reserve cannot grow in
            // place (the data area would move).
            UpdateError::Split(
                SplitError::TooLarge { .. }
                | SplitError::NoRest { .. }
                | SplitError::OsOwnerTooSmall { .. },
            ) => Some(Remedy::Relayout),
            _ => None,
        }
    }
}

/// The volume to update: the current super block of a healthy volume this
/// version may write.
fn healthy_current<M: MetadataIo + ?Sized>(io: &M) -> Result<SuperBlock, UpdateError> {
    let (current, metadata) = metadata::open_volume(io)?;
    if !metadata.is_healthy() {
        return Err(UpdateError::NotHealthy {
            primary: metadata::describe_copy(&metadata.primary),
            backup: metadata::describe_copy(&metadata.backup),
        });
    }
    if current.is_newer_minor() {
        return Err(UpdateError::NewerMinor {
            minor: current.version_minor,
        });
    }
    Ok(current)
}

/// Write `next` over the volume: backup (at `next`'s place), then primary,
/// each durable before the next.
fn write_successor<M: MetadataIo + ?Sized>(io: &M, next: &SuperBlock) -> Result<(), UpdateError> {
    for (offset, block) in metadata::verified_blocks(next, io.size())? {
        io.write_durable_at(offset, &block)
            .map_err(MetadataError::from)?;
    }
    Ok(())
}

/// The volume with its reserve split among `owners` (validated against the
/// reserve), one generation newer; nothing written.
pub fn plan_split<M: MetadataIo + ?Sized>(
    io: &M,
    owners: Owners,
) -> Result<(SuperBlock, SuperBlock), UpdateError> {
    let current = healthy_current(io)?;
    let g = &current.geometry;
    if g.reserve_size() == 0 {
        return Err(UpdateError::NoReserve);
    }
    owners.validate(g.reserve_offset(), g.reserve_size())?;
    let mut next = current;
    next.set_owners(owners);
    next.generation = current.generation.saturating_add(1);
    Ok((current, next))
}

/// Record `next` (from [`plan_split`]).
pub fn write_split<M: MetadataIo + ?Sized>(io: &M, next: &SuperBlock) -> Result<(), UpdateError> {
    write_successor(io, next)
}

/// What `grow` will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrowPlan {
    /// The volume now.
    pub before: SuperBlock,
    /// The volume after: the backing's whole size, the data area extended.
    pub after: SuperBlock,
}

/// Check a grow to the backing's current size; nothing written.
pub fn plan_grow<M: MetadataIo + ?Sized>(io: &M) -> Result<GrowPlan, UpdateError> {
    let before = healthy_current(io)?;
    let g = before.geometry;
    let actual = io.size();
    let old_backup = g.backup_offset();
    let new_backup = crate::format::geometry::backup_offset_for(actual).unwrap_or(0);
    if new_backup <= old_backup {
        return Err(UpdateError::NothingToGrow {
            recorded: g.device_size(),
            actual,
        });
    }
    let grown = Geometry::derive(
        actual,
        g.align(),
        g.logical_block_size(),
        g.mode(),
        g.reserve_size(),
    )
    .map_err(|err| match err {
        GeometryError::OsReserveTooSmall { .. } => {
            let data_size =
                crate::format::geometry::data_area_for(actual, g.align(), g.reserve_size())
                    .map_or(0, |(_, size)| size);
            UpdateError::OsReserveTooSmall {
                data_size,
                minimum: crate::format::geometry::os_reserve_minimum(data_size),
                reserve: g.reserve_size(),
            }
        }
        other => UpdateError::Geometry(other),
    })?;
    if grown.data_size() == g.data_size() {
        return Err(UpdateError::BelowAlignment {
            grew: actual - g.device_size().min(actual),
            align: g.align().bytes(),
            data_size: g.data_size(),
        });
    }
    let mut after = before;
    after.geometry = grown;
    after.generation = before.generation.saturating_add(1);
    Ok(GrowPlan { before, after })
}

/// Carry out `plan`: the new backup at the new end, the primary, then zeroes
/// over the old backup.
pub fn write_grow<M: MetadataIo + ?Sized>(io: &M, plan: &GrowPlan) -> Result<(), UpdateError> {
    write_successor(io, &plan.after)?;
    let zeros = [0u8; BLOCK_LEN];
    io.write_durable_at(plan.before.geometry.backup_offset(), &zeros)
        .map_err(MetadataError::from)?;
    Ok(())
}

/// How big an owner's range is to be (`--owner NAME[:KIND]=SIZE|auto|rest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerSize {
    /// This many bytes, rounded up to 4 KiB.
    Bytes(u64),
    /// By its kind's rule for the volume's data area: 64 bytes per 4 KiB
    /// page for os, Xen's 40 bytes per page plus slack (in 2 MiB chunks) for
    /// hypervisor.
    Auto,
    /// What the other owners leave of the reserve (one owner at most).
    Rest,
}

/// One `--owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerSpec {
    /// Its name.
    pub name: OwnerName,
    /// Its kind.
    pub kind: OwnerKind,
    /// Its size.
    pub size: OwnerSize,
}

/// Why `--owner`s cannot be laid out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("owner '{0}' of kind other has no auto size: give it a SIZE")]
    NoAutoSize(OwnerName),
    #[error("only one owner can take the rest ('{0}' and '{1}' both ask)")]
    TwoRests(OwnerName, OwnerName),
    #[error("owner '{0}' is named twice")]
    Duplicate(OwnerName),
    #[error("more than 16 owners")]
    TooMany,
    #[error(
        "the owners need {} but the reserve is {}",
        Human(*need),
        Human(*reserve)
    )]
    TooLarge { need: u64, reserve: u64 },
    #[error("nothing is left for '{name}' (rest): the other owners take the whole reserve ({})", Human(*reserve))]
    NoRest { name: OwnerName, reserve: u64 },
    #[error("an owner's size of {0} bytes is too large")]
    Overflow(u64),
    #[error("owner '{0}' has size 0: give it a size of at least 4K, or leave it out")]
    ZeroSize(OwnerName),
    #[error(
        "owner '{name}' (os) would get {}, below the {} its page array needs for the {} data area (64 bytes per 4 KiB page): give it at least {}, or auto",
        Exact(*size),
        Exact(*need),
        Human(*data_size),
        crate::layout::minimum_arg(*need)
    )]
    OsOwnerTooSmall {
        name: OwnerName,
        size: u64,
        need: u64,
        data_size: u64,
    },
    #[error(transparent)]
    Table(#[from] OwnerError),
}

impl SplitError {
    /// Whether the `--owner` arguments themselves are at fault, whatever the
    /// volume: a usage error (exit 2), found before the backing is opened.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SplitError::NoAutoSize(_)
                | SplitError::TwoRests(..)
                | SplitError::Duplicate(_)
                | SplitError::TooMany
                | SplitError::ZeroSize(_)
        )
    }
}

/// The checks on `--owner` arguments that need no volume: at most 16, each
/// name once, one `rest` at most, no zero size, no `auto` for kind other.
/// Commands run it before opening the backing.
pub fn check_specs(specs: &[OwnerSpec]) -> Result<(), SplitError> {
    if specs.len() > MAX_OWNERS {
        return Err(SplitError::TooMany);
    }
    let mut rest: Option<OwnerName> = None;
    for (i, spec) in specs.iter().enumerate() {
        if specs[..i].iter().any(|s| s.name == spec.name) {
            return Err(SplitError::Duplicate(spec.name));
        }
        match spec.size {
            OwnerSize::Bytes(0) => return Err(SplitError::ZeroSize(spec.name)),
            OwnerSize::Auto if auto_size(spec.kind, 0).is_none() => {
                return Err(SplitError::NoAutoSize(spec.name));
            }
            OwnerSize::Rest => {
                if let Some(first) = rest {
                    return Err(SplitError::TwoRests(first, spec.name));
                }
                rest = Some(spec.name);
            }
            OwnerSize::Bytes(_) | OwnerSize::Auto => {}
        }
    }
    Ok(())
}

/// The reserve mode a volume formatted with `specs` and no `--mode` gets:
/// the owners' kind when they all share one (a reserve held by one OS's
/// page array is mode os), else hypervisor (the hypervisor boots first and
/// hands the rest on).
pub fn mode_for(specs: &[OwnerSpec]) -> crate::format::ReserveMode {
    use crate::format::ReserveMode;
    if !specs.is_empty() && specs.iter().all(|s| s.kind == OwnerKind::Os) {
        ReserveMode::Os
    } else {
        ReserveMode::Hypervisor
    }
}

/// Bytes an owner of `kind` needs for a data area of `data_size` bytes
/// (`auto`), if its kind has a rule.
pub fn auto_size(kind: OwnerKind, data_size: u64) -> Option<u64> {
    let pages = data_size / PAGE_SIZE;
    match kind {
        OwnerKind::Os => {
            Some(pages.saturating_mul(OS_BYTES_PER_PAGE).div_ceil(PAGE_SIZE) * PAGE_SIZE)
        }
        OwnerKind::Hypervisor => Some(xen_reserve_for_pages(pages)),
        OwnerKind::Other => None,
    }
}

/// Sizes of every owner but the rest, for a data area of `data_size`, and
/// the sum; checks names and the single rest.
fn sizes(specs: &[OwnerSpec], data_size: u64) -> Result<(Vec<u64>, u64), SplitError> {
    check_specs(specs)?;
    let mut out = Vec::with_capacity(specs.len());
    let mut total: u64 = 0;
    for spec in specs {
        let size = match spec.size {
            OwnerSize::Bytes(n) => n
                .checked_next_multiple_of(OWNER_ALIGN)
                .ok_or(SplitError::Overflow(n))?,
            OwnerSize::Auto => {
                auto_size(spec.kind, data_size).ok_or(SplitError::NoAutoSize(spec.name))?
            }
            OwnerSize::Rest => 0,
        };
        total = total.checked_add(size).ok_or(SplitError::Overflow(size))?;
        out.push(size);
    }
    Ok((out, total))
}

/// The smallest reserve the owners fit in, for a data area of at most
/// `max_data` bytes (the auto rules only shrink as the data area does): the
/// sum of their sizes, with a `rest` counted at its kind's `auto` size (4 KiB
/// for kind other) — when the reserve is sized from the owners, what is
/// left for the rest is at least that, plus the rounding to the alignment.
pub fn reserve_for(specs: &[OwnerSpec], max_data: u64) -> Result<u64, SplitError> {
    let (_, total) = sizes(specs, max_data)?;
    let rest = specs
        .iter()
        .find(|s| s.size == OwnerSize::Rest)
        .map_or(0, |s| auto_size(s.kind, max_data).unwrap_or(OWNER_ALIGN));
    Ok(total.saturating_add(rest))
}

/// Lay the owners out from the start of the reserve, in the order given,
/// each right after the one before; `rest` takes what the others leave.
///
/// The table is checked as the reader checks it, and an `os` owner must
/// hold its page array for the data area (64 bytes per 4 KiB page) — the
/// rule `--mode os` applies to a whole reserve, so `format` and `reserve
/// split` refuse the same inputs.
pub fn lay_out_owners(specs: &[OwnerSpec], g: &Geometry) -> Result<Owners, SplitError> {
    let (mut sizes, total) = sizes(specs, g.data_size())?;
    if total > g.reserve_size() {
        return Err(SplitError::TooLarge {
            need: total,
            reserve: g.reserve_size(),
        });
    }
    if let Some(i) = specs.iter().position(|s| s.size == OwnerSize::Rest) {
        let left = g.reserve_size() - total;
        if left == 0 {
            return Err(SplitError::NoRest {
                name: specs[i].name,
                reserve: g.reserve_size(),
            });
        }
        sizes[i] = left;
    }
    let mut owners = Owners::NONE;
    let mut offset = g.reserve_offset();
    for (spec, size) in specs.iter().zip(sizes) {
        owners
            .push(Owner {
                kind: spec.kind,
                name: spec.name,
                offset,
                size,
            })
            .map_err(|_| SplitError::TooMany)?;
        offset += size;
    }
    owners.validate(g.reserve_offset(), g.reserve_size())?;
    for o in owners.iter().filter(|o| o.kind == OwnerKind::Os) {
        let need = auto_size(OwnerKind::Os, g.data_size()).unwrap_or(0);
        if o.size < need {
            return Err(SplitError::OsOwnerTooSmall {
                name: o.name,
                size: o.size,
                need,
                data_size: g.data_size(),
            });
        }
    }
    Ok(owners)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::tests::MemImage;

    const MIB: u64 = 1 << 20;

    fn formatted(size: usize, reserve: u64) -> MemImage {
        let img = MemImage::new(size);
        let g = crate::layout::plan(
            size as u64,
            &crate::layout::LayoutRequest::new(crate::layout::ReserveRequest::Bytes(reserve), None),
        )
        .expect("plan")
        .geometry;
        let generation = metadata::check_format_allowed(&img, false).expect("blank");
        metadata::write_new_volume(&img, g, generation).expect("format");
        img
    }

    #[test]
    fn split_keeps_the_volume_and_bumps_the_generation() {
        let img = formatted(64 << 20, 8 * MIB);
        let mut owners = Owners::NONE;
        owners
            .push(Owner {
                kind: OwnerKind::Hypervisor,
                name: OwnerName::new("xen").expect("name"),
                offset: 2 * MIB,
                size: 4 * MIB,
            })
            .expect("room");
        let (before, next) = plan_split(&img, owners).expect("plan");
        write_split(&img, &next).expect("write");
        let m = metadata::read(&img).expect("read");
        assert!(m.is_healthy());
        let now = m.current.expect("volume");
        assert_eq!(now.uuid, before.uuid);
        assert_eq!(now.geometry, before.geometry);
        assert_eq!(now.generation, before.generation + 1);
        assert_eq!(now.owners, owners);
        assert_eq!(now.version_minor, 1);
        assert_eq!(now, next);
    }

    #[test]
    fn grow_moves_the_backup_and_extends_the_data_area() {
        let img = formatted(64 << 20, 8 * MIB);
        img.bytes.borrow_mut().resize(128 << 20, 0);
        let plan = plan_grow(&img).expect("plan");
        assert_eq!(plan.after.geometry.device_size(), 128 << 20);
        assert_eq!(
            plan.after.geometry.data_size(),
            plan.before.geometry.data_size() + 64 * MIB
        );
        write_grow(&img, &plan).expect("grow");
        let m = metadata::read(&img).expect("read");
        assert!(m.is_healthy());
        assert_eq!(m.current, Some(plan.after));
        assert!(matches!(
            plan_grow(&img),
            Err(UpdateError::NothingToGrow { .. })
        ));
        let old = usize::try_from(plan.before.geometry.backup_offset()).expect("small");
        assert!(img.bytes.borrow()[old..old + 4096].iter().all(|&b| b == 0));
    }

    fn spec(name: &str, kind: OwnerKind, size: OwnerSize) -> OwnerSpec {
        OwnerSpec {
            name: OwnerName::new(name).expect("name"),
            kind,
            size,
        }
    }

    #[test]
    fn owners_are_laid_out_in_order_with_the_rest_where_it_was_named() {
        let g = Geometry::derive(
            2 << 30,
            crate::format::Alignment::M2,
            crate::format::LogicalBlockSize::B512,
            crate::format::ReserveMode::Hypervisor,
            512 * MIB,
        )
        .expect("geometry");
        let specs = [
            spec("xen", OwnerKind::Hypervisor, OwnerSize::Auto),
            spec("dom0", OwnerKind::Os, OwnerSize::Rest),
            spec("fw", OwnerKind::Other, OwnerSize::Bytes(5000)),
        ];
        let owners = lay_out_owners(&specs, &g).expect("fits");
        let all: Vec<(u64, u64)> = owners.iter().map(|o| (o.offset, o.size)).collect();
        let xen = xen_reserve_for_pages(g.data_size() / 4096);
        assert_eq!(
            all,
            vec![
                (2 * MIB, xen),
                (2 * MIB + xen, 512 * MIB - xen - 8192),
                (514 * MIB - 8192, 8192)
            ]
        );
        owners
            .validate(g.reserve_offset(), g.reserve_size())
            .expect("valid");
        assert_eq!(
            auto_size(OwnerKind::Os, g.data_size()),
            Some(g.data_size() / 64)
        );
        let too_big = [spec("a", OwnerKind::Other, OwnerSize::Bytes(600 * MIB))];
        assert!(matches!(
            lay_out_owners(&too_big, &g),
            Err(SplitError::TooLarge { .. })
        ));
        let other_auto = [spec("a", OwnerKind::Other, OwnerSize::Auto)];
        assert!(matches!(
            lay_out_owners(&other_auto, &g),
            Err(SplitError::NoAutoSize(_))
        ));
        let two = [
            spec("a", OwnerKind::Os, OwnerSize::Rest),
            spec("b", OwnerKind::Os, OwnerSize::Rest),
        ];
        assert!(matches!(
            lay_out_owners(&two, &g),
            Err(SplitError::TwoRests(..))
        ));
        let dup = [
            spec("a", OwnerKind::Os, OwnerSize::Auto),
            spec("a", OwnerKind::Os, OwnerSize::Auto),
        ];
        assert!(matches!(
            lay_out_owners(&dup, &g),
            Err(SplitError::Duplicate(_))
        ));
    }

    #[test]
    fn grow_by_less_than_the_alignment_is_refused_and_writes_nothing() {
        // 65 MiB at 2 MiB alignment: the data area ends at 64 MiB; half a
        // MiB more moves the backup but not the aligned end.
        let img = formatted(65 << 20, 8 * MIB);
        img.bytes.borrow_mut().resize((65 << 20) + (512 << 10), 0);
        let writes = img.writes.borrow().len();
        assert!(matches!(
            plan_grow(&img),
            Err(UpdateError::BelowAlignment { .. })
        ));
        assert_eq!(img.writes.borrow().len(), writes);
    }
}
