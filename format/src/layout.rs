//! Planning a layout from what the user asks for.
//!
//! `format::geometry` says what a valid layout is; this module chooses one:
//! it resolves the reserve mode, sizes an `auto` reserve, and turns every
//! way a request can be impossible into an error that names the limit the user
//! has to respect (the largest reserve that fits, the smallest device, the os
//! minimum).
//!
//! Reserve sizing (documented in `docs/FORMAT.md`):
//! * `os`: Linux's `map=dev` page array needs 64 bytes per 4 KiB page of the
//!   data area; `auto` rounds that up to the alignment.
//! * `hypervisor` (Xen): 32 B `page_info` + 8 B M2P entry = 40 B per 4 KiB page
//!   it manages, allocated in 2 MiB chunks, with per-256 MiB frame table groups
//!   and per-1 GiB M2P blocks. `auto` takes 44 B per page (40 B + 10 % slack for
//!   the group rounding), rounds up to 2 MiB, adds one 2 MiB chunk for the
//!   partial groups at either end, then rounds up to the alignment.
//!
//! The reserve and the data area it describes depend on each other (a larger
//! reserve leaves fewer data pages to describe), so `auto` finds the smallest
//! aligned reserve that covers the data area left after it, by binary search:
//! `reserve - need(data pages(reserve))` only grows with the reserve.
//!
//! The errors here state the limits in bytes; the `pmem-stack` CLI words them
//! for its own options (`--reserve`, `--mode`) and sizes (`512 MiB`).

use crate::geometry::{
    Alignment, Geometry, GeometryError, LogicalBlockSize, ReserveMode, SUPERBLOCK_SIZE,
    data_area_for, data_end_for, os_reserve_minimum, reserve_offset_for,
};
use crate::units::{PAGE_SIZE, PMD_SIZE};

/// Bytes per managed 4 KiB page that the Xen rule budgets (40 B + slack).
pub const XEN_BYTES_PER_PAGE: u64 = 44;
/// Xen allocates its frame table and M2P in 2 MiB (superpage) chunks.
pub const XEN_CHUNK: u64 = PMD_SIZE;

/// How large the reserve should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReserveRequest {
    /// At least this many bytes (rounded up to the alignment).
    Bytes(u64),
    /// Sized by the mode's rule for the data area that results.
    Auto,
}

/// Everything the user chose (or left to defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutRequest {
    /// The reserve size.
    pub reserve: ReserveRequest,
    /// The owner of the reserve; `None` picks `hypervisor` for a non-zero
    /// reserve and `none` for a zero one.
    pub mode: Option<ReserveMode>,
    /// Alignment of reserve and data area ([`Alignment::DEFAULT`] unless
    /// the user chose one).
    pub align: Alignment,
    /// Logical block size of the served device ([`LogicalBlockSize::DEFAULT`]
    /// unless the user chose one).
    pub logical_block_size: LogicalBlockSize,
}

impl LayoutRequest {
    /// A request with the default alignment and block size.
    pub fn new(reserve: ReserveRequest, mode: Option<ReserveMode>) -> LayoutRequest {
        LayoutRequest {
            reserve,
            mode,
            align: Alignment::DEFAULT,
            logical_block_size: LogicalBlockSize::DEFAULT,
        }
    }
}

