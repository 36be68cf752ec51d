//! RDMA links: InfiniBand / RoCE reliable-connected (RC) queue pairs through the
//! `sideway` verbs bindings (built with the `rdma` feature).
//!
//! Each link has two RC queue pairs per side, one per direction, so that the
//! sending and the receiving half each own theirs and never share a lock:
//!
//! - the receiver registers a ring of `slots` x `slot_size` bytes
//!   (`TUTTI_IB_SLOTS`, `TUTTI_IB_CHUNK_BYTES`) and posts zero-length receives;
//! - the sender copies a message into a registered staging slot
//!   ([`SendHalf::reserve`](crate::SendHalf::reserve)) and posts an RDMA WRITE WITH
//!   IMMEDIATE into the same slot of the peer's ring
//!   ([`commit`](crate::SendHalf::commit)); the immediate carries the message's
//!   sequence number, the completion's byte count its length;
//! - the receiver polls its completion queue, lends the slot out in place
//!   ([`RecvHalf::next`](crate::RecvHalf::next)) and, on
//!   [`release`](crate::RecvHalf::release), RDMA-writes its count of consumed
//!   messages into a registered credit word on the sender, which is what the sender
//!   waits on when the ring is full.
//!
//! Connection setup goes through the [`Rendezvous`](crate::Rendezvous): each side
//! publishes its queue pair numbers, PSNs, LID/GID, ring and credit-word addresses
//! and keys, moves its queue pairs INIT -> RTR -> RTS, then publishes a ready mark
//! and waits for the peer's. Failed work completions (retry counter exceeded once
//! the peer's process is gone, a flushed queue, ...) become
//! [`TransportError::PeerGone`](crate::TransportError::PeerGone) naming the peer;
//! a half that waits longer than [`PROBE_PERIOD`] writes to the peer to find out
//! whether it is still there.
//!
//! The device is picked by `TUTTI_IB_HCA` (NCCL's `NCCL_IB_HCA` syntax:
//! `mlx5_0:1,mlx5_1`, `^` to exclude, `=` for exact names) and the GID by
//! `TUTTI_IB_GID_INDEX`; [`available`] says why RDMA cannot be used here.

mod completion;
mod config;
mod connect;
mod device;
mod link;
mod memory;
mod qp;
mod waiter;
mod wire;

use std::time::Duration;

pub use config::RdmaConfig;
pub use connect::RdmaEndpoint;
pub use device::{LinkLayerKind, RdmaPort, ports};

/// How long a half waits without progress before it writes to the peer to check
/// that the peer's queue pair still answers.
pub const PROBE_PERIOD: Duration = Duration::from_millis(500);

/// `Ok(())` when an RDMA device with an active port matching the configuration
/// (`TUTTI_IB_HCA`, `TUTTI_IB_GID_INDEX`) can be opened;
/// [`TransportError::Unavailable`](crate::TransportError::Unavailable) saying why
/// not otherwise (libibverbs missing, no device, no active port, ...).
pub fn available() -> crate::Result<()> {
    device::select(&RdmaConfig::from_env(1)).map(|_| ())
}
