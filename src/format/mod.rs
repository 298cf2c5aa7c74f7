//! The on-media format, version 1: the `pmem-stack-format` crate (`format/`),
//! `no_std` so other OSes, hypervisors and boot loaders link the very same
//! rules, re-exported here under the paths the rest of the server uses.
//!
//! * [`geometry`]: what a valid layout is (the rules every offset obeys).
//! * [`superblock`]: the 4096-byte super block and its codec.
//! * [`signatures`]: recognising other people's data before we write.
//! * [`uuid`]: the volume identity.
//!
//! What needs `std` is added here: a random UUID from the kernel, and the
//! foreign-signature probe's findings as a `Vec`.
//!
//! `docs/FORMAT.md` is the normative description; the format crate's tests
//! check the byte offsets and the test vector it publishes.

use std::io::Read;

pub use pmem_stack_format::{
    Alignment, DecodeError, Geometry, GeometryError, LogicalBlockSize, Owner, OwnerError,
    OwnerKind, OwnerName, Owners, ReserveMode, Slot, SuperBlock, Uuid,
};
pub use pmem_stack_format::{geometry, owners, superblock, uuid};

/// Recognising data that is not ours (`pmem_stack_format::signatures`), with
/// the findings collected in a `Vec`.
pub mod signatures {
    pub use pmem_stack_format::signatures::{ExtVariant, Foreign, Found, PROBE_LEN};

    /// Everything recognisable in `head`, the first bytes of a backing
    /// (shorter than [`PROBE_LEN`] when the backing is).
    pub fn find_foreign(head: &[u8]) -> Vec<Foreign> {
        pmem_stack_format::signatures::find_foreign(head)
            .as_slice()
            .to_vec()
    }
}

/// A random (version 4) UUID from the kernel's CSPRNG.
pub fn random_uuid() -> std::io::Result<Uuid> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(Uuid::from_random_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_is_v4_and_distinct() {
        let a = random_uuid().expect("urandom");
        let b = random_uuid().expect("urandom");
        assert_ne!(a, b);
        assert_eq!(a.0[6] >> 4, 4);
        assert_eq!(a.0[8] >> 6, 0b10);
        assert!(!a.is_nil());
    }

    #[test]
    fn probe_findings_come_back_in_order() {
        let mut head = vec![0u8; signatures::PROBE_LEN];
        head[..4].copy_from_slice(b"XFSB");
        head[4096..4112].copy_from_slice(b"NVDIMM_PFN_INFO\0");
        assert_eq!(
            signatures::find_foreign(&head),
            vec![signatures::Foreign::NdPfn, signatures::Foreign::Xfs]
        );
    }
}