/// A request that cannot be laid out on this device. Each names the limit
/// the request has to respect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The backing cannot hold the two copies, this reserve and one data
    /// block; `minimum` is the smallest backing that can (`u64::MAX` when
    /// none can).
    #[error(
        "backing of {size} bytes cannot hold two super blocks and one {align}-aligned data block with this reserve; it needs at least {minimum} bytes"
    )]
    DeviceTooSmall {
        size: u64,
        align: Alignment,
        minimum: u64,
    },
    /// The reserve leaves no data block; `largest` is the largest that does.
    #[error(
        "reserve of {requested} bytes is too large for a backing of {device_size} bytes: the largest that leaves a {align} data block is {largest} bytes"
    )]
    ReserveTooLarge {
        requested: u64,
        device_size: u64,
        align: Alignment,
        largest: u64,
    },
    /// Mode os needs 64 bytes per 4 KiB data page; `minimum` is the smallest
    /// reserve that covers the data area it leaves.
    #[error(
        "reserve of {requested} bytes is too small for mode os: the data area left needs at least {minimum} bytes (64 bytes per 4 KiB page)"
    )]
    OsReserveTooSmall { requested: u64, minimum: u64 },
    /// Mode hypervisor or os with a zero reserve.
    #[error("mode {mode} needs a reserve larger than 0")]
    ModeNeedsReserve { mode: ReserveMode },
    /// Mode none with a non-zero reserve.
    #[error("mode none takes no reserve")]
    NoneTakesNoReserve,
}

/// A planned layout, plus advice that is not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The layout to write.
    pub geometry: Geometry,
    /// In mode hypervisor, when the reserve is below what Xen's rule asks
    /// for this data area: what the rule asks for ([`xen_reserve_for_pages`]).
    /// Allowed, but worth a warning.
    pub below_xen_rule: Option<u64>,
}

/// Bytes of reserve the Xen rule asks for to manage `pages` 4 KiB pages.
pub fn xen_reserve_for_pages(pages: u64) -> u64 {
    let table = pages
        .saturating_mul(XEN_BYTES_PER_PAGE)
        .div_ceil(PAGE_SIZE)
        .saturating_mul(PAGE_SIZE);
    table
        .div_ceil(XEN_CHUNK)
        .saturating_mul(XEN_CHUNK)
        .saturating_add(XEN_CHUNK)
}

/// Bytes of reserve a mode's `auto` rule asks for, given the data area size.
fn rule_need(mode: ReserveMode, data_size: u64) -> u64 {
    let pages = data_size / PAGE_SIZE;
    match mode {
        ReserveMode::None => 0,
        ReserveMode::Hypervisor => xen_reserve_for_pages(pages),
        ReserveMode::Os => os_reserve_minimum(data_size),
    }
}

/// The largest aligned reserve that still leaves one aligned data block.
fn largest_reserve(device_size: u64, align: Alignment) -> Option<u64> {
    let end = data_end_for(device_size, align)?;
    end.checked_sub(reserve_offset_for(align))?
        .checked_sub(align.bytes())
}

/// The smallest device that holds this reserve and one aligned data block.
fn smallest_device(align: Alignment, reserve_size: u64) -> u64 {
    // reserve_offset + reserve + one block must end at or before the backup's
    // aligned-down offset, and the backup block follows.
    reserve_offset_for(align)
        .saturating_add(reserve_size)
        .saturating_add(align.bytes())
        .saturating_add(SUPERBLOCK_SIZE)
}

/// Data area size for a given aligned reserve, if one aligned block remains
/// (the rules' own derivation, so the search and the result cannot disagree).
fn data_size_for(device_size: u64, align: Alignment, reserve_size: u64) -> Option<u64> {
    data_area_for(device_size, align, reserve_size).map(|(_, size)| size)
}

