//! # tutti
//!
//! A GPU-first collective communication library: ranks call all_reduce, broadcast,
//! all_gather, reduce_scatter, all_to_all, send/recv... on host or GPU buffers, and
//! tutti moves and reduces the bytes over shared memory, TCP or RDMA verbs.
//!
//! This crate holds the public API and the data model:
//! - [`DataType`], [`ReduceOp`] (with the validity matrix and every numeric rule),
//!   [`Element`] (Rust types mapped to data types), the fp8 types [`F8E4M3`] and
//!   [`F8E5M2`], and the library's [`Error`];
//! - [`cpu`]: the vectorized CPU reduction kernels;
//! - [`gpu`]: the CUDA reduction kernels (compiled by `build.rs`, loaded through the
//!   CUDA driver at run time when one is present).
//! - [`store`] (the `tutti-store` crate): the key-value stores ranks rendezvous
//!   through (TCP, file, memory, prefix, etcd) and the barrier / synchronize
//!   utilities over them.
//! - [`launch`] (the `tutti-launch` crate): the launcher (`tutti run`,
//!   torchrun-compatible) and its library API ([`launch::Launcher`]).
//! - [`testdata`]: exactly reducible data for benchmarks and validation (per-rank
//!   inputs whose reduction is exact in any order, the reference, the checker) and
//!   [`with_elem!`], which binds the Rust element type of a run-time [`DataType`].
//! - [`validate`]: hardware validation (`tutti validate`): levels of checks whose
//!   verdicts name the bad rank, pair, link, node or GPU ([`validate::Validator`]).

pub mod cpu;
mod error;
pub mod gpu;
pub mod group;
pub mod testdata;
pub mod validate;

pub use error::{Error, Result};
pub use group::{DirectReads, GroupOptions, ProcessGroup, SharedBuffer, Work, init};
/// The data model, re-exported from `tutti-core`.
pub use tutti_core::{DataType, Element, F8E4M3, F8E5M2, Finalize, ReduceOp, StepOp, convert};
/// The same-host window algorithms, re-exported.
pub use tutti_intra as intra;
/// The launcher (`tutti run`), re-exported from `tutti-launch`.
pub use tutti_launch as launch;
pub use tutti_launch::{LaunchConfig, Launcher};
/// The RPC layer (named workers, remote calls, remote references), re-exported from
/// `tutti-rpc`.
pub use tutti_rpc as rpc;
/// The key-value stores, re-exported from `tutti-store`.
pub use tutti_store as store;
/// The transport layer (links, windows, the point-to-point engine), re-exported.
pub use tutti_transport as transport;
