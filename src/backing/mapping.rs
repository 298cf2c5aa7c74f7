//! The one owner of a shared mapping of the backing, and how to make it durable.
//!
//! The served data never passes through a Rust reference: the kernel writes
//! into the mapping (ublk user copy), other queue threads write into it, and a
//! `&mut [u8]` over such memory would be undefined behaviour. So the mapping
//! hands out [`MediaRange`]s — bounds-checked raw windows — whose methods copy
//! with `ptr::copy_nonoverlapping`, as vm-memory does for guest memory. A block
//! device gives no ordering between overlapping concurrent requests, so racing
//! copies only ever produce the torn data the block layer already allows.
//!
//! Durability depends on what is mapped:
//! * a block device or a regular file is mapped through the page cache:
//!   `msync(MS_SYNC)` writes the range back and, for a block device, flushes
//!   the device cache ([`Persistence::Msync`]);
//! * a devdax device maps the media itself: stores sit in the CPU cache until
//!   written back with `clwb` / `clflushopt` / `clflush` and fenced
//!   ([`Persistence::CacheFlush`]), unless the region's persistence domain
//!   already includes the CPU cache ([`Persistence::CpuCache`]).

use std::io;
use std::marker::PhantomData;
use std::ptr::NonNull;

use memmap2::MmapRaw;

/// How to make bytes stored through the mapping durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// `msync(MS_SYNC)` of the range.
    Msync,
    /// CPU cache write-back of every line in the range, then a store fence.
    CacheFlush(FlushInstruction),
    /// The platform flushes CPU caches on power loss: a store fence suffices.
    CpuCache,
}

/// The best cache write-back instruction the CPU has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushInstruction {
    /// Write back, keep the line (best).
    Clwb,
    /// Write back and evict, weakly ordered.
    ClflushOpt,
    /// Write back and evict, strongly ordered (every x86_64 has it).
    Clflush,
}

impl FlushInstruction {
    /// Detect the best instruction this CPU supports.
    #[cfg(target_arch = "x86_64")]
    pub fn detect() -> FlushInstruction {
        // CPUID leaf 7 sub-leaf 0, EBX: bit 24 CLWB, bit 23 CLFLUSHOPT.
        let ebx = std::arch::x86_64::__cpuid_count(7, 0).ebx;
        if ebx & (1 << 24) != 0 {
            FlushInstruction::Clwb
        } else if ebx & (1 << 23) != 0 {
            FlushInstruction::ClflushOpt
        } else {
            FlushInstruction::Clflush
        }
    }
}

/// Cache line size on every x86_64 CPU.
const CACHE_LINE: usize = 64;

/// Write back the cache lines covering `[ptr, ptr + len)` and fence.
#[cfg(target_arch = "x86_64")]
fn write_back_lines(ptr: *const u8, len: usize, insn: FlushInstruction) {
    use std::arch::asm;
    let start = (ptr as usize) & !(CACHE_LINE - 1);
    let end = (ptr as usize).saturating_add(len);
    let mut line = start;
    while line < end {
        let p = line as *const u8;
        match insn {
            // SAFETY: `p` lies in a cache line that overlaps the live mapping
            // [ptr, ptr+len) the caller owns (a MediaRange); cache write-back
            // instructions only write back / evict the line and never fault
            // on a mapped address. No registers or flags besides the input.
            FlushInstruction::Clwb => unsafe {
                asm!("clwb [{0}]", in(reg) p, options(nostack, preserves_flags));
            },
            // SAFETY: as above.
            FlushInstruction::ClflushOpt => unsafe {
                asm!("clflushopt [{0}]", in(reg) p, options(nostack, preserves_flags));
            },
            // SAFETY: as above.
            FlushInstruction::Clflush => unsafe {
                asm!("clflush [{0}]", in(reg) p, options(nostack, preserves_flags));
            },
        }
        line += CACHE_LINE;
    }
    store_fence();
}

#[cfg(target_arch = "x86_64")]
fn store_fence() {
    // SAFETY: `sfence` has no memory operands and no preconditions.
    unsafe { std::arch::x86_64::_mm_sfence() };
}

