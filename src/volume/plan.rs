//! Deciding what `format` and `add` do with a backing, before anything is
//! written.
//!
//! `format` lays out a new volume (refusing existing or foreign data unless
//! forced). `add` reuses the layout a formatted backing records — a layout
//! option that disagrees with it is an error, because re-laying out a volume
//! moves its data area and is `format --force`'s job — or, on a blank backing,
//! formats it with the same rules and refusals as `format`.

use crate::format::{Alignment, Geometry, LogicalBlockSize, ReserveMode, SuperBlock};
use crate::layout::{self, LayoutError, LayoutRequest, Plan, ReserveRequest};
use crate::metadata::{self, Metadata, MetadataError, MetadataIo};
use crate::remedy::{HasRemedy, Remedy};
use crate::size::Human;

/// Layout options as given on the command line; all optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayoutOptions {
    /// `--reserve`.
    pub reserve: Option<ReserveRequest>,
    /// `--mode`.
    pub mode: Option<ReserveMode>,
    /// `--align`.
    pub align: Option<Alignment>,
    /// `--block-size`.
    pub block_size: Option<LogicalBlockSize>,
}

impl LayoutOptions {
    /// Whether no layout option was given.
    pub fn is_empty(&self) -> bool {
        *self == LayoutOptions::default()
    }

    /// The request for a new layout; `None` when the reserve is missing
    /// (`--mode none` implies a zero reserve).
    pub fn request(&self) -> Option<LayoutRequest> {
        let reserve = match (self.reserve, self.mode) {
            (Some(reserve), _) => reserve,
            (None, Some(ReserveMode::None)) => ReserveRequest::Bytes(0),
            (None, _) => return None,
        };
        Some(LayoutRequest {
            reserve,
            mode: self.mode,
            align: self.align.unwrap_or(Alignment::DEFAULT),
            logical_block_size: self.block_size.unwrap_or(LogicalBlockSize::DEFAULT),
        })
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        match self.reserve {
            Some(ReserveRequest::Bytes(0)) => parts.push("--reserve 0".to_string()),
            Some(ReserveRequest::Bytes(n)) => parts.push(format!("--reserve {}", Human(n))),
            Some(ReserveRequest::Auto) => parts.push("--reserve auto".to_string()),
            None => {}
        }
        if let Some(mode) = self.mode {
            parts.push(format!("--mode {mode}"));
        }
        if let Some(align) = self.align {
            parts.push(format!("--align {align}"));
        }
        if let Some(bs) = self.block_size {
            parts.push(format!("--block-size {}", bs.bytes()));
        }
        parts.join(" ")
    }
}

/// Describe a recorded layout in the words of the options.
pub fn describe_geometry(g: &Geometry) -> String {
    format!(
        "reserve {} ({}), align {}, {}-byte blocks",
        Human(g.reserve_size()),
        g.mode(),
        g.align(),
        g.logical_block_size().bytes()
    )
}

/// Why a volume cannot be formatted or served as asked.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("{}", layout::Explained(.0))]
    Layout(LayoutError),
    #[error("no reserve given")]
    FormatNeedsReserve,
    #[error("it is not formatted yet")]
    AddNeedsReserve,
    #[error("{given} disagrees with the layout it records ({recorded})")]
    Disagrees { given: String, recorded: String },
}

impl From<LayoutError> for VolumeError {
    fn from(err: LayoutError) -> VolumeError {
        VolumeError::Layout(err)
    }
}

impl HasRemedy for VolumeError {
    fn remedy(&self) -> Option<Remedy> {
        match self {
            VolumeError::Metadata(err) => err.remedy(),
            VolumeError::Layout(_) => None,
            VolumeError::FormatNeedsReserve => Some(Remedy::GiveReserve),
            VolumeError::AddNeedsReserve => Some(Remedy::GiveReserveToServe),
            VolumeError::Disagrees { .. } => Some(Remedy::ServeAsRecorded),
        }
    }
}

