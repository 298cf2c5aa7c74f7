//! Recognising data that is not ours.
//!
//! `format` (and `add` on a blank backing) must never destroy data it did not
//! create, so before the first write it looks for the signatures of everything
//! that commonly lives on a namespace or disk: Linux's own NVDIMM info blocks
//! (which the kernel probes at the same offsets as our primary copy), partition
//! tables, and the usual file systems and volume headers. The probe is a pure
//! function over the first [`PROBE_LEN`] bytes so it is exhaustively testable.
//! Without allocation, what it finds comes back as [`Found`], a short list of
//! fixed capacity.

use core::fmt;

/// How many leading bytes of the backing the probe looks at (covers the btrfs
/// super block at 64 KiB).
pub const PROBE_LEN: usize = 0x11000;

/// Something found on the backing that pmem-stack did not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// Linux fsdax info block (`nd_pfn_sb`, `NVDIMM_PFN_INFO`).
    NdPfn,
    /// Linux devdax info block (`NVDIMM_DAX_INFO`).
    NdDax,
    /// BTT arena info block, at the given byte offset (4096 for BTT 1.1, 0 for 2.0).
    Btt { offset: u64 },
    /// GUID partition table header.
    Gpt,
    /// MBR partition table.
    Mbr,
    /// ext2, ext3 or ext4 super block.
    Ext(ExtVariant),
    /// XFS super block.
    Xfs,
    /// btrfs super block.
    Btrfs,
    /// LVM2 physical volume label.
    Lvm2,
    /// LUKS encryption header.
    Luks,
    /// Linux swap signature.
    Swap,
}

/// Which ext generation the feature flags say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtVariant {
    /// No journal.
    Ext2,
    /// Journal, no ext4-only features.
    Ext3,
    /// ext4 features (extents, 64bit, flex_bg, ...).
    Ext4,
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Foreign::NdPfn => {
                f.write_str("a Linux fsdax info block (NVDIMM_PFN_INFO at byte 4096)")
            }
            Foreign::NdDax => {
                f.write_str("a Linux devdax info block (NVDIMM_DAX_INFO at byte 4096)")
            }
            Foreign::Btt { offset } => {
                write!(f, "a BTT info block (BTT_ARENA_INFO at byte {offset})")
            }
            Foreign::Gpt => f.write_str("a GPT partition table"),
            Foreign::Mbr => f.write_str("an MBR partition table"),
            Foreign::Ext(ExtVariant::Ext2) => f.write_str("an ext2 file system"),
            Foreign::Ext(ExtVariant::Ext3) => f.write_str("an ext3 file system"),
            Foreign::Ext(ExtVariant::Ext4) => f.write_str("an ext4 file system"),
            Foreign::Xfs => f.write_str("an xfs file system"),
            Foreign::Btrfs => f.write_str("a btrfs file system"),
            Foreign::Lvm2 => f.write_str("an LVM2 physical volume"),
            Foreign::Luks => f.write_str("a LUKS header"),
            Foreign::Swap => f.write_str("a swap area"),
        }
    }
}

fn at(head: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    head.get(offset..offset.checked_add(len)?)
}

fn has(head: &[u8], offset: usize, signature: &[u8]) -> bool {
    at(head, offset, signature.len()) == Some(signature)
}

fn le32(head: &[u8], offset: usize) -> Option<u32> {
    at(head, offset, 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
}

fn ext_variant(head: &[u8]) -> Option<ExtVariant> {
    const SB: usize = 1024;
    if at(head, SB + 0x38, 2) != Some(&[0x53, 0xEF][..]) {
        return None;
    }
    let compat = le32(head, SB + 0x5C)?;
    let incompat = le32(head, SB + 0x60)?;
    const COMPAT_HAS_JOURNAL: u32 = 0x4;
    // extents, 64bit, mmp, flex_bg, ea_inode, dirdata, csum_seed, largedir,
    // inline_data, encrypt, casefold: anything ext3 could not mount.
    const INCOMPAT_EXT4_ONLY: u32 =
        0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000;
    Some(if incompat & INCOMPAT_EXT4_ONLY != 0 {
        ExtVariant::Ext4
    } else if compat & COMPAT_HAS_JOURNAL != 0 {
        ExtVariant::Ext3
    } else {
        ExtVariant::Ext2
    })
}

fn has_mbr(head: &[u8]) -> bool {
    if !has(head, 510, &[0x55, 0xAA]) {
        return false;
    }
    // Four 16-byte entries at 446: boot flag 0x00/0x80, at least one in use.
    let mut used = 0;
    for entry in 0..4 {
        let Some(e) = at(head, 446 + 16 * entry, 16) else {
            return false;
        };
        if e[0] != 0x00 && e[0] != 0x80 {
            return false;
        }
        if e[4] != 0 {
            used += 1;
        }
    }
    used > 0
}

/// What [`find_foreign`] found, in the order it looks: a list of fixed
/// capacity (every signature it knows at once still fits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    items: [Foreign; Found::CAPACITY],
    len: usize,
}

