//! docs/FORMAT.md publishes a test vector; this test reads it from the
//! document and checks it both ways (decode the bytes, encode the values), so
//! the document and the code cannot drift apart.

use pmem_stack::format::superblock::BLOCK_LEN;
use pmem_stack::format::{
    Alignment, Geometry, LogicalBlockSize, Owner, OwnerKind, OwnerName, Owners, ReserveMode, Slot,
    SuperBlock, Uuid,
};

/// The hex dumps in the document's section `title` (up to the next
/// section), in order. Bytes a dump leaves out are zero.
fn vectors_in(title: &str) -> Vec<[u8; BLOCK_LEN]> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md"))
        .expect("docs/FORMAT.md");
    let section = doc
        .split(title)
        .nth(1)
        .expect("test vector section")
        .split("\n## ")
        .next()
        .expect("section body");
    let mut blocks = Vec::new();
    for fenced in section.split("```text").skip(1) {
        let body = fenced.split("```").next().expect("closing fence");
        let mut block = [0u8; BLOCK_LEN];
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let (offset, bytes) = line.split_once(':').expect("offset: bytes");
            let offset = usize::from_str_radix(offset.trim(), 16).expect("hex offset");
            for (i, byte) in bytes.split_whitespace().enumerate() {
                block[offset + i] = u8::from_str_radix(byte, 16).expect("hex byte");
            }
        }
        blocks.push(block);
    }
    blocks
}

/// The 1.0 test vector (§11).
fn vectors() -> Vec<[u8; BLOCK_LEN]> {
    vectors_in("## 11. Test vector")
}

fn expected() -> SuperBlock {
    SuperBlock {
        version_minor: 0,
        compat_features: 0,
        incompat_features: 0,
        uuid: Uuid::parse("5f0c3a52-7d1e-4b8a-9c2f-61d0e4a3b7c9").expect("uuid"),
        parent_uuid: Uuid::NIL,
        generation: 1,
        geometry: Geometry::derive(
            2 << 30,
            Alignment::M2,
            LogicalBlockSize::B512,
            ReserveMode::Hypervisor,
            512 << 20,
        )
        .expect("geometry"),
        owners: Owners::NONE,
    }
}

#[test]
fn the_documented_vector_decodes_to_the_documented_values() {
    let blocks = vectors();
    assert_eq!(blocks.len(), 2, "primary and backup dumps");
    let sb = expected();
    let g = sb.geometry;
    assert_eq!(
        (
            g.reserve_offset(),
            g.reserve_size(),
            g.data_offset(),
            g.data_size(),
            g.backup_offset()
        ),
        (
            2_097_152,
            536_870_912,
            538_968_064,
            1_606_418_432,
            2_147_479_552
        ),
        "the numbers the document states"
    );
    let primary = SuperBlock::decode(&blocks[0], 4096).expect("primary decodes");
    assert_eq!(primary, sb);
    let backup = SuperBlock::decode(&blocks[1], 2_147_479_552).expect("backup decodes");
    assert_eq!(backup, sb);
    assert_eq!(
        u32::from_le_bytes(blocks[0][0x14..0x18].try_into().expect("4")),
        0x9FC0_F1BD
    );
    assert_eq!(
        u32::from_le_bytes(blocks[1][0x14..0x18].try_into().expect("4")),
        0xAD7D_F61E
    );
}

#[test]
fn encoding_the_documented_values_gives_the_documented_bytes() {
    let blocks = vectors();
    let sb = expected();
    assert_eq!(sb.encode(Slot::Primary), blocks[0]);
    assert_eq!(sb.encode(Slot::Backup), blocks[1]);
}

/// The 1.1 test vector (§12): the §11 volume with its reserve split between
/// `xen` (hypervisor, 24 MiB) and `dom0` (os, the remaining 488 MiB), as
/// `pmem-stack reserve split --owner xen=24M --owner dom0=rest` records it
/// (generation 2).
fn expected_1_1() -> SuperBlock {
    let mut sb = expected();
    let mut owners = Owners::NONE;
    for (name, kind, offset, size) in [
        ("xen", OwnerKind::Hypervisor, 2 << 20, 24 << 20),
        ("dom0", OwnerKind::Os, 26 << 20, 488 << 20),
    ] {
        owners
            .push(Owner {
                kind,
                name: OwnerName::new(name).expect("name"),
                offset,
                size,
            })
            .expect("room");
    }
    sb.set_owners(owners);
    sb.generation = 2;
    sb
}

#[test]
fn the_1_1_vector_decodes_and_encodes_as_documented() {
    let blocks = vectors_in("## 12. Test vector, format 1.1");
    assert_eq!(blocks.len(), 2, "primary and backup dumps");
    let sb = expected_1_1();
    assert_eq!(SuperBlock::decode(&blocks[0], 4096), Ok(sb));
    assert_eq!(SuperBlock::decode(&blocks[1], 2_147_479_552), Ok(sb));
    assert_eq!(sb.encode(Slot::Primary), blocks[0]);
    assert_eq!(sb.encode(Slot::Backup), blocks[1]);
    assert_eq!(
        (
            u32::from_le_bytes(blocks[0][0x14..0x18].try_into().expect("4")),
            u32::from_le_bytes(blocks[1][0x14..0x18].try_into().expect("4"))
        ),
        (0x545D_0192, 0x66E0_0631),
        "the checksums the document states"
    );
    // What a 1.0 reader sees: the same single reserve as the §11 volume
    // (bytes 0x28..0xA0 other than the generation are the 1.0 vector's).
    let plain = vectors();
    assert_eq!(blocks[0][0x28..0x48], plain[0][0x28..0x48]);
    assert_eq!(blocks[0][0x50..0xA0], plain[0][0x50..0xA0]);
}
