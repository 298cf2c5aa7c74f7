//! Planning a layout from what the user asks for: the format crate's planner
//! (`pmem_stack_format::layout`, which documents the sizing rules), with its
//! errors and advice worded for the command line — the options to change
//! (`--reserve`, `--mode`) and sizes people read (`512 MiB`).

use std::fmt;

pub use pmem_stack_format::layout::{
    LayoutError, LayoutRequest, ReserveRequest, XEN_BYTES_PER_PAGE, XEN_CHUNK,
    xen_reserve_for_pages,
};

use crate::format::Geometry;
use crate::size::{Exact, Human};

/// A planned layout, plus advice that is not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The layout to write.
    pub geometry: Geometry,
    /// Warnings worth showing (e.g. a hypervisor reserve below Xen's rule).
    pub warnings: Vec<String>,
    /// What the layout did to the sizes asked for (a `--reserve` rounded up
    /// to the alignment), quoting them as given: nothing is rounded silently.
    pub notes: Vec<String>,
}

/// Choose the layout for `request` on a backing of `device_size` bytes.
pub fn plan(device_size: u64, request: &LayoutRequest) -> Result<Plan, LayoutError> {
    let plan = pmem_stack_format::layout::plan(device_size, request)?;
    let geometry = plan.geometry;
    let warnings = plan
        .below_xen_rule
        .map(|need| {
            format!(
                "reserve {} is below what Xen's frame table and M2P need for this data area ({}, see --reserve auto)",
                Human(geometry.reserve_size()),
                Human(need)
            )
        })
        .into_iter()
        .collect();
    let mut notes = Vec::new();
    if let ReserveRequest::Bytes(asked) = request.reserve
        && asked != geometry.reserve_size()
    {
        notes.push(format!(
            "--reserve {} rounded up to {}: the reserve is a whole number of --align {} steps",
            Exact(asked),
            Exact(geometry.reserve_size()),
            geometry.align()
        ));
    }
    Ok(Plan {
        geometry,
        warnings,
        notes,
    })
}

/// `--reserve` naming at least `bytes`, in whole MiB.
pub fn minimum_arg(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    format!("{}M", bytes.div_ceil(MIB))
}

/// A [`LayoutError`] as the CLI says it.
#[derive(Debug, Clone, Copy)]
pub struct Explained<'a>(pub &'a LayoutError);

impl fmt::Display for Explained<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self.0 {
            LayoutError::DeviceTooSmall {
                size,
                align,
                minimum,
            } => write!(
                f,
                "backing is too small: {} ({size} bytes) cannot hold two super blocks and one {align}-aligned data block with this reserve; it needs at least {} ({minimum} bytes)",
                Human(size),
                Human(minimum)
            ),
            LayoutError::ReserveTooLarge {
                requested,
                device_size,
                align,
                largest,
            } => write!(
                f,
                "reserve {} is too large for this {} backing: the largest that leaves a {align} data block is {}",
                Exact(requested),
                Exact(device_size),
                Exact(largest)
            ),
            LayoutError::OsReserveTooSmall { requested, minimum } => write!(
                f,
                "reserve {} is too small for --mode os: the data area left needs at least {} ({minimum} bytes, 64 bytes per 4 KiB page); pass --reserve {} or --reserve auto",
                Exact(requested),
                Human(minimum),
                minimum_arg(minimum)
            ),
            LayoutError::ModeNeedsReserve { mode } => write!(
                f,
                "--mode {mode} needs a reserve larger than 0 (or use --reserve 0 without --mode for a pass-through)"
            ),
            LayoutError::NoneTakesNoReserve => f.write_str(
                "--mode none takes no reserve; use --reserve 0 (or auto), or choose --mode hypervisor|os",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Alignment, ReserveMode};

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn explain(device_size: u64, request: LayoutRequest) -> String {
        let err = plan(device_size, &request).expect_err("refused");
        Explained(&err).to_string()
    }

    #[test]
    fn errors_name_the_option_to_change() {
        let mut os = LayoutRequest::new(ReserveRequest::Bytes(4 * MIB), Some(ReserveMode::Os));
        os.align = Alignment::M2;
        assert_eq!(
            explain(2 * GIB, os),
            "reserve 4 MiB is too small for --mode os: the data area left needs at least 32 MiB (33554432 bytes, 64 bytes per 4 KiB page); pass --reserve 32M or --reserve auto"
        );
        assert_eq!(
            explain(
                2 * GIB,
                LayoutRequest::new(ReserveRequest::Bytes(2 * GIB), None)
            ),
            "reserve 2 GiB is too large for this 2 GiB backing: the largest that leaves a 2M data block is 2141192192 bytes (1.99 GiB)"
        );
        let text = explain(4 * MIB, LayoutRequest::new(ReserveRequest::Bytes(0), None));
        assert!(
            text.starts_with("backing is too small: 4 MiB (4194304 bytes)"),
            "{text}"
        );
        assert!(text.contains("at least 4.00 MiB (4198400 bytes)"), "{text}");
        assert!(
            explain(
                GIB,
                LayoutRequest::new(ReserveRequest::Bytes(0), Some(ReserveMode::Os))
            )
            .starts_with("--mode os needs a reserve")
        );
        assert!(
            explain(
                GIB,
                LayoutRequest::new(ReserveRequest::Bytes(MIB), Some(ReserveMode::None))
            )
            .starts_with("--mode none takes no reserve")
        );
    }

    #[test]
    fn rounding_is_noted_quoting_the_size_asked_for() {
        let p = plan(
            8 * GIB,
            &LayoutRequest {
                align: Alignment::G1,
                ..LayoutRequest::new(ReserveRequest::Bytes(512 * MIB), None)
            },
        )
        .expect("fits");
        assert_eq!(p.geometry.reserve_size(), GIB);
        assert_eq!(
            p.notes,
            [
                "--reserve 512 MiB rounded up to 1 GiB: the reserve is a whole number of --align 1G steps"
            ]
        );
        let p = plan(GIB, &LayoutRequest::new(ReserveRequest::Bytes(4096), None)).expect("fits");
        assert_eq!(
            p.notes,
            [
                "--reserve 4 KiB rounded up to 2 MiB: the reserve is a whole number of --align 2M steps"
            ]
        );
        let p = plan(
            GIB,
            &LayoutRequest::new(ReserveRequest::Bytes(512_000_000), None),
        )
        .expect("fits");
        assert!(
            p.notes[0].starts_with("--reserve 512000000 bytes (488.28 MiB) rounded up to 490 MiB"),
            "{:?}",
            p.notes
        );
        let exact = plan(
            GIB,
            &LayoutRequest::new(ReserveRequest::Bytes(8 * MIB), None),
        )
        .expect("fits");
        assert!(exact.notes.is_empty());
    }

    #[test]
    fn the_os_minimum_quotes_the_reserve_as_typed() {
        let text = explain(
            2 * GIB,
            LayoutRequest::new(ReserveRequest::Bytes(MIB), Some(ReserveMode::Os)),
        );
        assert!(
            text.starts_with("reserve 1 MiB is too small for --mode os"),
            "{text}"
        );
    }

    #[test]
    fn small_hypervisor_reserve_warns() {
        let p = plan(
            64 * GIB,
            &LayoutRequest::new(ReserveRequest::Bytes(2 * MIB), None),
        )
        .expect("fits");
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("Xen"), "{:?}", p.warnings);
        assert!(p.warnings[0].starts_with("reserve 2 MiB is below"));
        let p = plan(2 * GIB, &LayoutRequest::new(ReserveRequest::Auto, None)).expect("fits");
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }
}