/// A format that may proceed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatPlan {
    /// The layout and its warnings.
    pub plan: Plan,
    /// Generation for the new volume.
    pub generation: u64,
}

/// Check everything `format` needs, writing nothing.
pub fn plan_format<M: MetadataIo + ?Sized>(
    io: &M,
    options: &LayoutOptions,
    force: bool,
) -> Result<FormatPlan, VolumeError> {
    let request = options.request().ok_or(VolumeError::FormatNeedsReserve)?;
    // Layout errors first: they do not depend on what is on the backing.
    let plan = layout::plan(io.size(), &request)?;
    let generation = metadata::check_format_allowed(io, force)?;
    Ok(FormatPlan { plan, generation })
}

/// What `add` will do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddPlan {
    /// Serve the recorded volume.
    Existing {
        /// The newest valid super block (boxed: about 1 KiB with its owner table).
        superblock: Box<SuperBlock>,
        /// Health of both copies (a warning when not both ok).
        metadata: Box<Metadata>,
    },
    /// Format first, then serve.
    Format(FormatPlan),
}

/// Check everything `add` needs, writing nothing.
pub fn plan_add<M: MetadataIo + ?Sized>(
    io: &M,
    options: &LayoutOptions,
    force: bool,
) -> Result<AddPlan, VolumeError> {
    match metadata::open_volume(io) {
        Ok((superblock, metadata)) => {
            if !options.is_empty() {
                check_agrees(options, &superblock.geometry)?;
            }
            Ok(AddPlan::Existing {
                superblock: Box::new(superblock),
                metadata: Box::new(metadata),
            })
        }
        Err(MetadataError::NotFormatted) => {
            if options.request().is_none() {
                return Err(VolumeError::AddNeedsReserve);
            }
            plan_format(io, options, force).map(AddPlan::Format)
        }
        // --force means what it means to `format`: write a new volume over
        // what is there when no volume of this device can be served — a
        // copy of another layout, damaged copies, a newer version's volume.
        // A volume that can be served is served, never re-laid out.
        Err(
            MetadataError::OtherLayout { .. }
            | MetadataError::NoValidCopy { .. }
            | MetadataError::Unsupported { .. },
        ) if force && options.request().is_some() => {
            plan_format(io, options, force).map(AddPlan::Format)
        }
        Err(err) => Err(err.into()),
    }
}

