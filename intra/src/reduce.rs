//! Reduce to a root on windows.

use crate::{Addr, Addrs, Exec, Result, at, bad, check, slice, whole};

/// The reduction (in rank order) of every member's `len` bytes at `input` lands in
/// the root's `output` (untouched elsewhere). In rounds of half a window buffer: each
/// rank copies a piece into the first half of its window, reduces its slice of the
/// piece from every window into the second half, and the root collects the slices.
pub fn reduce(e: &mut dyn Exec, root: usize, input: Addr, output: Addr, len: usize) -> Result<()> {
    const WHAT: &str = "reduce";
    check(e, WHAT, len)?;
    let (n, me, elem) = (e.members(), e.index(), e.element_size());
    if root >= n {
        return Err(bad(
            WHAT,
            format!("root member {root} is outside {n} members"),
        ));
    }
    if n == 1 {
        if input != output && len > 0 {
            e.copy(output, input, len)?;
        }
        return e.finalize(output, len);
    }
    let half = whole(e.buffer_bytes() / 2, elem);
    if 2 * half > e.buffer_bytes() || half < n * elem {
        return Err(bad(WHAT, "window buffers too small for reduce".into()));
    }
    let mut off = 0;
    while off < len {
        let c = half.min(len - off);
        let (b, v) = e.begin_round();
        let mine = e.buffer(me, b);
        e.copy(mine, at(input, off), c)?;
        e.post(v + 1)?;
        e.wait_all(v + 1)?;
        let s = slice(c, elem, n, me);
        if !s.is_empty() {
            let dst = at(mine, half + s.start);
            let srcs = Addrs::of(n, |m| at(e.buffer(m, b), s.start));
            e.reduce(dst, srcs.as_slice(), s.len())?;
            e.finalize(dst, s.len())?;
        }
        e.post(v + 2)?;
        e.wait_all(v + 2)?;
        if me == root {
            for m in 0..n {
                let s = slice(c, elem, n, m);
                if !s.is_empty() {
                    let src = at(e.buffer(m, b), half + s.start);
                    e.copy(at(output, off + s.start), src, s.len())?;
                }
            }
        }
        off += c;
    }
    Ok(())
}
