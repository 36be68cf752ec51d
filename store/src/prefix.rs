//! [`PrefixStore`]: a namespace inside another store (c10d's PrefixStore).

use std::time::Duration;

use super::Store;
use crate::{Result, StoreError};

/// Wraps a store so that every key `k` becomes `prefix/k` in the underlying store.
///
/// Several process groups (or several rendezvous rounds) can share one store this way.
/// [`num_keys`](Store::num_keys) counts the keys of the whole underlying store, and the
/// timeout is the underlying store's, as in c10d. Timeout errors name the caller's keys
/// (without the prefix).
#[derive(Debug, Clone)]
pub struct PrefixStore<S> {
    prefix: String,
    inner: S,
}

impl<S: Store> PrefixStore<S> {
    /// Keys of this store live under `prefix/` in `inner`.
    pub fn new(prefix: impl Into<String>, inner: S) -> Self {
        Self {
            prefix: prefix.into(),
            inner,
        }
    }

    /// The prefix (without the trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The underlying store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn key(&self, key: &str) -> String {
        format!("{}/{}", self.prefix, key)
    }

    fn keys(&self, keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| self.key(k)).collect()
    }

    /// Names the caller's keys (without the prefix) in a timeout error.
    fn unprefix(&self, err: StoreError) -> StoreError {
        let strip = |keys: Vec<String>| -> Vec<String> {
            let p = format!("{}/", self.prefix);
            keys.into_iter()
                .map(|k| k.strip_prefix(&p).map(str::to_string).unwrap_or(k))
                .collect()
        };
        match err {
            StoreError::Timeout {
                keys,
                missing,
                waited,
            } => StoreError::Timeout {
                keys: strip(keys),
                missing: strip(missing),
                waited,
            },
            other => other,
        }
    }
}

fn as_refs(keys: &[String]) -> Vec<&str> {
    keys.iter().map(String::as_str).collect()
}

impl<S: Store> Store for PrefixStore<S> {
    fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.inner.set(&self.key(key), value)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.inner.get(&self.key(key)).map_err(|e| self.unprefix(e))
    }

    fn add(&self, key: &str, delta: i64) -> Result<i64> {
        self.inner.add(&self.key(key), delta)
    }

    fn compare_set(&self, key: &str, expected: &[u8], desired: &[u8]) -> Result<Vec<u8>> {
        self.inner.compare_set(&self.key(key), expected, desired)
    }

    fn check(&self, keys: &[&str]) -> Result<bool> {
        self.inner.check(&as_refs(&self.keys(keys)))
    }

    fn wait(&self, keys: &[&str], timeout: Option<Duration>) -> Result<()> {
        self.inner
            .wait(&as_refs(&self.keys(keys)), timeout)
            .map_err(|e| self.unprefix(e))
    }

    fn multi_get(&self, keys: &[&str]) -> Result<Vec<Vec<u8>>> {
        self.inner
            .multi_get(&as_refs(&self.keys(keys)))
            .map_err(|e| self.unprefix(e))
    }

    fn multi_set(&self, keys: &[&str], values: &[&[u8]]) -> Result<()> {
        self.inner.multi_set(&as_refs(&self.keys(keys)), values)
    }

    fn append(&self, key: &str, value: &[u8]) -> Result<()> {
        self.inner.append(&self.key(key), value)
    }

    fn delete_key(&self, key: &str) -> Result<bool> {
        self.inner.delete_key(&self.key(key))
    }

    fn num_keys(&self) -> Result<u64> {
        self.inner.num_keys()
    }

    fn timeout(&self) -> Duration {
        self.inner.timeout()
    }

    fn set_timeout(&self, timeout: Duration) {
        self.inner.set_timeout(timeout);
    }
}
