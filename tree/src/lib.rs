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

/// One rank's view of a tree collective: the schedule context shared with the ring.
pub use tutti_ring::Schedule;
