//! Gather to and scatter from a root on windows, with per-member lengths.

use crate::{Addr, Exec, Result, at, bad, check, whole};

fn check_v(e: &dyn Exec, what: &str, root: usize, lens: &[usize], displs: &[usize]) -> Result<()> {
    let n = e.members();
    if root >= n {
        return Err(bad(
            what,
            format!("root member {root} is outside {n} members"),
        ));
    }
    if lens.len() != n || displs.len() != n {
        return Err(bad(
            what,
            format!(
                "{} lengths and {} offsets for {n} members",
                lens.len(),
                displs.len()
            ),
        ));
    }
    for &l in lens {
        check(e, what, l)?;
    }
    Ok(())
}

/// Member `m`'s `lens[m]` bytes at `input` land in the root's `output` at
/// `displs[m]`. Every member passes the same `lens` (`displs` matters on the root).
pub fn gather_v(
    e: &mut dyn Exec,
    root: usize,
    input: Addr,
    output: Addr,
    lens: &[usize],
    displs: &[usize],
) -> Result<()> {
    const WHAT: &str = "gather";
    check_v(e, WHAT, root, lens, displs)?;
    let (n, me, elem) = (e.members(), e.index(), e.element_size());
    let longest = lens.iter().copied().max().unwrap_or(0);
    if n == 1 {
        if lens[0] > 0 && input != at(output, displs[0]) {
            e.copy(at(output, displs[0]), input, lens[0])?;
        }
        return Ok(());
    }
    let step = whole(e.buffer_bytes(), elem);
    let part = |l: usize, off: usize| l.saturating_sub(off).min(step);
    let mut off = 0;
    while off < longest {
        crate::round(
            e,
            |e, b| {
                let p = part(lens[me], off);
                if p > 0 {
                    let mine = e.buffer(me, b);
                    e.copy(mine, at(input, off), p)?;
                }
                Ok(())
            },
            |e, b| {
                if me == root {
                    for m in 0..n {
                        let p = part(lens[m], off);
                        if p > 0 {
                            let src = e.buffer(m, b);
                            e.copy(at(output, displs[m] + off), src, p)?;
                        }
                    }
                }
                Ok(())
            },
        )?;
        off += step;
    }
    Ok(())
}

/// The root's `lens[m]` bytes at `input + displs[m]` land in member `m`'s `output`.
/// Every member passes the same `lens` (`displs` matters on the root).
pub fn scatter_v(
    e: &mut dyn Exec,
    root: usize,
    input: Addr,
    lens: &[usize],
    displs: &[usize],
    output: Addr,
) -> Result<()> {
    const WHAT: &str = "scatter";
    check_v(e, WHAT, root, lens, displs)?;
    let (n, me, elem) = (e.members(), e.index(), e.element_size());
    let longest = lens.iter().copied().max().unwrap_or(0);
    if n == 1 {
        if lens[0] > 0 && at(input, displs[0]) != output {
            e.copy(output, at(input, displs[0]), lens[0])?;
        }
        return Ok(());
    }
    let piece = whole(e.buffer_bytes() / n, elem);
    if piece * n > e.buffer_bytes() {
        return Err(bad(
            WHAT,
            "window buffers too small for one element per member".into(),
        ));
    }
    let part = |l: usize, off: usize| l.saturating_sub(off).min(piece);
    let mut off = 0;
    while off < longest {
        crate::round(
            e,
            |e, b| {
                if me == root {
                    let mine = e.buffer(me, b);
                    for m in 0..n {
                        let p = part(lens[m], off);
                        if p > 0 {
                            e.copy(at(mine, m * piece), at(input, displs[m] + off), p)?;
                        }
                    }
                }
                Ok(())
            },
            |e, b| {
                let p = part(lens[me], off);
                if p > 0 {
                    let src = at(e.buffer(root, b), me * piece);
                    e.copy(at(output, off), src, p)?;
                }
                Ok(())
            },
        )?;
        off += piece;
    }
    Ok(())
}
