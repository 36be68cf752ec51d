//! How buffers are cut: per-rank segments on element boundaries, and chunks within a
//! segment.

use std::ops::Range;

/// The byte range of segment `index` when `len` bytes of `elem`-byte elements are
/// split into `parts` contiguous segments on element boundaries, the first
/// `count % parts` segments one element longer.
pub fn segment(len: usize, elem: usize, parts: usize, index: usize) -> Range<usize> {
    let count = len / elem.max(1);
    let parts = parts.max(1);
    let base = count / parts;
    let extra = count % parts;
    let start = index * base + index.min(extra);
    let n = base + usize::from(index < extra);
    start * elem..(start + n) * elem
}

/// Number of chunks of `chunk` bytes in `len` bytes.
pub fn chunks_in(len: usize, chunk: usize) -> usize {
    len.div_ceil(chunk.max(1))
}

/// The byte range of chunk `c` of `range` (empty past the end).
pub fn chunk_range(range: &Range<usize>, chunk: usize, c: usize) -> Range<usize> {
    let start = (range.start + c * chunk).min(range.end);
    let end = (start + chunk).min(range.end);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_tile_the_buffer() {
        for len_elems in [0usize, 1, 2, 7, 64, 1001] {
            for parts in 1..9 {
                let mut next = 0;
                for i in 0..parts {
                    let r = segment(len_elems * 4, 4, parts, i);
                    assert_eq!(r.start, next);
                    assert!(r.len() / 4 <= len_elems.div_ceil(parts));
                    next = r.end;
                }
                assert_eq!(next, len_elems * 4);
            }
        }
    }

    #[test]
    fn chunks_tile_a_segment() {
        let r = 100..1000;
        let n = chunks_in(r.len(), 128);
        let mut next = 100;
        for c in 0..n {
            let x = chunk_range(&r, 128, c);
            assert_eq!(x.start, next);
            next = x.end;
        }
        assert_eq!(next, 1000);
        assert!(chunk_range(&r, 128, n).is_empty());
    }
}
