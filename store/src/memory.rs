//! [`MemoryStore`]: a store shared by the threads of one process (c10d's HashStore).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::table::Table;
use super::util::{Deadline, TimeoutCell, check_key, check_keys, check_multi_set, check_value};
use super::{DEFAULT_TIMEOUT, Store};
use crate::{Result, StoreError};

/// An in-memory store for ranks that are threads of one process.
///
/// Clones share the same keys (each clone has its own default timeout); waits block on
/// a condition variable and are woken by the `set`, `add`, ... that satisfies them.
#[derive(Debug)]
pub struct MemoryStore {
    shared: Arc<Shared>,
    timeout: TimeoutCell,
}

#[derive(Debug, Default)]
struct Shared {
    table: Mutex<Table>,
    changed: Condvar,
}

impl MemoryStore {
    /// An empty store with the [default timeout](DEFAULT_TIMEOUT).
    pub fn new() -> Self {
        Self::with_timeout(DEFAULT_TIMEOUT)
    }

    /// An empty store with the given default timeout (zero: wait forever).
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            shared: Arc::default(),
            timeout: TimeoutCell::new(timeout),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table is only mutated by code that does not panic, so a poisoned lock
        // still guards a consistent table.
        self.shared
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn update<T>(&self, f: impl FnOnce(&mut Table) -> (T, bool)) -> T {
        let (out, changed) = f(&mut self.lock());
        if changed {
            self.shared.changed.notify_all();
        }
        out
    }

    /// Waits until every key exists, then returns the locked table.
    fn wait_locked(&self, keys: &[&str], timeout: Duration) -> Result<MutexGuard<'_, Table>> {
        let deadline = Deadline::after(timeout);
        let mut table = self.lock();
        loop {
            let missing = table.missing(keys);
            if missing.is_empty() {
                return Ok(table);
            }
            table = match deadline.remaining() {
                None => self
                    .shared
                    .changed
                    .wait(table)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(left) if left.is_zero() => return Err(deadline.timeout_error(keys, &missing)),
                Some(left) => {
                    self.shared
                        .changed
                        .wait_timeout(table, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for MemoryStore {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            timeout: TimeoutCell::new(self.timeout.get()),
        }
    }
}

fn request_error(op: &'static str, key: &str, message: String) -> StoreError {
    StoreError::Request {
        op,
        key: key.to_string(),
        message,
    }
}

impl Store for MemoryStore {
    fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        check_key("set", key)?;
        check_value("set", key, value.len())?;
        self.update(|t| {
            t.set(key, value.to_vec());
            ((), true)
        });
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        check_key("get", key)?;
        let table = self.wait_locked(&[key], self.timeout())?;
        Ok(table.get(key).cloned().unwrap_or_default())
    }

    fn add(&self, key: &str, delta: i64) -> Result<i64> {
        check_key("add", key)?;
        self.update(|t| match t.add(key, delta) {
            Ok(v) => (Ok(v), true),
            Err(m) => (Err(request_error("add", key, m)), false),
        })
    }

    fn compare_set(&self, key: &str, expected: &[u8], desired: &[u8]) -> Result<Vec<u8>> {
        check_key("compare_set", key)?;
        check_value("compare_set", key, desired.len())?;
        Ok(self.update(|t| t.compare_set(key, expected, desired)))
    }

    fn check(&self, keys: &[&str]) -> Result<bool> {
        check_keys("check", keys)?;
        Ok(self.lock().missing(keys).is_empty())
    }

    fn wait(&self, keys: &[&str], timeout: Option<Duration>) -> Result<()> {
        check_keys("wait", keys)?;
        self.wait_locked(keys, timeout.unwrap_or_else(|| self.timeout()))
            .map(drop)
    }

    fn multi_get(&self, keys: &[&str]) -> Result<Vec<Vec<u8>>> {
        check_keys("multi_get", keys)?;
        let table = self.wait_locked(keys, self.timeout())?;
        Ok(keys
            .iter()
            .map(|k| table.get(k).cloned().unwrap_or_default())
            .collect())
    }

    fn multi_set(&self, keys: &[&str], values: &[&[u8]]) -> Result<()> {
        check_multi_set(keys, values)?;
        self.update(|t| {
            for (k, v) in keys.iter().zip(values) {
                t.set(k, v.to_vec());
            }
            ((), true)
        });
        Ok(())
    }

    fn append(&self, key: &str, value: &[u8]) -> Result<()> {
        check_key("append", key)?;
        self.update(|t| match t.append(key, value) {
            Ok(()) => (Ok(()), true),
            Err(m) => (Err(request_error("append", key, m)), false),
        })
    }

    fn delete_key(&self, key: &str) -> Result<bool> {
        check_key("delete_key", key)?;
        Ok(self.update(|t| (t.delete(key), false)))
    }

    fn num_keys(&self) -> Result<u64> {
        Ok(self.lock().len() as u64)
    }

    fn timeout(&self) -> Duration {
        self.timeout.get()
    }

    fn set_timeout(&self, timeout: Duration) {
        self.timeout.set(timeout);
    }
}
