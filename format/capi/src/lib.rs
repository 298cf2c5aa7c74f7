//! `libpmem_stack_format.a`: the `psf_*` C ABI of the `pmem-stack-format`
//! crate (`pmem_stack_format::capi`, declared in
//! `include/pmem_stack_format.h`) as a static library.
//!
//! The library code is `no_std`; what differs between the two builds is only
//! who handles a panic (none is reachable: see the capi module's rules):
//!
//! * default: std's handler, so the archive links into any hosted C program
//!   (`cc prog.c libpmem_stack_format.a`);
//! * feature `freestanding`, release profile (`panic = "abort"`): a handler
//!   of its own that stops in a spin loop, and nothing of std in the archive
//!   — for a hypervisor, boot loader or kernel. `tests/c_abi.rs` builds this
//!   variant, checks that no std symbol is in it, and links the C test
//!   program against it.

#![no_std]

#[cfg(not(feature = "freestanding"))]
extern crate std;

pub use psf::capi::*;

/// Unreachable by construction (no `psf_*` path panics); if it ever were
/// reached, stop here rather than unwind into C or return garbage.
#[cfg(feature = "freestanding")]
#[panic_handler]
fn on_panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// The precompiled `core` was built for unwinding and names this symbol in
/// its unwind tables; with `panic = "abort"` nothing ever unwinds, so it is
/// never called. Defined so the archive links without `--gc-sections`.
#[cfg(feature = "freestanding")]
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}
