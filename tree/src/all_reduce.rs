//! The tree schedules: reduce up a tree, broadcast down it.

use tutti_transport::ops;

use crate::shape::{TreeNode, mirror_tree_node, tree_node};
use tutti_ring::{check, chunk_range as chunk_of, segment};

use crate::{ByteReducer, Result, Schedule, TransportError};

fn kids(node: &TreeNode) -> impl Iterator<Item = usize> + '_ {
    node.children.iter().flatten().copied()
}

/// Reduces `data` up the tree: afterwards the root holds the full reduction; an
/// interior rank's `data` holds a partial one.
fn up(
    t: &mut Schedule<'_>,
    node: &TreeNode,
    data: &mut [u8],
    reducer: &dyn ByteReducer,
) -> Result<()> {
    let dl = t.deadline;
    let children: Vec<usize> = kids(node).collect();
    match (children.split_last(), node.parent) {
        (None, Some(p)) => {
            let (tx, _) = t.links.pair(p, p)?;
            ops::send(tx, data, t.chunk, dl)
        }
        (None, None) => Ok(()),
        (Some((&last, first)), parent) => {
            for &c in first {
                let (_, rx) = t.links.pair(c, c)?;
                ops::recv_reduce(rx, data, reducer, dl)?;
            }
            match parent {
                Some(p) => {
                    let (tx, rx) = t.links.pair(p, last)?;
                    ops::recv_reduce_send(rx, tx, data, reducer, dl)
                }
                None => {
                    let (_, rx) = t.links.pair(last, last)?;
                    ops::recv_reduce(rx, data, reducer, dl)
                }
            }
        }
    }
}

/// Broadcasts the root's `data` down the tree.
fn down(t: &mut Schedule<'_>, node: &TreeNode, data: &mut [u8]) -> Result<()> {
    let dl = t.deadline;
    let chunk = t.chunk;
    let children: Vec<usize> = kids(node).collect();
    let mut rest = &children[..];
    if let Some(p) = node.parent {
        match children.first() {
            Some(&c) => {
                let (tx, rx) = t.links.pair(c, p)?;
                ops::recv_copy_send(rx, tx, data, dl)?;
                rest = &children[1..];
            }
            None => {
                let (_, rx) = t.links.pair(p, p)?;
                return ops::recv(rx, data, dl);
            }
        }
    }
    for &c in rest {
        let (tx, _) = t.links.pair(c, c)?;
        ops::send(tx, data, chunk, dl)?;
    }
    Ok(())
}

/// Double binary tree all_reduce of `buf`, in place.
pub fn all_reduce(t: &mut Schedule<'_>, buf: &mut [u8], reducer: &dyn ByteReducer) -> Result<()> {
    let elem = reducer.element_size();
    check(t, "tree all_reduce", buf.len(), elem)?;
    let n = t.size;
    if n == 1 || buf.is_empty() {
        return Ok(());
    }
    let trees = [tree_node(t.rank, n), mirror_tree_node(t.rank, n)];
    let halves = [
        segment(buf.len(), elem, 2, 0),
        segment(buf.len(), elem, 2, 1),
    ];
    let rounds = halves
        .iter()
        .map(|h| h.len().div_ceil(t.chunk))
        .max()
        .unwrap_or(0);
    for c in 0..rounds {
        for (node, half) in trees.iter().zip(&halves) {
            let s = chunk_of(half, t.chunk, c);
            if s.is_empty() {
                continue;
            }
            up(t, node, &mut buf[s.clone()], reducer)?;
            down(t, node, &mut buf[s])?;
        }
    }
    Ok(())
}

/// The tree over ranks relabelled so that `root` is the tree's root: returns the
/// node of `rank` with real rank numbers.
fn rooted_node(rank: usize, n: usize, root: usize) -> TreeNode {
    let top = n / 2; // tree_node's root
    let to_virtual = |r: usize| (r + n - root + top) % n;
    let to_real = |v: usize| (v + n + root - top) % n;
    let v = tree_node(to_virtual(rank), n);
    TreeNode {
        parent: v.parent.map(to_real),
        children: [v.children[0].map(to_real), v.children[1].map(to_real)],
    }
}

fn check_root(t: &Schedule<'_>, what: &str, root: usize) -> Result<()> {
    if root >= t.size {
        return Err(TransportError::InvalidArgument(format!(
            "{what}: root {root} outside a group of {}",
            t.size
        )));
    }
    Ok(())
}

/// Tree broadcast of the root's `buf` to every rank, pipelined.
pub fn broadcast(t: &mut Schedule<'_>, buf: &mut [u8], root: usize) -> Result<()> {
    check(t, "tree broadcast", buf.len(), 1)?;
    check_root(t, "tree broadcast", root)?;
    if t.size == 1 || buf.is_empty() {
        return Ok(());
    }
    let node = rooted_node(t.rank, t.size, root);
    let all = 0..buf.len();
    for c in 0..buf.len().div_ceil(t.chunk) {
        let s = chunk_of(&all, t.chunk, c);
        down(t, &node, &mut buf[s])?;
    }
    Ok(())
}

/// Tree reduce of every rank's `input` into the root's `output` (`input.len()`
/// bytes on the root; ignored elsewhere), pipelined.
pub fn reduce(
    t: &mut Schedule<'_>,
    input: &[u8],
    output: &mut [u8],
    root: usize,
    reducer: &dyn ByteReducer,
) -> Result<()> {
    check(t, "tree reduce", input.len(), reducer.element_size())?;
    check_root(t, "tree reduce", root)?;
    if t.rank == root && output.len() != input.len() {
        return Err(TransportError::InvalidArgument(format!(
            "tree reduce: the root's output has {} bytes, the input {}",
            output.len(),
            input.len()
        )));
    }
    let node = rooted_node(t.rank, t.size, root);
    // Interior ranks accumulate partial sums: work on a copy of the input there.
    let mut scratch;
    let data: &mut [u8] = if t.rank == root {
        tutti_transport::copy::copy_slice(output, input);
        output
    } else {
        scratch = input.to_vec();
        &mut scratch
    };
    if t.size == 1 || data.is_empty() {
        return Ok(());
    }
    let all = 0..data.len();
    for c in 0..data.len().div_ceil(t.chunk) {
        let s = chunk_of(&all, t.chunk, c);
        up(t, &node, &mut data[s], reducer)?;
    }
    Ok(())
}