/// A window of the backing mapped `MAP_SHARED`.
///
/// Offsets passed to [`Mapping::range`] and [`Mapping::persist`] are relative
/// to the window's start; bytes of the mapping outside the window (rounding to
/// the mapping granule) are never handed out.
#[derive(Debug)]
pub struct Mapping {
    map: MmapRaw,
    /// Offset of the window inside `map`.
    skip: usize,
    /// Length of the window.
    len: usize,
    persistence: Persistence,
    writable: bool,
}

/// Bytes outside a mapping's window were asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("range {offset}+{len} lies outside the {window}-byte window")]
pub struct OutOfWindow {
    /// Requested offset.
    pub offset: u64,
    /// Requested length.
    pub len: u64,
    /// Window length.
    pub window: u64,
}

impl Mapping {
    /// Wrap a raw mapping; `skip..skip+len` must lie inside it.
    pub(super) fn new(
        map: MmapRaw,
        skip: usize,
        len: usize,
        persistence: Persistence,
        writable: bool,
    ) -> io::Result<Mapping> {
        let end = skip
            .checked_add(len)
            .filter(|&end| end <= map.len())
            .ok_or_else(|| io::Error::other("mapping window exceeds the mapping"))?;
        debug_assert!(end <= map.len());
        Ok(Mapping {
            map,
            skip,
            len,
            persistence,
            writable,
        })
    }

    /// Length of the window in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How this mapping is made durable.
    pub fn persistence(&self) -> Persistence {
        self.persistence
    }

    fn check(&self, offset: u64, len: u64) -> Result<(usize, usize), OutOfWindow> {
        let err = OutOfWindow {
            offset,
            len,
            window: self.len as u64,
        };
        let end = offset.checked_add(len).ok_or(err)?;
        if end > self.len as u64 {
            return Err(err);
        }
        let offset = usize::try_from(offset).map_err(|_| err)?;
        let len = usize::try_from(len).map_err(|_| err)?;
        Ok((offset, len))
    }

    /// A bounds-checked view of `len` bytes at `offset` in the window.
    pub fn range(&self, offset: u64, len: u64) -> Result<MediaRange<'_>, OutOfWindow> {
        let (offset, len) = self.check(offset, len)?;
        let ptr = self.map.as_mut_ptr();
        // SAFETY: `skip + offset + len <= map.len()` (checked in `new` and
        // `check`), so the result stays inside the live mapping.
        let ptr = unsafe { ptr.add(self.skip + offset) };
        let ptr = NonNull::new(ptr).ok_or(OutOfWindow {
            offset: offset as u64,
            len: len as u64,
            window: self.len as u64,
        })?;
        Ok(MediaRange {
            ptr,
            len,
            writable: self.writable,
            _mapping: PhantomData,
        })
    }

    /// Make `len` bytes at `offset` durable.
    pub fn persist(&self, offset: u64, len: u64) -> io::Result<()> {
        let (offset, len) = self
            .check(offset, len)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if len == 0 {
            return Ok(());
        }
        match self.persistence {
            Persistence::Msync => self.map.flush_range(self.skip + offset, len),
            #[cfg(target_arch = "x86_64")]
            Persistence::CacheFlush(insn) => {
                let range = self
                    .range(offset as u64, len as u64)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                write_back_lines(range.ptr.as_ptr(), len, insn);
                Ok(())
            }
            #[cfg(target_arch = "x86_64")]
            Persistence::CpuCache => {
                store_fence();
                Ok(())
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "devdax persistence is implemented for x86_64 only",
            )),
        }
    }

    /// Make the whole window durable.
    pub fn persist_all(&self) -> io::Result<()> {
        self.persist(0, self.len as u64)
    }
}

/// A bounds-checked window of a [`Mapping`], valid while the mapping lives.
///
/// It never becomes a Rust reference to the mapped bytes: see the module docs.
#[derive(Debug)]
pub struct MediaRange<'a> {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    _mapping: PhantomData<&'a Mapping>,
}

