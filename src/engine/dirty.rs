//! Which parts of the data area were written since the last flush.
//!
//! A FLUSH must make durable everything completed before it, on any queue.
//! Tracking dirty chunks lets a flush persist only those (and skip the device
//! cache flush entirely when nothing was written — file systems flush often).
//! Writers set bits with `fetch_or` before they complete their request; a flush
//! takes the bits with `swap(0)`, so every write that completed before the
//! flush arrived is in the set it takes.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::units::PAGE_SHIFT;

/// Never track more than this many chunks (bitmap of 512 KiB).
const MAX_CHUNKS: u64 = 1 << 22;
// The bitmap's word count always fits a usize.
const _: () = assert!(MAX_CHUNKS.div_ceil(64) <= usize::MAX as u64);
/// Smallest chunk: one page.
const MIN_CHUNK_SHIFT: u32 = PAGE_SHIFT as u32;

/// A bitmap of dirty chunks over `size` bytes.
#[derive(Debug)]
pub struct DirtyMap {
    size: u64,
    chunk_shift: u32,
    words: Box<[AtomicU64]>,
}

impl DirtyMap {
    /// A clean map over `size` bytes, with chunks of at least 4 KiB, as small
    /// as the chunk limit allows.
    pub fn new(size: u64) -> DirtyMap {
        let mut chunk_shift = MIN_CHUNK_SHIFT;
        while size.div_ceil(1u64 << chunk_shift) > MAX_CHUNKS {
            chunk_shift += 1;
        }
        let chunks = size.div_ceil(1u64 << chunk_shift);
        // A map too small would drop marks, and every flush would persist
        // nothing: the word count must be exact, never a fallback.
        let words = crate::units::usize_of(chunks.div_ceil(64));
        DirtyMap {
            size,
            chunk_shift,
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Size of one chunk in bytes.
    pub fn chunk_size(&self) -> u64 {
        1 << self.chunk_shift
    }

    /// Mark `[offset, offset + len)` dirty (clamped to the map).
    pub fn mark(&self, offset: u64, len: u64) {
        if len == 0 || offset >= self.size {
            return;
        }
        let end = offset.saturating_add(len).min(self.size);
        let first = offset >> self.chunk_shift;
        let last = (end - 1) >> self.chunk_shift;
        let mut chunk = first;
        while chunk <= last {
            let word = chunk / 64;
            let bit = chunk % 64;
            // Bits from `bit` up to the last chunk in this word.
            let upto = (last - word * 64).min(63);
            let count = upto - bit + 1;
            let mask = if count == 64 {
                u64::MAX
            } else {
                ((1u64 << count) - 1) << bit
            };
            if let Some(w) = usize::try_from(word).ok().and_then(|w| self.words.get(w)) {
                w.fetch_or(mask, Ordering::Release);
            }
            chunk = word * 64 + upto + 1;
        }
    }

    /// Take every dirty chunk (leaving the map clean) as coalesced byte ranges
    /// in ascending order.
    pub fn take(&self) -> Vec<Range<u64>> {
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for (index, word) in self.words.iter().enumerate() {
            let mut bits = word.swap(0, Ordering::Acquire);
            while bits != 0 {
                let bit = u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                let chunk = index as u64 * 64 + bit;
                let start = chunk << self.chunk_shift;
                let end = (start + self.chunk_size()).min(self.size);
                match ranges.last_mut() {
                    Some(last) if last.end == start => last.end = end,
                    _ => ranges.push(start..end),
                }
            }
        }
        ranges
    }

    /// Mark ranges dirty again (a flush that failed hands them back).
    pub fn restore(&self, ranges: &[Range<u64>]) {
        for r in ranges {
            self.mark(r.start, r.end - r.start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn chunk_size_scales_with_size() {
        assert_eq!(DirtyMap::new(2 << 30).chunk_size(), 4096);
        assert_eq!(DirtyMap::new(16 << 30).chunk_size(), 4096);
        assert_eq!(DirtyMap::new(1 << 40).chunk_size(), 256 << 10);
        assert_eq!(DirtyMap::new(0).take(), vec![]);
    }

    #[test]
    fn marks_coalesce_and_take_clears() {
        let m = DirtyMap::new(1 << 20);
        m.mark(0, 1);
        m.mark(4096, 4096);
        m.mark(100_000, 10);
        m.mark(1 << 20, 10); // beyond: ignored
        assert_eq!(m.take(), vec![0..8192, 98304..102400]);
        assert_eq!(m.take(), vec![]);
        m.mark((1 << 20) - 1, 100);
        assert_eq!(m.take(), vec![(1 << 20) - 4096..1 << 20]);
    }

    #[test]
    fn a_whole_word_and_more() {
        let m = DirtyMap::new(64 << 20);
        m.mark(4096 * 10, 4096 * 200);
        assert_eq!(m.take(), vec![4096 * 10..4096 * 210]);
        m.restore(&[0..4096, 8192..12288]);
        assert_eq!(m.take(), vec![0..4096, 8192..12288]);
    }

    #[test]
    fn size_not_a_multiple_of_the_chunk() {
        let m = DirtyMap::new(10_000);
        m.mark(9_000, 5_000);
        assert_eq!(m.take(), vec![8192..10_000]);
    }

    proptest! {
        /// The ranges taken are exactly the chunks touched by the marks.
        #[test]
        fn take_returns_exactly_the_marked_chunks(
            size in 1u64..(64 << 20),
            marks in proptest::collection::vec((0u64..(64 << 20), 0u64..(1 << 20)), 0..20),
        ) {
            let m = DirtyMap::new(size);
            let chunk = m.chunk_size();
            let mut expect = BTreeSet::new();
            for (off, len) in &marks {
                m.mark(*off, *len);
                if *len > 0 && *off < size {
                    let end = (off + len).min(size);
                    for c in (off / chunk)..=((end - 1) / chunk) {
                        expect.insert(c);
                    }
                }
            }
            let mut got = BTreeSet::new();
            let ranges = m.take();
            for w in ranges.windows(2) {
                prop_assert!(w[0].end < w[1].start, "coalesced and sorted");
            }
            for r in ranges {
                prop_assert!(r.end <= size);
                for c in (r.start / chunk)..r.end.div_ceil(chunk) {
                    got.insert(c);
                }
            }
            prop_assert_eq!(got, expect);
        }
    }
}
