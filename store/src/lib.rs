//! Key-value stores that ranks rendezvous through, and the barrier utilities over them.
//!
//! The [`Store`] trait follows c10d's `Store` (torch.distributed) operation by
//! operation: [`set`](Store::set), [`get`](Store::get) (which waits for the key),
//! [`add`](Store::add) (a counter stored as decimal text), [`compare_set`](Store::compare_set),
//! [`check`](Store::check), [`wait`](Store::wait), [`multi_get`](Store::multi_get),
//! [`multi_set`](Store::multi_set), [`append`](Store::append),
//! [`delete_key`](Store::delete_key) and [`num_keys`](Store::num_keys), with a default
//! timeout of [`DEFAULT_TIMEOUT`] (300 s) where a zero timeout means "wait forever".
//!
//! Implementations:
//! - [`TcpStore`]: a client of a [`TcpStoreServer`], the embedded default (the server
//!   runs in rank 0's process or in the launcher; one event-loop thread serves
//!   thousands of clients, every connection presents the job token). The server also
//!   speaks c10d's TCPStore wire protocol on the same port, so torch.distributed
//!   programs rendezvous through it, and [`TcpStore`] can speak it to a torch
//!   `TCPStore` server ([`StoreProtocol::C10d`]);
//! - [`FileStore`]: processes that share one file (on a local or shared file system);
//! - [`MemoryStore`]: threads of one process;
//! - [`PrefixStore`]: a namespace (`prefix/key`) inside another store;
//! - `EtcdStore` (cargo feature `etcd`): keys in an existing etcd cluster.
//!
//! # Security
//!
//! tutti's own protocol authenticates every connection with the job token
//! (`TUTTI_JOB_TOKEN`, compared in constant time); a wrong token is refused. c10d's
//! protocol has no token, so a server accepts its clients only as its
//! [`C10dAccess`] allows: [`TcpStoreServer::bind`] and a master [`TcpStore`] refuse
//! them unless asked; `tutti run`'s workers' store accepts them from anywhere by
//! default (torch workers on every node must reach it; `--c10d-store loopback` or
//! `deny` narrows it), exactly the exposure of torchrun's own store. Every refused
//! connection, and every connection closed for breaking either protocol, is logged
//! (warning) with the peer's address. Sizes are bounded on both protocols (c10d:
//! keys 8 KiB, values 8 MiB, 128 Ki keys per request, 64 MiB per request, as c10d's
//! own server); malformed input closes that connection and nothing else.
//!
//! The [`barrier`], [`synchronize`] and [`get_all`] functions implement
//! torch.distributed.elastic's store utilities over any of them, including the report
//! of missing ranks when a barrier times out.

mod error;
#[cfg(feature = "etcd")]
mod etcd;
mod file;
mod memory;
mod prefix;
mod rendezvous;
mod table;
mod tcp;
mod util;

use std::sync::Arc;
use std::time::Duration;

pub use error::{Result, StoreError};
#[cfg(feature = "etcd")]
pub use etcd::EtcdStore;
pub use file::FileStore;
pub use memory::MemoryStore;
pub use prefix::PrefixStore;
pub use rendezvous::{
    DEFAULT_TRACE_TIMEOUT, barrier, barrier_with_trace_timeout, get_all, synchronize,
};
pub use tcp::{
    C10dAccess, PROTOCOL_ENV, StoreProtocol, TcpStore, TcpStoreBuilder, TcpStoreServer,
    raise_fd_limit,
};

/// The timeout a store starts with: 300 s, as in torch.distributed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest key a store accepts, in bytes.
pub const MAX_KEY_LEN: usize = 4096;

/// The largest value a store accepts (and the largest an `append` may grow a value
/// to), in bytes.
pub const MAX_VALUE_LEN: usize = 64 << 20;

/// The environment variable a job's token is read from when none is passed to the
/// store's constructor.
pub const JOB_TOKEN_ENV: &str = "TUTTI_JOB_TOKEN";

/// A key-value store with c10d's semantics, shared by the ranks of a job.
///
/// Keys are strings of at most [`MAX_KEY_LEN`] bytes; values are bytes, at most
/// [`MAX_VALUE_LEN`]. Every call is blocking. Calls that wait for keys (`get`,
/// `multi_get`, `wait`) fail with [`StoreError::Timeout`]
/// naming the keys and the time waited once their timeout expires; a timeout of zero
/// waits forever.
pub trait Store: Send + Sync {
    /// Sets `key` to `value`, replacing any previous value, and wakes the callers
    /// waiting for `key`.
    fn set(&self, key: &str, value: &[u8]) -> Result<()>;

