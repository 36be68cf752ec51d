//! Recursive halving-doubling all_reduce (Rabenseifner's): a reduce-scatter in
//! `log2 n` exchanges of halving size, then an all-gather in `log2 n` exchanges of
//! doubling size, each between the partners `rank ^ d`.
//!
//! Each rank sends and receives the same bytes as in the ring (`(n - 1)/n` of the
//! buffer each way per phase), in `2 log2 n` steps instead of the ring's `2 (n - 1)`:
//! with 4 ranks 4 hand-overs instead of 6, which is what counts when ranks share cores
//! or a hop is expensive. Power-of-two rank counts only.
//!
//! The buffer is cut into `n` blocks ([`segment`]); rank `r` ends the reduce-scatter
//! owning block `r`. At distance `d` (`n/2`, `n/4`, ..., `1`) a rank keeps the half of
//! its current blocks on its side of bit `d` and sends the other half to `rank ^ d`,
//! which sends back its copy of the kept half, folded in with the lower rank's
//! contribution first. Every element is reduced by one rank, in a fixed tree order,
//! and gathered from there, so all ranks get the same bits whatever the timing. Each
//! exchange goes chunk by chunk (send one, receive one), so a link never holds more
//! than one chunk each way.

use std::ops::Range;

use tutti_transport::ops;

use crate::segments::{chunk_range, chunks_in, segment};
use crate::{
    ByteReducer, Result, Schedule, TransportError, check, check_input, nothing_to_exchange,
};

/// Halving-doubling all_reduce of `out` (of `input` into `out` when `input` is given,
/// which then stays untouched).
pub fn all_reduce_halving_doubling(
    ring: &mut Schedule<'_>,
    input: Option<&[u8]>,
    out: &mut [u8],
    reducer: &dyn ByteReducer,
) -> Result<()> {
    let what = "all_reduce (halving-doubling)";
    let elem = reducer.element_size();
    check(ring, what, out.len(), elem)?;
    check_input(what, input, out)?;
    let n = ring.size;
    if !n.is_power_of_two() {
        return Err(TransportError::InvalidArgument(format!(
            "{what}: {n} ranks is not a power of two"
        )));
    }
    if nothing_to_exchange(ring, input, out) {
        return Ok(());
    }
    let len = out.len();
    // The bytes of `d` blocks from the one holding rank `r` (aligned to `d`).
    let blocks = |r: usize, d: usize| -> Range<usize> {
        let first = r & !(d - 1);
        segment(len, elem, n, first).start..segment(len, elem, n, first + d - 1).end
    };
    let me = ring.rank;
    let mut d = n / 2;
    let mut first = true;
    while d >= 1 {
        let partner = me ^ d;
        let step = Step {
            partner,
            give: blocks(partner, d),
            keep: blocks(me, d),
        };
        // The first exchange reads the input; later ones what the earlier folded.
        let from = if first { input } else { None };
        step.reduce(ring, from, out, me < partner, reducer)?;
        first = false;
        d /= 2;
    }
    let mut d = 1;
    while d < n {
        let partner = me ^ d;
        let step = Step {
            partner,
            give: blocks(me, d),
            keep: blocks(partner, d),
        };
        step.gather(ring, out)?;
        d *= 2;
    }
    Ok(())
}

/// One exchange with `partner`: this rank sends `give` and receives into `keep`.
struct Step {
    partner: usize,
    give: Range<usize>,
    keep: Range<usize>,
}

impl Step {
    fn rounds(&self, chunk: usize) -> usize {
        chunks_in(self.give.len(), chunk).max(chunks_in(self.keep.len(), chunk))
    }

    /// Sends `give` (from `input` when given, else from `out`) and folds the
    /// partner's `keep` into `out[keep]` (from `input[keep]` when given), the lower
    /// rank's contribution first.
    fn reduce(
        &self,
        ring: &mut Schedule<'_>,
        input: Option<&[u8]>,
        out: &mut [u8],
        lower: bool,
        reducer: &dyn ByteReducer,
    ) -> Result<()> {
        let (chunk, dl) = (ring.chunk, ring.deadline);
        for c in 0..self.rounds(chunk) {
            let (tx, rx) = ring.links.pair(self.partner, self.partner)?;
            let g = chunk_range(&self.give, chunk, c);
            if !g.is_empty() {
                ops::send(tx, &input.unwrap_or(out)[g], chunk, dl)?;
            }
            let k = chunk_range(&self.keep, chunk, c);
            if k.is_empty() {
                continue;
            }
            match (input, lower) {
                (Some(i), _) => {
                    ops::recv_reduce_into(rx, &i[k.clone()], &mut out[k], lower, reducer, dl)?
                }
                (None, true) => ops::recv_reduce(rx, &mut out[k], reducer, dl)?,
                (None, false) => ops::recv_reduce_after(rx, &mut out[k], reducer, dl)?,
            }
        }
        Ok(())
    }

    /// Sends `out[give]` and receives the partner's reduced blocks into `out[keep]`.
    fn gather(&self, ring: &mut Schedule<'_>, out: &mut [u8]) -> Result<()> {
        let (chunk, dl) = (ring.chunk, ring.deadline);
        for c in 0..self.rounds(chunk) {
            let (tx, rx) = ring.links.pair(self.partner, self.partner)?;
            let g = chunk_range(&self.give, chunk, c);
            if !g.is_empty() {
                ops::send(tx, &out[g], chunk, dl)?;
            }
            let k = chunk_range(&self.keep, chunk, c);
            if !k.is_empty() {
                ops::recv(rx, &mut out[k], dl)?;
            }
        }
        Ok(())
    }
}
