//! The pmem-stack on-media format, version 1: the super block, its checksum,
//! the layout rules and layout planning — pure data and arithmetic, no I/O.
//!
//! * [`geometry`]: what a valid layout is (the rules every offset obeys).
//! * [`layout`]: choosing a layout from what a user asks for.
//! * [`owners`]: format 1.1, a reserve shared by several named owners.
//! * [`superblock`]: the 4096-byte super block and its codec.
//! * [`crc`]: the CRC32C the super block is sealed with.
//! * [`signatures`]: recognising other people's data before writing.
//! * [`uuid`]: the volume identity.
//! * [`units`]: the sector, page and huge-page sizes.
//! * `capi` (feature `capi`): the same as a C ABI, `psf_*`; `format/capi`
//!   builds it as the static library `libpmem_stack_format.a`, declared in
//!   `include/pmem_stack_format.h`.
//!
//! `docs/FORMAT.md` is the normative description; the tests here check the
//! byte offsets and the test vector it publishes.
//!
//! # Why `no_std`, without `alloc`
//!
//! The reserve a volume carves out is for a hypervisor (Xen's frame table and
//! M2P) or an OS's page array, and the point of the format is that whoever
//! boots first — a hypervisor, a boot loader, a kernel that is not Linux —
//! can find and claim it. Those read the super block before they have a heap,
//! threads or files. So this crate needs nothing but `core`: the caller reads
//! the bytes (however its platform reads a device) and hands in slices;
//! errors are plain enums; the CRC32C is a table-driven one written here, not
//! a `std`-only hardware-accelerated crate (a super block is checked a few
//! times per command, where a table is fast enough — see [`crc`]). What does
//! need `std` — random UUIDs, human-readable sizes, the CLI's wording — lives
//! in the `pmem-stack` server crate. The optional `serde` feature adds
//! `Serialize` (and `Deserialize` for [`Uuid`]) without `std` or `alloc`.

#![cfg_attr(not(test), no_std)]

#[cfg(feature = "capi")]
pub mod capi;
pub mod crc;
pub mod geometry;
pub mod layout;
pub mod owners;
pub mod signatures;
pub mod superblock;
pub mod units;
pub mod uuid;

pub use geometry::{Alignment, Geometry, GeometryError, LogicalBlockSize, ReserveMode};
pub use layout::{LayoutError, LayoutRequest, Plan, ReserveRequest, plan};
pub use owners::{Owner, OwnerError, OwnerKind, OwnerName, Owners};
pub use superblock::{DecodeError, Slot, SuperBlock};
pub use uuid::Uuid;
