//! Broadcast on windows.

use crate::{Addr, Exec, Result, at, bad, check, publish_all, release, whole};

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

/// [`broadcast`] where the others copy straight from the root's buffer
/// ([`Exec::reads_members_directly`]): one copy per byte instead of two, two
/// synchronisations whatever the size. Falls back to [`broadcast`] on every member
/// when some member's buffer cannot be read directly.
pub fn broadcast_direct(e: &mut dyn Exec, root: usize, data: Addr, len: usize) -> Result<()> {
    let (n, me) = (e.members(), e.index());
    if n == 1 || root >= n || !e.reads_members_directly() {
        return broadcast(e, root, data, len);
    }
    check(e, "broadcast", len)?;
    let Some(p) = publish_all(e, data, None, len)? else {
        return broadcast(e, root, data, len);
    };
    let bufs = p.inputs;
    if me != root {
        e.copy_from_member(root, data, bufs.as_slice()[root], len)?;
    }
    release(e)
}
