//! The other parsers of untrusted input: the foreign-signature probe over
//! arbitrary heads, size parsing, and layout planning over arbitrary sizes.
//! None may panic; every plan must satisfy the layout rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmem_stack::format::signatures::find_foreign;
use pmem_stack::format::{Alignment, LogicalBlockSize, ReserveMode};
use pmem_stack::layout::{LayoutRequest, ReserveRequest, plan};
use pmem_stack::size::parse_size;

fuzz_target!(|input: (u64, u64, u8, &[u8])| {
    let (device_size, reserve, choice, bytes) = input;
    let _ = find_foreign(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = parse_size(text);
    }
    let align = Alignment::ALL[usize::from(choice % 3)];
    let mode = match (choice / 3) % 4 {
        0 => None,
        1 => Some(ReserveMode::None),
        2 => Some(ReserveMode::Hypervisor),
        _ => Some(ReserveMode::Os),
    };
    let reserve = if choice & 0x80 != 0 {
        ReserveRequest::Auto
    } else {
        ReserveRequest::Bytes(reserve)
    };
    let request = LayoutRequest {
        reserve,
        mode,
        align,
        logical_block_size: LogicalBlockSize::B512,
    };
    if let Ok(p) = plan(device_size, &request) {
        assert_eq!(p.geometry.validate(), Ok(()));
        assert!(p.geometry.data_end() <= p.geometry.backup_offset());
    }
});