/// The options, completed with the recorded values, must give the recorded
/// layout again.
fn check_agrees(options: &LayoutOptions, recorded: &Geometry) -> Result<(), VolumeError> {
    let request = LayoutRequest {
        reserve: options
            .reserve
            .unwrap_or(ReserveRequest::Bytes(recorded.reserve_size())),
        mode: Some(options.mode.unwrap_or(recorded.mode())),
        align: options.align.unwrap_or(recorded.align()),
        logical_block_size: options.block_size.unwrap_or(recorded.logical_block_size()),
    };
    // Options that cannot be laid out at all cannot give the recorded layout.
    let agrees =
        layout::plan(recorded.device_size(), &request).is_ok_and(|plan| plan.geometry == *recorded);
    if agrees {
        Ok(())
    } else {
        Err(VolumeError::Disagrees {
            given: options.describe(),
            recorded: describe_geometry(recorded),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::tests::MemImage;

    const MIB: u64 = 1 << 20;

    fn opts(reserve: Option<ReserveRequest>) -> LayoutOptions {
        LayoutOptions {
            reserve,
            ..LayoutOptions::default()
        }
    }

    fn formatted_with(reserve: u64) -> MemImage {
        let img = MemImage::new(64 << 20);
        let fp =
            plan_format(&img, &opts(Some(ReserveRequest::Bytes(reserve))), false).expect("plan");
        metadata::write_new_volume(&img, fp.plan.geometry, fp.generation).expect("format");
        img
    }

    #[test]
    fn format_needs_a_reserve_unless_mode_none() {
        let img = MemImage::new(64 << 20);
        assert!(matches!(
            plan_format(&img, &LayoutOptions::default(), false),
            Err(VolumeError::FormatNeedsReserve)
        ));
        let none = LayoutOptions {
            mode: Some(ReserveMode::None),
            ..LayoutOptions::default()
        };
        let fp = plan_format(&img, &none, false).expect("mode none");
        assert_eq!(fp.plan.geometry.reserve_size(), 0);
        assert!(img.writes.borrow().is_empty(), "planning writes nothing");
    }

    #[test]
    fn add_on_blank_without_reserve_says_what_to_pass() {
        let img = MemImage::new(64 << 20);
        let err = plan_add(&img, &LayoutOptions::default(), false).expect_err("blank");
        // The CLI turns this remedy into "pass --reserve SIZE|auto ...".
        assert_eq!(err.remedy(), Some(Remedy::GiveReserveToServe), "{err}");
    }

    #[test]
    fn add_reuses_and_checks_agreement() {
        let img = formatted_with(8 * MIB);
        assert!(matches!(
            plan_add(&img, &LayoutOptions::default(), false),
            Ok(AddPlan::Existing { .. })
        ));
        // The same options again agree.
        assert!(matches!(
            plan_add(&img, &opts(Some(ReserveRequest::Bytes(8 * MIB))), false),
            Ok(AddPlan::Existing { .. })
        ));
        // 7 MiB rounds to 8 MiB at 2M alignment: the same layout.
        assert!(plan_add(&img, &opts(Some(ReserveRequest::Bytes(7 * MIB))), false).is_ok());
        for bad in [
            opts(Some(ReserveRequest::Bytes(4 * MIB))),
            LayoutOptions {
                mode: Some(ReserveMode::Os),
                ..LayoutOptions::default()
            },
            LayoutOptions {
                align: Some(Alignment::K4),
                ..LayoutOptions::default()
            },
            LayoutOptions {
                block_size: Some(LogicalBlockSize::B4096),
                ..LayoutOptions::default()
            },
        ] {
            let err = plan_add(&img, &bad, false).expect_err("disagrees");
            let text = err.to_string();
            assert!(text.contains("disagrees"), "{text}");
            assert!(text.contains("reserve 8 MiB (hypervisor)"), "{text}");
        }
        assert!(img.writes.borrow().len() == 2, "only the format wrote");
    }

    #[test]
    fn add_force_formats_over_another_layouts_copy_as_format_force_does() {
        // The copy a 64 MiB volume left at its end, found on a device that
        // is now 2 MiB larger: another layout.
        let old = formatted_with(8 * MIB);
        let img = MemImage::new((64 << 20) + (2 << 20));
        let backup = old.bytes.borrow()[(64 << 20) - 4096..].to_vec();
        img.bytes.borrow_mut()[(66 << 20) - 4096..].copy_from_slice(&backup);
        let options = opts(Some(ReserveRequest::Bytes(8 * MIB)));
        let refused = plan_add(&img, &options, false).expect_err("another layout");
        assert!(
            matches!(
                refused,
                VolumeError::Metadata(MetadataError::OtherLayout { .. })
            ),
            "{refused}"
        );
        assert!(
            plan_format(&img, &options, true).is_ok(),
            "format --force takes it"
        );
        assert!(
            matches!(plan_add(&img, &options, true), Ok(AddPlan::Format(_))),
            "add --force takes it too"
        );
        // Without a layout to write, --force has nothing to format with.
        assert!(plan_add(&img, &LayoutOptions::default(), true).is_err());
    }

    #[test]
    fn layout_errors_come_before_content_checks() {
        let img = formatted_with(8 * MIB);
        let err = plan_format(&img, &opts(Some(ReserveRequest::Bytes(1 << 30))), false)
            .expect_err("too large");
        assert!(matches!(
            err,
            VolumeError::Layout(LayoutError::ReserveTooLarge { .. })
        ));
        let err = plan_format(&img, &opts(Some(ReserveRequest::Bytes(MIB))), false)
            .expect_err("existing");
        assert!(
            err.to_string()
                .contains("already holds a pmem-stack volume"),
            "{err}"
        );
    }
}
