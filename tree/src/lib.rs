//! # tutti-tree
//!
//! Tree schedules, pipelined chunk by chunk, written against `tutti-transport`'s
//! link halves; no dtypes, no devices.
//!
//! - [`all_reduce`]: NCCL's double binary tree. The buffer is split in two halves;
//!   the first is reduced up and broadcast down a balanced binary tree, the second
//!   along its mirror image, so every rank is interior in at most one tree for even
//!   rank counts and the links carry both halves at once. Depth `log2(n)`: the
//!   latency choice for small messages and many ranks.
//! - [`broadcast`] and [`reduce`]: one binary tree rooted at the root (a double
//!   tree needs two roots), pipelined.

mod all_reduce;
mod shape;

pub use all_reduce::{all_reduce, broadcast, reduce};
pub use shape::{TreeNode, mirror_tree_node, tree_node};
pub use tutti_transport::{ByteReducer, Deadline, Links, Result, TransportError};

/// One rank's view of a tree collective.
pub struct Tree<'a> {
    /// This rank.
    pub rank: usize,
    /// Number of ranks.
    pub size: usize,
    /// Links to the other ranks.
    pub links: &'a mut dyn Links,
    /// Pipeline chunk in bytes (a multiple of the element size, at most the links'
    /// `max_message`).
    pub chunk: usize,
    /// When every blocking wait gives up.
    pub deadline: Deadline,
}
