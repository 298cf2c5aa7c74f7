//! A volume on a backing, decided and changed before and without serving it.
//!
//! - [`plan`]: what `format` and `add` will do with a backing — a new
//!   layout, or the recorded one checked against the options given —
//!   decided before anything is written.
//! - [`amend`]: changing a formatted volume in place, keeping its uuid and
//!   data: the reserve's owner table (`reserve split`) and the size after
//!   the backing grew (`grow`).
//!
//! Both sit on [`crate::metadata`], which reads and writes the two copies;
//! the planning of `plan` is re-exported here, where its callers name it.

pub mod amend;
pub mod plan;

pub use plan::{
    AddPlan, FormatPlan, LayoutOptions, VolumeError, describe_geometry, plan_add, plan_format,
};
