//! [`EtcdStore`]: a store in an existing etcd cluster (cargo feature `etcd`).
//!
//! Keys live under a prefix in etcd's keyspace. Read-modify-write operations (`add`,
//! `compare_set`, `append`) are transactions conditioned on the key's mod revision (or
//! its absence), retried until they apply; waits watch the first missing key from the
//! revision at which it was seen missing, so no `put` can slip between the check and
//! the watch. The store owns a small tokio runtime and exposes the blocking [`Store`]
//! trait; do not call it from inside an async runtime (it returns an error if you do).

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn, TxnOp, WatchOptions,
};
use tokio::runtime::Runtime;

use super::table::{CompareSet, add_value, check_append_len, compare_set_decision};
use super::util::{
    Deadline, TimeoutCell, check_key, check_keys, check_multi_set, check_value,
    truncate_for_message,
};
use super::{DEFAULT_TIMEOUT, Store};
use crate::{Result, StoreError};

/// etcd's default limit on operations per transaction.
const MAX_TXN_OPS: usize = 128;
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A store whose keys live in etcd, for multi-node jobs that already run etcd.
///
/// Every key `k` is stored as `{prefix}{k}` (give a prefix ending in `/`, such as
/// `/tutti/job-42/`); [`num_keys`](Store::num_keys) counts the keys under the prefix.
/// etcd bounds request sizes (1.5 MiB by default), below this crate's value limit.
pub struct EtcdStore {
    rt: Runtime,
    client: Client,
    prefix: String,
    endpoints: String,
    timeout: TimeoutCell,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// A value and the revision it was last modified at.
type Versioned = Option<(Vec<u8>, i64)>;

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://host:port`, ...), retrying until
    /// `timeout` (zero: forever), with keys under `prefix`. `timeout` is also the
    /// store's default timeout.
    pub fn connect<E: AsRef<str>>(
        endpoints: &[E],
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self> {
        Self::connect_with_options(endpoints, prefix, timeout, None)
    }

    /// [`connect`](Self::connect) with etcd user credentials `(name, password)`.
    pub fn connect_with_options<E: AsRef<str>>(
        endpoints: &[E],
        prefix: &str,
        timeout: Duration,
        user: Option<(String, String)>,
    ) -> Result<Self> {
        let endpoints: Vec<String> = endpoints.iter().map(|e| e.as_ref().to_string()).collect();
        let joined = endpoints.join(",");
        let backend = |context: &str, e: &dyn std::fmt::Display| StoreError::Backend {
            context: format!("etcd {joined}: {context}"),
            message: e.to_string(),
        };
        ensure_not_in_runtime()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tutti-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Io {
                context: "starting the etcd store's runtime".into(),
                source: e,
            })?;
        let deadline = Deadline::after(timeout);
        let client = rt.block_on(async {
            let mut pause = Duration::from_millis(10);
            loop {
                let mut options =
                    ConnectOptions::new().with_connect_timeout(CONNECT_ATTEMPT_TIMEOUT);
                if let Some((name, password)) = &user {
                    options = options.with_user(name.clone(), password.clone());
                }
                let attempt = async {
                    let mut client = Client::connect(&endpoints, Some(options)).await?;
                    // Connecting can be lazy: make one real request.
                    client
                        .get("tutti-probe", Some(GetOptions::new().with_count_only()))
                        .await?;
                    Ok::<_, etcd_client::Error>(client)
                };
                let limit = deadline
                    .remaining()
                    .map_or(CONNECT_ATTEMPT_TIMEOUT, |l| l.min(CONNECT_ATTEMPT_TIMEOUT));
                let err = match tokio::time::timeout(limit, attempt).await {
                    Ok(Ok(client)) => return Ok(client),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {limit:?}"),
                };
                if deadline.expired() {
                    return Err(backend(
                        &format!("connecting: gave up after {:?}", deadline.elapsed()),
                        &err,
                    ));
                }
                tracing::debug!(endpoints = %joined, "etcd store: connect failed, retrying: {err}");
                let mut step = pause;
                if let Some(left) = deadline.remaining() {
                    step = step.min(left);
                }
                tokio::time::sleep(step).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        })?;
        Ok(Self {
            rt,
            client,
            prefix: prefix.to_string(),
            endpoints: joined,
            timeout: TimeoutCell::new(timeout),
        })
    }

    /// Connects with the [default timeout](DEFAULT_TIMEOUT).
    pub fn connect_default<E: AsRef<str>>(endpoints: &[E], prefix: &str) -> Result<Self> {
        Self::connect(endpoints, prefix, DEFAULT_TIMEOUT)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn err(&self, op: &str, key: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            context: format!(
                "etcd {} {op} {:?}",
                self.endpoints,
                truncate_for_message(key)
            ),
            message: e.to_string(),
        }
    }

    /// Runs `f` on the runtime, bounded by the store's timeout.
    fn run<T>(&self, op: &str, key: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
        ensure_not_in_runtime()?;
        let timeout = self.timeout();
        self.rt.block_on(async {
            if timeout.is_zero() {
                return f.await;
            }
            match tokio::time::timeout(timeout, f).await {
                Ok(r) => r,
                Err(_) => Err(self.err(op, key, format!("no reply within {timeout:?}"))),
            }
        })
    }

    async fn get_versioned(&self, op: &str, key: &str) -> Result<(Versioned, i64)> {
        let mut c = self.client.clone();
        let resp = c
            .get(self.full(key), None)
            .await
            .map_err(|e| self.err(op, key, e))?;
        let rev = resp.header().map_or(0, |h| h.revision());
        Ok((
            resp.kvs()
                .first()
                .map(|kv| (kv.value().to_vec(), kv.mod_revision())),
            rev,
        ))
    }

    /// Puts `value` if the key is still at `seen` (absent when `None`); returns
    /// whether it applied.
    async fn put_if_unchanged(
        &self,
        op: &str,
        key: &str,
        seen: &Versioned,
        value: Vec<u8>,
    ) -> Result<bool> {
        let full = self.full(key);
        let cond = match seen {
            Some((_, rev)) => Compare::mod_revision(full.clone(), CompareOp::Equal, *rev),
            None => Compare::version(full.clone(), CompareOp::Equal, 0),
        };
        let txn = Txn::new()
            .when([cond])
            .and_then([TxnOp::put(full, value, None)]);
        let mut c = self.client.clone();
        Ok(c.txn(txn)
            .await
            .map_err(|e| self.err(op, key, e))?
            .succeeded())
    }

    /// The first of `keys` that is missing, with the revision it was seen missing at.
    async fn first_missing<'k>(
        &self,
        op: &str,
        keys: &[&'k str],
    ) -> Result<Option<(&'k str, i64)>> {
        let mut c = self.client.clone();
        for key in keys {
            let resp = c
                .get(self.full(key), Some(GetOptions::new().with_count_only()))
                .await
                .map_err(|e| self.err(op, key, e))?;
            if resp.count() == 0 {
                return Ok(Some((key, resp.header().map_or(0, |h| h.revision()))));
            }
        }
        Ok(None)
    }

    /// Waits until every key exists; `Ok(false)` when `deadline` passes first.
    async fn wait_async(&self, op: &str, keys: &[&str], deadline: &Deadline) -> Result<bool> {
        loop {
            let Some((key, rev)) = self.first_missing(op, keys).await? else {
                return Ok(true);
            };
            if deadline.expired() {
                return Ok(false);
            }
            let mut c = self.client.clone();
            let options = WatchOptions::new().with_start_revision(rev + 1);
            let mut stream = c
                .watch(self.full(key), Some(options))
                .await
                .map_err(|e| self.err(op, key, e))?;
            loop {
                let next = match deadline.remaining() {
                    None => stream.message().await,
                    Some(left) => match tokio::time::timeout(left, stream.message()).await {
                        Ok(next) => next,
                        Err(_) => return Ok(false),
                    },
                };
                match next.map_err(|e| self.err(op, key, e))? {
                    Some(resp) if resp.canceled() => {
                        return Err(self.err(
                            op,
                            key,
                            format!("watch canceled: {}", resp.cancel_reason()),
                        ));
                    }
                    Some(resp)
                        if resp
                            .events()
                            .iter()
                            .any(|e| e.event_type() == EventType::Put) =>
                    {
                        break;
                    }
                    Some(_) => {}
                    None => return Err(self.err(op, key, "the watch stream ended")),
                }
            }
        }
    }

    /// Waits for `keys`, turning a timeout into [`StoreError::Timeout`].
    fn wait_keys(&self, op: &'static str, keys: &[&str], timeout: Duration) -> Result<()> {
        ensure_not_in_runtime()?;
        let deadline = Deadline::after(timeout);
        let all = self.rt.block_on(self.wait_async(op, keys, &deadline))?;
        if all {
            return Ok(());
        }
        let missing = self.rt.block_on(async {
            let mut missing = Vec::new();
            for key in keys {
                if self.first_missing(op, &[key]).await?.is_some() {
                    missing.push(*key);
                }
            }
            Ok::<_, StoreError>(missing)
        })?;
        Err(deadline.timeout_error(keys, &missing))
    }

    /// Values of `keys` if they all exist now.
    fn get_all_now(&self, op: &str, keys: &[&str]) -> Result<Option<Vec<Vec<u8>>>> {
        self.run(op, keys.first().copied().unwrap_or(""), async {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                match self.get_versioned(op, key).await?.0 {
                    Some((v, _)) => out.push(v),
                    None => return Ok(None),
                }
            }
            Ok(Some(out))
        })
    }
}

