//! # tutti-transport
//!
//! Moves bytes between two ranks. A [`Link`] is an ordered, reliable, bidirectional
//! channel with bounded buffering, split into a [`SendHalf`] and a [`RecvHalf`];
//! [`ops`] builds NCCL's primitives on them (send, recv, recv-reduce,
//! recv-reduce-send, recv-reduce-copy-send, recv-copy-send) so that reductions read
//! straight out of the link's buffers. Implementations:
//!
//! - [`shm`]: shared memory between processes on one host (FIFOs of slots in
//!   `/dev/shm`, futex waits, single-copy `process_vm_readv` for large messages),
//!   and the in-process variant for ranks that are threads;
//! - [`tcp`]: framed messages over several sockets per peer, read by the waiting
//!   thread itself (no reader threads), with an optional CRC32;
//! - `rdma` (the `rdma` feature): RC queue pairs, RDMA writes with immediate into
//!   the peer's registered receive ring, credits written back;
//! - [`faulty`]: a wrapper that drops, delays, corrupts or cuts messages, for tests.
//!
//! [`registry`] lists the transports in priority order (the same-host window, shm,
//! rdma, tcp) and picks one per pair of ranks; `TUTTI_TRANSPORT` narrows it.
//!
//! This crate knows nothing about dtypes or devices: reductions go through the
//! [`ByteReducer`] the caller hands in. Links are set up through a [`Rendezvous`]
//! (a Store, in `tutti`). Every blocking call takes a [`Deadline`]; a dead peer or a
//! passed deadline is an error naming the peer, never a hang.

pub mod bridge;
pub mod copy;
mod deadline;
mod error;
pub mod faulty;
mod link;
mod liveness;
pub mod ops;
pub mod p2p;
#[cfg(feature = "rdma")]
pub mod rdma;
mod reducer;
pub mod registry;
mod rendezvous;
pub mod shm;
pub mod tcp;
mod wait;
pub mod window;

pub use deadline::Deadline;
pub use error::{GeometryError, Result, TransportError};
pub use link::{Injected, Link, Links, Message, RecvHalf, RemoteRead, SendHalf};
pub use reducer::{ByteReducer, ReduceError};
pub use rendezvous::{Rendezvous, RendezvousError};
pub use wait::{AbortHandle, WaitBudget, WaitPolicy, cores, wake_latency};
