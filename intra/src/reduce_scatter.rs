//! Reduce-scatter on windows.

use crate::{Addr, Addrs, Exec, Result, at, bad, check, whole};

/// `input` holds one block of `block` bytes per member; member `m` receives in
/// `output` the reduction (in rank order) of every member's block `m`. In rounds:
/// each rank copies a piece of every other member's block into its window, then
/// reduces its own block's piece from its input and every other window (its own
/// block is read in place unless `output` overlaps it).
pub fn reduce_scatter(e: &mut dyn Exec, input: Addr, output: Addr, block: usize) -> Result<()> {
    const WHAT: &str = "reduce_scatter";
    check(e, WHAT, block)?;
    let (n, me, elem) = (e.members(), e.index(), e.element_size());
    if n == 1 {
        if input != output && block > 0 {
            e.copy(output, input, block)?;
        }
        return e.finalize(output, block);
    }
    let piece = whole(e.buffer_bytes() / n, elem);
    if piece * n > e.buffer_bytes() {
        return Err(bad(
            WHAT,
            "window buffers too small for one element per member".into(),
        ));
    }
    let own = at(input, me * block);
    let in_place = own < output + block && output < own + block;
    let mut off = 0;
    while off < block {
        let p = piece.min(block - off);
        crate::round(
            e,
            |e, b| {
                let mine = e.buffer(me, b);
                for k in (0..n).filter(|&k| k != me || in_place) {
                    e.copy(at(mine, k * piece), at(input, k * block + off), p)?;
                }
                Ok(())
            },
            |e, b| {
                let srcs = Addrs::of(n, |m| {
                    if m == me && !in_place {
                        at(own, off)
                    } else {
                        at(e.buffer(m, b), me * piece)
                    }
                });
                e.reduce(at(output, off), srcs.as_slice(), p)?;
                e.finalize(at(output, off), p)
            },
        )?;
        off += p;
    }
    Ok(())
}
