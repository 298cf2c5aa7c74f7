//! Decode untrusted bytes as a super block. Decoding must never panic, and
//! whatever decodes must satisfy the layout rules and (for the current minor)
//! re-encode to exactly the same bytes.
//!
//! Two ways in: the raw input as a block (what a reader meets on media), and —
//! because random bytes almost never carry the magic and a valid CRC — a
//! valid block with the input applied as byte patches, re-sealed with a
//! correct checksum half of the time, so every validation rule behind the
//! checksum is reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmem_stack::format::Owners;
use pmem_stack::format::superblock::{BLOCK_LEN, CHECKSUM_OFFSET, checksum};
use pmem_stack::format::{
    Alignment, Geometry, LogicalBlockSize, ReserveMode, Slot, SuperBlock, Uuid,
};

fn check(bytes: &[u8], at: u64) {
    if let Ok(sb) = SuperBlock::decode(bytes, at) {
        assert_eq!(bytes.len(), BLOCK_LEN);
        assert_eq!(sb.geometry.validate(), Ok(()));
        assert!(sb.geometry.backup_offset() + 4096 <= sb.geometry.device_size());
        let slot = if at == 4096 {
            Slot::Primary
        } else {
            Slot::Backup
        };
        if !sb.is_newer_minor() {
            assert_eq!(&sb.encode(slot)[..], bytes);
        }
    }
}

fn valid_block(selector: u8) -> (u64, [u8; BLOCK_LEN]) {
    let (size, align, mode, reserve) = match selector % 4 {
        0 => (
            2u64 << 30,
            Alignment::M2,
            ReserveMode::Hypervisor,
            512u64 << 20,
        ),
        1 => (64 << 20, Alignment::K4, ReserveMode::None, 0),
        2 => (1 << 40, Alignment::G1, ReserveMode::Os, 16 << 30),
        _ => (256 << 20, Alignment::M2, ReserveMode::Os, 4 << 20),
    };
    let geometry = Geometry::derive(size, align, LogicalBlockSize::B512, mode, reserve)
        .expect("seed geometry is valid");
    let sb = SuperBlock {
        version_minor: 0,
        compat_features: 0,
        incompat_features: 0,
        uuid: Uuid([7; 16]),
        parent_uuid: Uuid::NIL,
        generation: 1,
        geometry,
        owners: Owners::NONE,
    };
    let slot = if selector & 4 == 0 {
        Slot::Primary
    } else {
        Slot::Backup
    };
    (slot.offset(&geometry), sb.encode(slot))
}

fuzz_target!(|data: &[u8]| {
    // As found on media, at both usual offsets and one from the input.
    check(data, 4096);
    if let Some(at) = data
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
    {
        check(data, at);
    }
    // As a patched valid block.
    let Some((&selector, patches)) = data.split_first() else {
        return;
    };
    let (at, mut block) = valid_block(selector);
    for patch in patches.chunks_exact(3) {
        let pos = usize::from(u16::from_le_bytes([patch[0], patch[1]])) % BLOCK_LEN;
        block[pos] = patch[2];
    }
    if selector & 8 == 0 {
        let crc = checksum(&block);
        block[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    }
    check(&block, at);
});
