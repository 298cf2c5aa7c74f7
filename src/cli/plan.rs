//! What `add` and `map` serve, decided before anything is written: the
//! library's plan (`volume::plan_add`), with its warnings said the way the
//! CLI says them.

use pmem_stack::backing::Backing;
use pmem_stack::metadata;
use pmem_stack::server::Volume;
use pmem_stack::volume::{self, AddPlan, LayoutOptions, VolumeError};

/// What `add` and `map` serve, writing nothing: the recorded volume (with a
/// warning for a copy that is not ok: repair it once the device named by
/// `until` is gone), or the plan to format a blank backing first.
pub fn plan_volume(
    backing: &Backing,
    options: &LayoutOptions,
    force: bool,
    until: &str,
) -> Result<Volume, VolumeError> {
    Ok(match volume::plan_add(backing, options, force)? {
        AddPlan::Existing {
            superblock,
            metadata,
        } => {
            for report in [&metadata.primary, &metadata.backup] {
                if report.state != metadata::CopyState::Ok {
                    eprintln!(
                        "warning: the {} super block copy is {}; run 'pmem-stack check --repair' once the {until}",
                        report.slot.name(),
                        metadata::describe_copy(report)
                    );
                }
            }
            Volume::Existing(superblock)
        }
        AddPlan::Format(plan) => {
            for warning in &plan.plan.warnings {
                eprintln!("warning: {warning}");
            }
            Volume::Format(plan)
        }
    })
}