impl MediaRange<'_> {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start address, for syscalls that copy to or from the mapping (ublk user
    /// copy). Callers must stay within `len()` bytes.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn assert_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the backing is open read-only",
            ))
        }
    }

    /// Copy the range into `dst` (whose length must equal the range's).
    pub fn read_into(&self, dst: &mut [u8]) -> io::Result<()> {
        if dst.len() != self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "length mismatch",
            ));
        }
        // SAFETY: `ptr..ptr+len` is inside the live mapping (constructed by
        // `Mapping::range`), `dst` is a distinct, exclusively borrowed buffer
        // of the same length, so the regions do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), dst.as_mut_ptr(), self.len) };
        Ok(())
    }

    /// Copy `src` (whose length must equal the range's) into the range.
    pub fn write_from(&self, src: &[u8]) -> io::Result<()> {
        self.assert_writable()?;
        if src.len() != self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "length mismatch",
            ));
        }
        // SAFETY: the destination is inside the live, writable shared mapping;
        // `src` is an ordinary buffer that cannot overlap it (it is borrowed
        // immutably and the mapping is never exposed as a reference).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr(), self.len) };
        Ok(())
    }

    /// Set the range to zero.
    pub fn zero(&self) -> io::Result<()> {
        self.assert_writable()?;
        // SAFETY: the range is inside the live, writable shared mapping.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr(), 0, self.len) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_mapping(size: usize) -> (tempfile::NamedTempFile, Mapping) {
        let mut file = tempfile::NamedTempFile::new().expect("tempfile");
        file.write_all(&vec![0xA5; size]).expect("fill");
        let map = memmap2::MmapOptions::new()
            .len(size)
            .map_raw(file.as_file())
            .expect("mmap");
        let mapping =
            Mapping::new(map, 4096, size - 8192, Persistence::Msync, true).expect("window");
        (file, mapping)
    }

    #[test]
    fn window_is_bounds_checked() {
        let (_f, m) = file_mapping(64 << 10);
        assert_eq!(m.len(), (64 << 10) - 8192);
        assert!(m.range(0, m.len()).is_ok());
        assert!(m.range(1, m.len()).is_err());
        assert!(m.range(u64::MAX, 2).is_err());
        assert!(m.range(m.len(), 0).is_ok());
        assert!(m.persist(m.len() - 1, 2).is_err());
    }

    #[test]
    fn copies_land_in_the_file_at_the_window_offset() {
        let (file, m) = file_mapping(64 << 10);
        let range = m.range(100, 5).expect("in window");
        range.write_from(b"hello").expect("write");
        let mut back = [0u8; 5];
        range.read_into(&mut back).expect("read");
        assert_eq!(&back, b"hello");
        m.range(200, 10).expect("in window").zero().expect("zero");
        m.persist(0, 4096).expect("msync");
        let content = std::fs::read(file.path()).expect("read file");
        assert_eq!(&content[4096 + 100..4096 + 105], b"hello");
        assert!(content[4096 + 200..4096 + 210].iter().all(|&b| b == 0));
        assert_eq!(content[4096 + 210], 0xA5);
        assert_eq!(content[4095], 0xA5, "outside the window untouched");
    }

    #[test]
    fn length_mismatch_and_read_only_are_refused() {
        let mut file = tempfile::NamedTempFile::new().expect("tempfile");
        file.write_all(&[1u8; 8192]).expect("fill");
        let map = memmap2::MmapOptions::new()
            .len(8192)
            .map_raw_read_only(file.as_file())
            .expect("mmap");
        let m = Mapping::new(map, 0, 8192, Persistence::Msync, false).expect("window");
        let r = m.range(0, 4).expect("in window");
        assert!(r.write_from(b"abcd").is_err());
        assert!(r.zero().is_err());
        let mut small = [0u8; 3];
        assert!(r.read_into(&mut small).is_err());
        let mut four = [0u8; 4];
        r.read_into(&mut four).expect("read");
        assert_eq!(four, [1; 4]);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn cache_write_back_runs_with_every_instruction() {
        let (_f, m) = file_mapping(64 << 10);
        let detected = FlushInstruction::detect();
        let mut insns = vec![FlushInstruction::Clflush, detected];
        insns.dedup();
        for insn in insns {
            let m2 = Mapping {
                persistence: Persistence::CacheFlush(insn),
                ..Mapping::new(
                    memmap2::MmapOptions::new()
                        .len(64 << 10)
                        .map_raw(_f.as_file())
                        .expect("mmap"),
                    0,
                    64 << 10,
                    Persistence::Msync,
                    true,
                )
                .expect("window")
            };
            m2.range(3, 200)
                .expect("in")
                .write_from(&[7u8; 200])
                .expect("write");
            m2.persist(3, 200).expect("write back");
            m2.persist_all().expect("write back all");
        }
        let cpu = Mapping {
            persistence: Persistence::CpuCache,
            ..m
        };
        cpu.persist(0, 10).expect("fence");
    }
}
