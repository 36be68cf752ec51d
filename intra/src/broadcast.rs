//! Broadcast on windows.

use crate::{Addr, Exec, Result, at, bad, check, whole};

/// The root's `len` bytes at `data` land in every member's `data`. In rounds of up
/// to a window buffer: the root copies a piece into its window, the others copy it
/// out.
pub fn broadcast(e: &mut dyn Exec, root: usize, data: Addr, len: usize) -> Result<()> {
    const WHAT: &str = "broadcast";
    check(e, WHAT, len)?;
    let (n, me, elem) = (e.members(), e.index(), e.element_size());
    if root >= n {
        return Err(bad(
            WHAT,
            format!("root member {root} is outside {n} members"),
        ));
    }
    if n == 1 {
        return Ok(());
    }
    let step = whole(e.buffer_bytes(), elem);
    let mut off = 0;
    while off < len {
        let p = step.min(len - off);
        crate::round(
            e,
            |e, b| {
                if me == root {
                    let mine = e.buffer(me, b);
                    e.copy(mine, at(data, off), p)?;
                }
                Ok(())
            },
            |e, b| {
                if me != root {
                    let src = e.buffer(root, b);
                    e.copy(at(data, off), src, p)?;
                }
                Ok(())
            },
        )?;
        off += p;
    }
    Ok(())
}
