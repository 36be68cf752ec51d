//! Reduce-scatter on windows.

use crate::{Addr, Addrs, Exec, Result, at, bad, check, publish_all, release, whole};

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

/// [`reduce_scatter`] reducing straight from every member's input where it lies
/// ([`Exec::reads_members_directly`]): no copy into the windows, two
/// synchronisations whatever the size. Falls back to [`reduce_scatter`] on every
/// member when some member's input cannot be read directly.
pub fn reduce_scatter_direct(
    e: &mut dyn Exec,
    input: Addr,
    output: Addr,
    block: usize,
) -> Result<()> {
    let (n, me) = (e.members(), e.index());
    if n == 1 || !e.reads_members_directly() {
        return reduce_scatter(e, input, output, block);
    }
    check(e, "reduce_scatter", block)?;
    let len = block.saturating_mul(n);
    let Some(p) = publish_all(e, input, None, len)? else {
        return reduce_scatter(e, input, output, block);
    };
    let inputs = p.inputs;
    let srcs = Addrs::of(n, |m| at(inputs.as_slice()[m], me * block));
    if input < output + block && output < input + len {
        // The output overlaps this rank's input (in place): the fold reads its own
        // block while writing it, and the others read the rest until they post, so
        // the result goes through a temporary and lands after the closing round.
        let mut tmp = vec![0u8; block];
        let t = tmp.as_mut_ptr() as Addr;
        e.reduce_from_members(t, srcs.as_slice(), block)?;
        release(e)?;
        return e.copy(output, t, block);
    }
    e.reduce_from_members(output, srcs.as_slice(), block)?;
    release(e)
}
