//! # tutti-ring
//!
//! Ring schedules for the collectives (all_reduce as reduce-scatter + all-gather,
//! all_gather, reduce_scatter, pipelined broadcast and reduce chains, all_to_all,
//! gather, scatter), written against `tutti-transport`'s primitives. This crate
//! knows no dtypes and no devices: reductions go through a
//! [`ByteReducer`](tutti_transport::ByteReducer).
//!
//! Shared helpers live here from the start: how a buffer is split into the ring's
//! per-rank segments.

pub use tutti_transport::ByteReducer;

/// The byte range of segment `index` when `len` bytes of `elem_size`-byte elements
/// are split into `parts` contiguous segments on element boundaries, the first
/// `count % parts` segments one element longer (the split every ring step uses).
pub fn segment(len: usize, elem_size: usize, parts: usize, index: usize) -> std::ops::Range<usize> {
    assert!(
        parts > 0 && index < parts && elem_size > 0,
        "segment: bad arguments"
    );
    let count = len / elem_size;
    let base = count / parts;
    let extra = count % parts;
    let start = index * base + index.min(extra);
    let n = base + usize::from(index < extra);
    start * elem_size..(start + n) * elem_size
}

#[cfg(test)]
mod tests {
    use super::segment;

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
}