/// The smallest aligned reserve `r` with `r >= rule_need(mode, data(r))`.
fn smallest_covering_reserve(device_size: u64, align: Alignment, mode: ReserveMode) -> Option<u64> {
    let largest = largest_reserve(device_size, align)?;
    let step = align.bytes();
    let covers = |units: u64| -> bool {
        let reserve = units * step;
        data_size_for(device_size, align, reserve)
            .is_some_and(|data| reserve >= rule_need(mode, data))
    };
    // Binary search over reserve = units * align, units in 1..=largest/align.
    let (mut lo, mut hi) = (1u64, largest / step);
    if hi < lo || !covers(hi) {
        return None;
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if covers(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo * step)
}

/// The error for a backing too small for a reserve of `reserve_size`.
fn too_small(device_size: u64, align: Alignment, reserve_size: u64) -> LayoutError {
    LayoutError::DeviceTooSmall {
        size: device_size,
        align,
        minimum: smallest_device(align, reserve_size),
    }
}

/// The reserve `--reserve BYTES` gives: rounded up to the alignment, and no
/// larger than the largest that still leaves a data block.
fn explicit_reserve(device_size: u64, align: Alignment, bytes: u64) -> Result<u64, LayoutError> {
    // `None` when rounding up overflows: larger than any backing.
    let rounded = align.align_up(bytes);
    match (
        rounded,
        largest_reserve(device_size, align).filter(|&l| l > 0),
    ) {
        (Some(reserve), Some(largest)) if reserve <= largest => Ok(reserve),
        (_, Some(largest)) => Err(LayoutError::ReserveTooLarge {
            requested: bytes,
            device_size,
            align,
            largest,
        }),
        // Not even the smallest reserve leaves a data block: the backing is
        // too small, by as much as this reserve needs.
        (Some(reserve), None) => Err(too_small(device_size, align, reserve)),
        (None, None) => Err(LayoutError::DeviceTooSmall {
            size: device_size,
            align,
            minimum: u64::MAX,
        }),
    }
}

/// The reserve `--reserve auto` gives: the smallest that covers the mode's
/// rule for the data area left after it.
fn auto_reserve(device_size: u64, align: Alignment, mode: ReserveMode) -> Result<u64, LayoutError> {
    smallest_covering_reserve(device_size, align, mode).ok_or_else(|| {
        // The smallest device where `auto` works holds one data block and the
        // reserve that block needs.
        let need = rule_need(mode, align.bytes());
        let reserve = align
            .align_up(need)
            .expect("invariant: the reserve for one block of at most 1 GiB is a few MiB");
        too_small(device_size, align, reserve)
    })
}

/// Choose the layout for `request` on a backing of `device_size` bytes.
pub fn plan(device_size: u64, request: &LayoutRequest) -> Result<Plan, LayoutError> {
    let align = request.align;
    let mode = match (request.mode, request.reserve) {
        (Some(ReserveMode::None), ReserveRequest::Bytes(n)) if n > 0 => {
            return Err(LayoutError::NoneTakesNoReserve);
        }
        (Some(mode @ (ReserveMode::Hypervisor | ReserveMode::Os)), ReserveRequest::Bytes(0)) => {
            return Err(LayoutError::ModeNeedsReserve { mode });
        }
        (Some(mode), _) => mode,
        (None, ReserveRequest::Bytes(0)) => ReserveMode::None,
        (None, _) => ReserveMode::Hypervisor,
    };

    let reserve_size = match (mode, request.reserve) {
        (ReserveMode::None, _) => 0,
        (_, ReserveRequest::Bytes(bytes)) => explicit_reserve(device_size, align, bytes)?,
        (mode, ReserveRequest::Auto) => auto_reserve(device_size, align, mode)?,
    };

    let geometry = Geometry::derive(
        device_size,
        align,
        request.logical_block_size,
        mode,
        reserve_size,
    )
    .map_err(|err| match err {
        GeometryError::OsReserveTooSmall { .. } => LayoutError::OsReserveTooSmall {
            // As asked for, not as rounded: the message quotes the user.
            requested: match request.reserve {
                ReserveRequest::Bytes(asked) => asked,
                ReserveRequest::Auto => reserve_size,
            },
            minimum: smallest_covering_reserve(device_size, align, ReserveMode::Os)
                .unwrap_or_else(|| os_reserve_minimum(device_size)),
        },
        _ => too_small(device_size, align, reserve_size),
    })?;

    let need = xen_reserve_for_pages(geometry.data_size() / PAGE_SIZE);
    let below_xen_rule =
        (mode == ReserveMode::Hypervisor && geometry.reserve_size() < need).then_some(need);
    Ok(Plan {
        geometry,
        below_xen_rule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn req(reserve: ReserveRequest, mode: Option<ReserveMode>, align: Alignment) -> LayoutRequest {
        LayoutRequest {
            reserve,
            mode,
            align,
            logical_block_size: LogicalBlockSize::B512,
        }
    }

    #[test]
    fn issue_example_two_gib_512m() {
        let p = plan(
            2 * GIB,
            &LayoutRequest::new(ReserveRequest::Bytes(512 * MIB), None),
        )
        .expect("fits");
        let g = p.geometry;
        assert_eq!(g.mode(), ReserveMode::Hypervisor);
        assert_eq!((g.reserve_offset(), g.reserve_size()), (2 * MIB, 512 * MIB));
        assert_eq!((g.data_offset(), g.data_size()), (514 * MIB, 1532 * MIB));
        assert_eq!(p.below_xen_rule, None);
    }

    #[test]
    fn zero_reserve_is_pass_through() {
        let g = plan(
            64 * MIB,
            &LayoutRequest::new(ReserveRequest::Bytes(0), None),
        )
        .expect("fits")
        .geometry;
        assert_eq!(g.mode(), ReserveMode::None);
        assert_eq!(g.reserve_size(), 0);
        assert_eq!(g.data_offset(), 2 * MIB);
        let g = plan(
            64 * MIB,
            &LayoutRequest::new(ReserveRequest::Auto, Some(ReserveMode::None)),
        )
        .expect("fits")
        .geometry;
        assert_eq!(g.reserve_size(), 0);
    }

    #[test]
    fn reserve_rounds_up_to_alignment() {
        let g = plan(
            4 * GIB,
            &req(ReserveRequest::Bytes(MIB), None, Alignment::G1),
        )
        .expect("fits")
        .geometry;
        assert_eq!(g.reserve_offset(), GIB);
        assert_eq!(g.reserve_size(), GIB);
        let g = plan(
            64 * MIB,
            &req(ReserveRequest::Bytes(5000), None, Alignment::K4),
        )
        .expect("fits")
        .geometry;
        assert_eq!((g.reserve_offset(), g.reserve_size()), (8192, 8192));
    }

    #[test]
    fn xen_rule_matches_the_design_numbers() {
        // 1 TiB managed: about 11 GiB; 48 GiB managed: about 0.5 GiB.
        let tib_pages = (1u64 << 40) / PAGE_SIZE;
        assert_eq!(xen_reserve_for_pages(tib_pages), 11 * GIB + 2 * MIB);
        let r = xen_reserve_for_pages(48 * GIB / PAGE_SIZE);
        assert_eq!(r, 530 * MIB);
        // At least 40 bytes per page always.
        assert!(xen_reserve_for_pages(12345) >= 12345 * 40);
    }

    #[test]
    fn auto_hypervisor_on_two_gib() {
        let g = plan(2 * GIB, &LayoutRequest::new(ReserveRequest::Auto, None))
            .expect("fits")
            .geometry;
        assert_eq!(g.mode(), ReserveMode::Hypervisor);
        let need = xen_reserve_for_pages(g.data_size() / PAGE_SIZE);
        assert!(g.reserve_size() >= need);
        // Minimal: one alignment step less would not cover.
        let smaller = g.reserve_size() - g.align().bytes();
        let data = data_size_for(2 * GIB, g.align(), smaller).expect("room");
        assert!(smaller < xen_reserve_for_pages(data / PAGE_SIZE));
        // 2020 MiB of data = 517120 pages * 44 B = 21.7 MiB -> 22 MiB + 2 MiB.
        assert_eq!(g.reserve_size(), 24 * MIB);
    }

    #[test]
    fn auto_os_on_two_gib() {
        let g = plan(
            2 * GIB,
            &LayoutRequest::new(ReserveRequest::Auto, Some(ReserveMode::Os)),
        )
        .expect("fits")
        .geometry;
        // ~2 GiB of data needs ~32 MiB; after the reserve, 2044 MiB -> 31.9 MiB -> 32 MiB.
        assert_eq!(g.reserve_size(), 32 * MIB);
        assert!(g.reserve_size() >= os_reserve_minimum(g.data_size()));
    }

    #[test]
    fn os_too_small_names_the_minimum() {
        let err = plan(
            2 * GIB,
            &req(
                ReserveRequest::Bytes(4 * MIB),
                Some(ReserveMode::Os),
                Alignment::M2,
            ),
        )
        .expect_err("too small");
        assert_eq!(
            err,
            LayoutError::OsReserveTooSmall {
                requested: 4 * MIB,
                minimum: 32 * MIB
            }
        );
        let text = err.to_string();
        assert!(text.contains("33554432 bytes"), "{text}");
    }

    #[test]
    fn reserve_too_large_names_the_largest() {
        let err = plan(
            2 * GIB,
            &LayoutRequest::new(ReserveRequest::Bytes(2 * GIB), None),
        )
        .expect_err("too large");
        assert_eq!(
            err,
            LayoutError::ReserveTooLarge {
                requested: 2 * GIB,
                device_size: 2 * GIB,
                align: Alignment::M2,
                largest: 2 * GIB - 6 * MIB,
            }
        );
        // And the largest one does fit.
        plan(
            2 * GIB,
            &LayoutRequest::new(ReserveRequest::Bytes(2 * GIB - 6 * MIB), None),
        )
        .expect("largest fits");
    }

    #[test]
    fn a_reserve_beyond_u64_names_a_real_limit() {
        // Rounding u64::MAX up overflows; the answer is still the largest
        // reserve that fits, or that the backing is too small, never "0".
        assert_eq!(
            plan(
                2 * GIB,
                &LayoutRequest::new(ReserveRequest::Bytes(u64::MAX), None)
            ),
            Err(LayoutError::ReserveTooLarge {
                requested: u64::MAX,
                device_size: 2 * GIB,
                align: Alignment::M2,
                largest: 2 * GIB - 6 * MIB,
            })
        );
        let err = plan(
            4 * MIB,
            &LayoutRequest::new(ReserveRequest::Bytes(u64::MAX), None),
        )
        .expect_err("tiny");
        assert!(
            matches!(err, LayoutError::DeviceTooSmall { minimum, .. } if minimum == u64::MAX),
            "{err:?}"
        );
    }

    #[test]
    fn device_too_small() {
        let err = plan(4 * MIB, &LayoutRequest::new(ReserveRequest::Bytes(0), None))
            .expect_err("too small");
        assert!(
            matches!(err, LayoutError::DeviceTooSmall { minimum, .. } if minimum == 4 * MIB + 4096)
        );
        plan(
            4 * MIB + 4096,
            &LayoutRequest::new(ReserveRequest::Bytes(0), None),
        )
        .expect("exactly the minimum fits");
        let err =
            plan(8192, &LayoutRequest::new(ReserveRequest::Bytes(0), None)).expect_err("tiny");
        assert!(matches!(err, LayoutError::DeviceTooSmall { .. }));
        assert!(err.to_string().contains("at least"));
    }

    #[test]
    fn mode_and_reserve_must_agree() {
        assert_eq!(
            plan(
                GIB,
                &LayoutRequest::new(ReserveRequest::Bytes(0), Some(ReserveMode::Os))
            ),
            Err(LayoutError::ModeNeedsReserve {
                mode: ReserveMode::Os
            })
        );
        assert_eq!(
            plan(
                GIB,
                &LayoutRequest::new(ReserveRequest::Bytes(4 * MIB), Some(ReserveMode::None))
            ),
            Err(LayoutError::NoneTakesNoReserve)
        );
    }

    #[test]
    fn small_hypervisor_reserve_warns() {
        let p = plan(
            64 * GIB,
            &LayoutRequest::new(ReserveRequest::Bytes(2 * MIB), None),
        )
        .expect("fits");
        let need = xen_reserve_for_pages(p.geometry.data_size() / PAGE_SIZE);
        assert_eq!(p.below_xen_rule, Some(need));
        assert!(need > 2 * MIB);
    }

    fn any_align() -> impl Strategy<Value = Alignment> {
        prop_oneof![
            Just(Alignment::K4),
            Just(Alignment::M2),
            Just(Alignment::G1)
        ]
    }

    fn any_mode() -> impl Strategy<Value = Option<ReserveMode>> {
        prop_oneof![
            Just(None),
            Just(Some(ReserveMode::None)),
            Just(Some(ReserveMode::Hypervisor)),
            Just(Some(ReserveMode::Os))
        ]
    }

    fn any_reserve() -> impl Strategy<Value = ReserveRequest> {
        prop_oneof![
            Just(ReserveRequest::Auto),
            Just(ReserveRequest::Bytes(0)),
            (0u64..(64 * GIB)).prop_map(ReserveRequest::Bytes),
            (0u64..(8 * MIB)).prop_map(ReserveRequest::Bytes),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every plan is valid, its regions are disjoint, aligned, ordered,
        /// inside the device, and the reserve is at least what was asked.
        #[test]
        fn plans_are_sound(
            device_size in prop_oneof![0u64..(16 * MIB), 0u64..(8 << 40)],
            align in any_align(),
            mode in any_mode(),
            reserve in any_reserve(),
        ) {
            let request = req(reserve, mode, align);
            match plan(device_size, &request) {
                Ok(Plan { geometry: g, .. }) => {
                    prop_assert_eq!(g.validate(), Ok(()));
                    let a = align.bytes();
                    // Untouched head and primary copy come first.
                    prop_assert!(g.reserve_offset() >= 8192);
                    prop_assert!(g.reserve_offset() % a == 0 && g.reserve_size() % a == 0);
                    prop_assert!(g.data_offset() % a == 0 && g.data_size() % a == 0);
                    prop_assert!(g.reserve_end() <= g.data_offset());
                    prop_assert!(g.data_size() >= a);
                    prop_assert!(g.data_end() <= g.backup_offset());
                    prop_assert!(g.backup_offset() + 4096 <= device_size);
                    prop_assert!(g.backup_offset() % 4096 == 0);
                    // Nothing aligned is wasted before the backup.
                    prop_assert!(g.backup_offset() - g.data_end() < a);
                    match reserve {
                        ReserveRequest::Bytes(n) => prop_assert!(g.reserve_size() >= n),
                        ReserveRequest::Auto => prop_assert!(
                            g.reserve_size() >= rule_need(g.mode(), g.data_size())
                        ),
                    }
                    if g.mode() == ReserveMode::Os {
                        prop_assert!(g.reserve_size() >= os_reserve_minimum(g.data_size()));
                    }
                }
                Err(LayoutError::ReserveTooLarge { largest, .. }) => {
                    // The named limit really is the limit.
                    let ok = plan(device_size, &req(ReserveRequest::Bytes(largest), mode, align));
                    prop_assert!(
                        ok.is_ok() || matches!(ok, Err(LayoutError::OsReserveTooSmall { .. })),
                        "{:?}", ok
                    );
                }
                Err(LayoutError::DeviceTooSmall { minimum, .. }) => {
                    prop_assert!(minimum > device_size);
                }
                Err(LayoutError::OsReserveTooSmall { minimum, .. }) => {
                    prop_assert!(plan(device_size, &req(ReserveRequest::Bytes(minimum), mode, align)).is_ok());
                }
                Err(LayoutError::ModeNeedsReserve { .. } | LayoutError::NoneTakesNoReserve) => {}
            }
        }

        /// `auto` is minimal: one alignment step less no longer covers.
        #[test]
        fn auto_is_minimal(
            device_size in (64 * MIB)..(4 << 40),
            align in prop_oneof![Just(Alignment::K4), Just(Alignment::M2)],
            mode in prop_oneof![Just(ReserveMode::Hypervisor), Just(ReserveMode::Os)],
        ) {
            if let Ok(p) = plan(device_size, &req(ReserveRequest::Auto, Some(mode), align)) {
                let g = p.geometry;
                let smaller = g.reserve_size() - align.bytes();
                if smaller > 0 {
                    let data = data_size_for(device_size, align, smaller).expect("more room");
                    prop_assert!(smaller < rule_need(mode, data));
                }
            }
        }
    }
}
