//! The on-media format, version 1: pure data, no I/O.
//!
//! * [`geometry`]: what a valid layout is (the rules every offset obeys).
//! * [`superblock`]: the 4096-byte super block and its codec.
//! * [`signatures`]: recognising other people's data before we write.
//! * [`uuid`]: the volume identity.
//!
//! `docs/FORMAT.md` is the normative description; the tests here check the
//! byte offsets and the test vector it publishes.

pub mod geometry;
pub mod signatures;
pub mod superblock;
pub mod uuid;

pub use geometry::{Alignment, Geometry, GeometryError, LogicalBlockSize, ReserveMode};
pub use superblock::{DecodeError, Slot, SuperBlock};
pub use uuid::Uuid;
