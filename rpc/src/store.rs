//! The one place this crate imports tutti's Store from.
//!
//! Every store item the RPC layer uses comes through here, so that moving the Store
//! into its own crate (`tutti-store`) is a change of these lines (and of the
//! dependency in Cargo.toml) only.

pub use tutti_store::{FileStore, MemoryStore, PrefixStore, Store, TcpStore};

/// The error type the store's operations return.
pub use tutti_store::StoreError;
