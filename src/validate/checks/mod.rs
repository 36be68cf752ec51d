//! The checks, one module per subject. Each check function runs collectively on
//! every rank and returns the same results on every rank (what ranks measured is
//! exchanged through the store before it is judged).

pub mod busbw;
pub mod collectives;
pub mod data;
pub mod gpu;
pub mod host;
pub mod inventory;
pub mod links;
pub mod memory;
pub mod pairs;
pub mod rdma;
pub mod shm;
pub mod soak;