    /// Returns the value of `key`, waiting up to [`timeout`](Store::timeout) for it to
    /// be set.
    fn get(&self, key: &str) -> Result<Vec<u8>>;

    /// Adds `delta` to the counter at `key` and returns the new value. The counter is
    /// stored as decimal text; a missing key counts from 0. Fails if the present value
    /// is not a decimal integer or the sum overflows an `i64`.
    fn add(&self, key: &str, delta: i64) -> Result<i64>;

    /// Atomically compares and sets, with c10d's rules: if `key` is missing and
    /// `expected` is empty, sets `desired` and returns it; if `key` is missing and
    /// `expected` is not empty, returns `expected` and sets nothing; if the value
    /// equals `expected`, sets `desired` and returns it; otherwise returns the current
    /// value.
    fn compare_set(&self, key: &str, expected: &[u8], desired: &[u8]) -> Result<Vec<u8>>;

    /// Returns whether every key in `keys` exists, without waiting.
    fn check(&self, keys: &[&str]) -> Result<bool>;

    /// Waits until every key in `keys` exists, up to `timeout` (`None`: the store's
    /// [`timeout`](Store::timeout); zero: forever).
    fn wait(&self, keys: &[&str], timeout: Option<Duration>) -> Result<()>;

    /// Returns the values of `keys`, in order, waiting up to the store's timeout for
    /// all of them to exist.
    fn multi_get(&self, keys: &[&str]) -> Result<Vec<Vec<u8>>>;

    /// Sets `keys[i]` to `values[i]` for every `i`. The slices must have equal
    /// lengths.
    fn multi_set(&self, keys: &[&str], values: &[&[u8]]) -> Result<()>;

    /// Appends `value` to the value of `key`, creating it if it is missing.
    fn append(&self, key: &str, value: &[u8]) -> Result<()>;

    /// Deletes `key`; returns whether it existed.
    fn delete_key(&self, key: &str) -> Result<bool>;

    /// Returns the number of keys in the store (for a [`PrefixStore`], in the whole
    /// underlying store, as in c10d).
    fn num_keys(&self) -> Result<u64>;

    /// The timeout of `get`, `multi_get` and `wait` without an explicit timeout.
    fn timeout(&self) -> Duration;

    /// Changes the default timeout (zero: wait forever).
    fn set_timeout(&self, timeout: Duration);
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<S: Store + ?Sized> Store for $ty {
            fn set(&self, key: &str, value: &[u8]) -> Result<()> {
                (**self).set(key, value)
            }
            fn get(&self, key: &str) -> Result<Vec<u8>> {
                (**self).get(key)
            }
            fn add(&self, key: &str, delta: i64) -> Result<i64> {
                (**self).add(key, delta)
            }
            fn compare_set(&self, key: &str, expected: &[u8], desired: &[u8]) -> Result<Vec<u8>> {
                (**self).compare_set(key, expected, desired)
            }
            fn check(&self, keys: &[&str]) -> Result<bool> {
                (**self).check(keys)
            }
            fn wait(&self, keys: &[&str], timeout: Option<Duration>) -> Result<()> {
                (**self).wait(keys, timeout)
            }
            fn multi_get(&self, keys: &[&str]) -> Result<Vec<Vec<u8>>> {
                (**self).multi_get(keys)
            }
            fn multi_set(&self, keys: &[&str], values: &[&[u8]]) -> Result<()> {
                (**self).multi_set(keys, values)
            }
            fn append(&self, key: &str, value: &[u8]) -> Result<()> {
                (**self).append(key, value)
            }
            fn delete_key(&self, key: &str) -> Result<bool> {
                (**self).delete_key(key)
            }
            fn num_keys(&self) -> Result<u64> {
                (**self).num_keys()
            }
            fn timeout(&self) -> Duration {
                (**self).timeout()
            }
            fn set_timeout(&self, timeout: Duration) {
                (**self).set_timeout(timeout)
            }
        }
    )*};
}

forward_store!(Arc<S>, Box<S>, &S);

/// Formats the `missing_ranks` field of [`StoreError::BarrierTimeout`](crate::StoreError::BarrierTimeout).
pub(crate) fn format_missing_ranks(missing: Option<&[usize]>) -> String {
    match missing {
        Some(ranks) => {
            let list: Vec<String> = ranks.iter().map(|r| r.to_string()).collect();
            format!("[{}]", list.join(", "))
        }
        None => "[<check rank 0 (0) for missing rank info>]".to_string(),
    }
}