impl Found {
    /// More than the number of signatures that can be present together (11:
    /// GPT and MBR exclude each other, BTT counts twice).
    pub const CAPACITY: usize = 16;

    const fn new() -> Found {
        Found {
            items: [Foreign::NdPfn; Found::CAPACITY],
            len: 0,
        }
    }

    /// Add one; [`Found::CAPACITY`] exceeds what the probe can find, so
    /// nothing is ever dropped.
    fn push(&mut self, foreign: Foreign) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = foreign;
            self.len += 1;
        }
    }

    /// The signatures found.
    pub fn as_slice(&self) -> &[Foreign] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<'a> IntoIterator for &'a Found {
    type Item = &'a Foreign;
    type IntoIter = core::slice::Iter<'a, Foreign>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// Everything recognisable in `head`, the first bytes of a backing (shorter
/// than [`PROBE_LEN`] when the backing is).
pub fn find_foreign(head: &[u8]) -> Found {
    let mut found = Found::new();
    if has(head, 4096, b"NVDIMM_PFN_INFO\0") {
        found.push(Foreign::NdPfn);
    }
    if has(head, 4096, b"NVDIMM_DAX_INFO\0") {
        found.push(Foreign::NdDax);
    }
    for offset in [4096usize, 0] {
        // BTT_ARENA_INFO\0 (the 16-byte field is NUL-padded).
        if has(head, offset, b"BTT_ARENA_INFO\0") {
            found.push(Foreign::Btt {
                offset: offset as u64,
            });
        }
    }
    if has(head, 512, b"EFI PART") || has(head, 4096, b"EFI PART") {
        found.push(Foreign::Gpt);
    } else if has_mbr(head) {
        found.push(Foreign::Mbr);
    }
    if let Some(variant) = ext_variant(head) {
        found.push(Foreign::Ext(variant));
    }
    if has(head, 0, b"XFSB") {
        found.push(Foreign::Xfs);
    }
    if has(head, 0x10040, b"_BHRfS_M") {
        found.push(Foreign::Btrfs);
    }
    if (0..4).any(|sector| {
        has(head, 512 * sector, b"LABELONE") && has(head, 512 * sector + 24, b"LVM2 001")
    }) {
        found.push(Foreign::Lvm2);
    }
    if has(head, 0, b"LUKS\xBA\xBE") {
        found.push(Foreign::Luks);
    }
    if has(head, 4086, b"SWAPSPACE2") || has(head, 4086, b"SWAP-SPACE") {
        found.push(Foreign::Swap);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Vec<u8> {
        vec![0u8; PROBE_LEN]
    }

    /// What the probe finds, as a vector to compare.
    fn find(head: &[u8]) -> Vec<Foreign> {
        find_foreign(head).as_slice().to_vec()
    }

    fn put(buf: &mut [u8], offset: usize, bytes: &[u8]) {
        buf[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    #[test]
    fn blank_and_random_looking_data_is_not_foreign() {
        assert!(find(&head()).is_empty());
        assert!(find(&[]).is_empty());
        let noise: Vec<u8> = (0..PROBE_LEN)
            .map(|i| u8::try_from(i * 131 % 251).expect("below 251"))
            .collect();
        assert!(find(&noise).is_empty());
    }

    #[test]
    fn linux_nvdimm_blocks() {
        let mut h = head();
        put(&mut h, 4096, b"NVDIMM_PFN_INFO\0");
        assert_eq!(find(&h), vec![Foreign::NdPfn]);
        let mut h = head();
        put(&mut h, 4096, b"NVDIMM_DAX_INFO\0");
        assert_eq!(find(&h), vec![Foreign::NdDax]);
        let mut h = head();
        put(&mut h, 4096, b"BTT_ARENA_INFO\0\0");
        assert_eq!(find(&h), vec![Foreign::Btt { offset: 4096 }]);
        let mut h = head();
        put(&mut h, 0, b"BTT_ARENA_INFO\0\0");
        assert_eq!(find(&h), vec![Foreign::Btt { offset: 0 }]);
    }

    #[test]
    fn partition_tables() {
        let mut h = head();
        put(&mut h, 512, b"EFI PART");
        put(&mut h, 510, &[0x55, 0xAA]);
        put(&mut h, 446 + 4, &[0xEE]); // protective MBR
        assert_eq!(find(&h), vec![Foreign::Gpt]);

        let mut h = head();
        put(&mut h, 510, &[0x55, 0xAA]);
        put(&mut h, 446, &[0x80, 0, 0, 0, 0x83]);
        assert_eq!(find(&h), vec![Foreign::Mbr]);

        // 0x55AA alone with an invalid table is not called an MBR.
        let mut h = head();
        put(&mut h, 510, &[0x55, 0xAA]);
        put(&mut h, 446, &[0x12, 0, 0, 0, 0x83]);
        assert!(find(&h).is_empty());
    }

    #[test]
    fn file_systems() {
        let mut h = head();
        put(&mut h, 1024 + 0x38, &[0x53, 0xEF]);
        assert_eq!(find(&h), vec![Foreign::Ext(ExtVariant::Ext2)]);
        put(&mut h, 1024 + 0x5C, &4u32.to_le_bytes());
        assert_eq!(find(&h), vec![Foreign::Ext(ExtVariant::Ext3)]);
        put(&mut h, 1024 + 0x60, &0x2C2u32.to_le_bytes());
        assert_eq!(find(&h), vec![Foreign::Ext(ExtVariant::Ext4)]);

        let mut h = head();
        put(&mut h, 0, b"XFSB");
        assert_eq!(find(&h), vec![Foreign::Xfs]);

        let mut h = head();
        put(&mut h, 0x10040, b"_BHRfS_M");
        assert_eq!(find(&h), vec![Foreign::Btrfs]);
        // A backing too short to hold it is simply not btrfs.
        assert!(find(&h[..0x10000]).is_empty());
    }

    #[test]
    fn volume_headers() {
        let mut h = head();
        put(&mut h, 512, b"LABELONE");
        put(&mut h, 512 + 24, b"LVM2 001");
        assert_eq!(find(&h), vec![Foreign::Lvm2]);
        let mut h = head();
        put(&mut h, 0, b"LUKS\xBA\xBE");
        assert_eq!(find(&h), vec![Foreign::Luks]);
        let mut h = head();
        put(&mut h, 4086, b"SWAPSPACE2");
        assert_eq!(find(&h), vec![Foreign::Swap]);
    }

    #[test]
    fn many_at_once_all_fit() {
        let mut h = head();
        put(&mut h, 0, b"XFSB");
        put(&mut h, 446, &[0x80, 0, 0, 0, 0x83]);
        put(&mut h, 510, &[0x55, 0xAA]);
        put(&mut h, 512, b"LABELONE");
        put(&mut h, 512 + 24, b"LVM2 001");
        put(&mut h, 1024 + 0x38, &[0x53, 0xEF]);
        put(&mut h, 4086, b"SWAPSPACE2");
        put(&mut h, 4096, b"NVDIMM_PFN_INFO\0");
        put(&mut h, 0x10040, b"_BHRfS_M");
        let found = find_foreign(&h);
        assert_eq!(
            found.as_slice(),
            [
                Foreign::NdPfn,
                Foreign::Mbr,
                Foreign::Ext(ExtVariant::Ext2),
                Foreign::Xfs,
                Foreign::Btrfs,
                Foreign::Lvm2,
                Foreign::Swap
            ]
        );
        assert_eq!((&found).into_iter().count(), 7);
        assert!(!found.is_empty());
    }

    #[test]
    fn messages_name_what_was_found() {
        assert_eq!(
            Foreign::Ext(ExtVariant::Ext4).to_string(),
            "an ext4 file system"
        );
        assert!(Foreign::NdPfn.to_string().contains("NVDIMM_PFN_INFO"));
    }
}