fn ensure_not_in_runtime() -> Result<()> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(StoreError::InvalidArgument(
            "EtcdStore's blocking calls cannot run inside a tokio runtime; call them from a plain thread or spawn_blocking"
                .into(),
        ));
    }
    Ok(())
}

fn request_error(op: &'static str, key: &str, message: String) -> StoreError {
    StoreError::Request {
        op,
        key: key.to_string(),
        message,
    }
}

impl Store for EtcdStore {
    fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        check_key("set", key)?;
        check_value("set", key, value.len())?;
        self.run("set", key, async {
            let mut c = self.client.clone();
            c.put(self.full(key), value, None)
                .await
                .map_err(|e| self.err("set", key, e))?;
            Ok(())
        })
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        check_key("get", key)?;
        loop {
            self.wait_keys("get", &[key], self.timeout())?;
            if let Some(mut v) = self.get_all_now("get", &[key])? {
                return Ok(v.pop().unwrap_or_default());
            }
        }
    }

    fn add(&self, key: &str, delta: i64) -> Result<i64> {
        check_key("add", key)?;
        self.run("add", key, async {
            loop {
                let (seen, _) = self.get_versioned("add", key).await?;
                let new = add_value(seen.as_ref().map(|(v, _)| v.as_slice()), delta)
                    .map_err(|m| request_error("add", key, m))?;
                if self
                    .put_if_unchanged("add", key, &seen, new.to_string().into_bytes())
                    .await?
                {
                    return Ok(new);
                }
            }
        })
    }

    fn compare_set(&self, key: &str, expected: &[u8], desired: &[u8]) -> Result<Vec<u8>> {
        check_key("compare_set", key)?;
        check_value("compare_set", key, desired.len())?;
        self.run("compare_set", key, async {
            loop {
                let (seen, _) = self.get_versioned("compare_set", key).await?;
                match compare_set_decision(
                    seen.as_ref().map(|(v, _)| v.as_slice()),
                    expected,
                    desired,
                ) {
                    CompareSet::Return(v) => return Ok(v),
                    CompareSet::Set => {
                        if self
                            .put_if_unchanged("compare_set", key, &seen, desired.to_vec())
                            .await?
                        {
                            return Ok(desired.to_vec());
                        }
                    }
                }
            }
        })
    }

    fn check(&self, keys: &[&str]) -> Result<bool> {
        check_keys("check", keys)?;
        self.run("check", keys.first().copied().unwrap_or(""), async {
            Ok(self.first_missing("check", keys).await?.is_none())
        })
    }

    fn wait(&self, keys: &[&str], timeout: Option<Duration>) -> Result<()> {
        check_keys("wait", keys)?;
        self.wait_keys("wait", keys, timeout.unwrap_or_else(|| self.timeout()))
    }

    fn multi_get(&self, keys: &[&str]) -> Result<Vec<Vec<u8>>> {
        check_keys("multi_get", keys)?;
        loop {
            self.wait_keys("multi_get", keys, self.timeout())?;
            if let Some(values) = self.get_all_now("multi_get", keys)? {
                return Ok(values);
            }
        }
    }

    fn multi_set(&self, keys: &[&str], values: &[&[u8]]) -> Result<()> {
        check_multi_set(keys, values)?;
        self.run("multi_set", keys.first().copied().unwrap_or(""), async {
            let pairs: Vec<(&&str, &&[u8])> = keys.iter().zip(values).collect();
            for chunk in pairs.chunks(MAX_TXN_OPS) {
                let ops: Vec<TxnOp> = chunk
                    .iter()
                    .map(|(k, v)| TxnOp::put(self.full(k), v.to_vec(), None))
                    .collect();
                let mut c = self.client.clone();
                c.txn(Txn::new().and_then(ops))
                    .await
                    .map_err(|e| self.err("multi_set", chunk[0].0, e))?;
            }
            Ok(())
        })
    }

    fn append(&self, key: &str, value: &[u8]) -> Result<()> {
        check_key("append", key)?;
        check_value("append", key, value.len())?;
        self.run("append", key, async {
            loop {
                let (seen, _) = self.get_versioned("append", key).await?;
                let current = seen.as_ref().map_or(&[][..], |(v, _)| v.as_slice());
                check_append_len(current.len(), value.len())
                    .map_err(|m| request_error("append", key, m))?;
                let joined = [current, value].concat();
                if self.put_if_unchanged("append", key, &seen, joined).await? {
                    return Ok(());
                }
            }
        })
    }

    fn delete_key(&self, key: &str) -> Result<bool> {
        check_key("delete_key", key)?;
        self.run("delete_key", key, async {
            let mut c = self.client.clone();
            let resp = c
                .delete(self.full(key), None)
                .await
                .map_err(|e| self.err("delete_key", key, e))?;
            Ok(resp.deleted() > 0)
        })
    }

    fn num_keys(&self) -> Result<u64> {
        self.run("num_keys", "", async {
            let mut c = self.client.clone();
            let options = if self.prefix.is_empty() {
                GetOptions::new().with_all_keys()
            } else {
                GetOptions::new().with_prefix()
            };
            let resp = c
                .get(self.prefix.clone(), Some(options.with_count_only()))
                .await
                .map_err(|e| self.err("num_keys", "", e))?;
            Ok(u64::try_from(resp.count()).unwrap_or(0))
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout.get()
    }

    fn set_timeout(&self, timeout: Duration) {
        self.timeout.set(timeout);
    }
}
