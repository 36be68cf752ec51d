//! [`TcpStore`]'s operations in c10d's TCPStore protocol ([`StoreProtocol::C10d`]),
//! done as torch's own `TCPStore` client does them: `get` and `multi_get` first
//! `WAIT` for their keys, a wait whose timeout expires sends `CANCEL_WAIT`, and
//! `set`, `append` and `multi_set` get no reply.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::c10d::{self, query};
use super::c10d_client::{C10dConnection, C10dError, WaitEnd};
use super::{ConnState, REPLY_GRACE, StoreProtocol, TcpStore, TcpStoreBuilder, wire_key};
use crate::util::{TimeoutCell, timeout_error, truncate_for_message};
use crate::{Result, Store, StoreError};

/// The key torch's clients add 1 to when given a world size (no `/` before it).
const C10D_INIT_KEY: &str = "init/";

/// Waits on more keys than this report every key as missing instead of asking
/// the server about each.
const MAX_MISSING_PROBES: usize = 64;

impl TcpStoreBuilder {
    /// Connects in c10d's protocol; with a world size, checks in under `init/` as
    /// torch's clients do (so that a torch master's `wait_for_workers` counts it).
    pub(super) fn connect_c10d(self) -> Result<TcpStore> {
        let conn = C10dConnection::connect(&self.host, self.port, self.timeout)?;
        let store = TcpStore {
            conn: Mutex::new(ConnState::C10d(conn)),
            host: self.host,
            port: self.port,
            token: Vec::new(),
            timeout: TimeoutCell::new(self.timeout),
            server: None,
            protocol: StoreProtocol::C10d,
        };
        if self.world_size.is_some() {
            store.c10d_add(C10D_INIT_KEY, C10D_INIT_KEY, 1)?;
        }
        Ok(store)
    }
}

fn check_c10d_value(op: &'static str, key: &str, len: usize) -> Result<()> {
    if len > c10d::MAX_VALUE_LEN {
        return Err(StoreError::Request {
            op,
            key: truncate_for_message(key),
            message: format!(
                "value of {len} bytes exceeds the limit of a c10d TCPStore server ({} bytes)",
                c10d::MAX_VALUE_LEN
            ),
        });
    }
    Ok(())
}

impl TcpStore {
    /// Runs `f` on the c10d connection; an I/O or protocol error breaks it for good.
    fn c10d_call<T>(
        &self,
        op: &'static str,
        key: &str,
        f: impl FnOnce(&mut C10dConnection, Option<Duration>) -> std::result::Result<T, C10dError>,
    ) -> Result<T> {
        let mut state = self.lock();
        let conn = match &mut *state {
            ConnState::C10d(conn) => conn,
            ConnState::Ready(_) => {
                return Err(StoreError::InvalidArgument(format!(
                    "store {op}: a tutti connection cannot carry c10d's protocol"
                )));
            }
            ConnState::Broken(why) => {
                return Err(StoreError::Io {
                    context: format!(
                        "store {op} {:?}: the connection to {}:{} broke earlier ({why})",
                        truncate_for_message(key),
                        self.host,
                        self.port
                    ),
                    source: std::io::ErrorKind::NotConnected.into(),
                });
            }
        };
        let reply_timeout = Some(self.timeout())
            .filter(|t| !t.is_zero())
            .map(|t| t.saturating_add(REPLY_GRACE));
        let peer = conn.peer().to_string();
        match f(conn, reply_timeout) {
            Ok(v) => Ok(v),
            Err(e) => {
                let err = match e {
                    C10dError::Io(source) => StoreError::Io {
                        context: format!(
                            "store {op} {:?} with c10d TCPStore server {peer}",
                            truncate_for_message(key)
                        ),
                        source,
                    },
                    C10dError::Protocol(message) => StoreError::Protocol { peer, message },
                };
                tracing::warn!("c10d store client: connection broken: {err}");
                *state = ConnState::Broken(err.to_string());
                Err(err)
            }
        }
    }

    /// Waits for `keys` up to `timeout` (zero: forever); on timeout, the error names
    /// the keys still missing.
    fn c10d_wait_keys(&self, op: &'static str, keys: &[&str], timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let wire: Vec<String> = keys.iter().map(|k| wire_key(k)).collect();
        let wait = Some(timeout).filter(|t| !t.is_zero());
        let missing = self.c10d_call(op, keys.first().copied().unwrap_or(""), |c, reply| {
            if c.wait(&wire, wait, reply)? == WaitEnd::Done {
                return Ok(None);
            }
            if keys.len() > MAX_MISSING_PROBES {
                return Ok(Some(keys.to_vec()));
            }
            let mut missing = Vec::new();
            for (k, w) in keys.iter().zip(&wire) {
                c.request(|b| {
                    b.u8(query::CHECK).keys(std::slice::from_ref(w));
                })?;
                if c.read_u8(reply)? != c10d::CHECK_READY {
                    missing.push(*k);
                }
            }
            Ok(Some(missing))
        })?;
        match missing {
            None => Ok(()),
            Some(missing) => Err(timeout_error(keys, &missing, start.elapsed())),
        }
    }

    pub(super) fn c10d_set(&self, key: &str, value: &[u8]) -> Result<()> {
        check_c10d_value("set", key, value.len())?;
        let wire = wire_key(key);
        self.c10d_call("set", key, |c, _| {
            c.request(|b| {
                b.u8(query::SET).bytes(wire.as_bytes()).bytes(value);
            })?;
            Ok(())
        })
    }

    pub(super) fn c10d_get(&self, key: &str) -> Result<Vec<u8>> {
        self.c10d_wait_keys("get", &[key], self.timeout())?;
        let wire = wire_key(key);
        self.c10d_call("get", key, |c, reply| {
            c.request(|b| {
                b.u8(query::GET).bytes(wire.as_bytes());
            })?;
            c.read_bytes(reply)
        })
    }

    /// `add` on the wire key `wire` (named `key` in errors).
    pub(super) fn c10d_add(&self, wire: &str, key: &str, delta: i64) -> Result<i64> {
        self.c10d_call("add", key, |c, reply| {
            c.request(|b| {
                b.u8(query::ADD).bytes(wire.as_bytes()).i64(delta);
            })?;
            Ok(c.read_i64(reply)?)
        })
    }

    pub(super) fn c10d_compare_set(
        &self,
        key: &str,
        expected: &[u8],
        desired: &[u8],
    ) -> Result<Vec<u8>> {
        check_c10d_value("compare_set", key, expected.len())?;
        check_c10d_value("compare_set", key, desired.len())?;
        let wire = wire_key(key);
        self.c10d_call("compare_set", key, |c, reply| {
            c.request(|b| {
                b.u8(query::COMPARE_SET)
                    .bytes(wire.as_bytes())
                    .bytes(expected)
                    .bytes(desired);
            })?;
            c.read_bytes(reply)
        })
    }

    pub(super) fn c10d_check(&self, keys: &[&str]) -> Result<bool> {
        let wire: Vec<String> = keys.iter().map(|k| wire_key(k)).collect();
        self.c10d_call("check", keys.first().copied().unwrap_or(""), |c, reply| {
            c.request(|b| {
                b.u8(query::CHECK).keys(&wire);
            })?;
            match c.read_u8(reply)? {
                c10d::CHECK_READY => Ok(true),
                c10d::CHECK_NOT_READY => Ok(false),
                other => Err(C10dError::Protocol(format!(
                    "CHECK answered {other}, expected READY or NOT_READY"
                ))),
            }
        })
    }

    pub(super) fn c10d_wait(&self, keys: &[&str], timeout: Duration) -> Result<()> {
        self.c10d_wait_keys("wait", keys, timeout)
    }

    pub(super) fn c10d_multi_get(&self, keys: &[&str]) -> Result<Vec<Vec<u8>>> {
        self.c10d_wait_keys("multi_get", keys, self.timeout())?;
        let wire: Vec<String> = keys.iter().map(|k| wire_key(k)).collect();
        self.c10d_call("multi_get", keys[0], |c, reply| {
            c.request(|b| {
                b.u8(query::MULTI_GET).keys(&wire);
            })?;
            (0..keys.len()).map(|_| c.read_bytes(reply)).collect()
        })
    }

    pub(super) fn c10d_multi_set(&self, keys: &[&str], values: &[&[u8]]) -> Result<()> {
        for (k, v) in keys.iter().zip(values) {
            check_c10d_value("multi_set", k, v.len())?;
        }
        let wire: Vec<String> = keys.iter().map(|k| wire_key(k)).collect();
        // Batches that a server bounding one request (as tutti's does) accepts.
        let mut start = 0;
        while start < keys.len() {
            let mut end = start;
            let mut size = 1 + 8;
            while end < keys.len() {
                let pair = 16 + wire[end].len() + values[end].len();
                if end > start && size + pair > c10d::MAX_REQUEST {
                    break;
                }
                size += pair;
                end += 1;
            }
            self.c10d_call("multi_set", keys[start], |c, _| {
                c.request(|b| {
                    b.u8(query::MULTI_SET).i64((end - start) as i64);
                    for i in start..end {
                        b.bytes(wire[i].as_bytes()).bytes(values[i]);
                    }
                })?;
                Ok(())
            })?;
            start = end;
        }
        Ok(())
    }

    pub(super) fn c10d_append(&self, key: &str, value: &[u8]) -> Result<()> {
        check_c10d_value("append", key, value.len())?;
        let wire = wire_key(key);
        self.c10d_call("append", key, |c, _| {
            c.request(|b| {
                b.u8(query::APPEND).bytes(wire.as_bytes()).bytes(value);
            })?;
            Ok(())
        })
    }

    pub(super) fn c10d_delete_key(&self, key: &str) -> Result<bool> {
        let wire = wire_key(key);
        self.c10d_call("delete_key", key, |c, reply| {
            c.request(|b| {
                b.u8(query::DELETE_KEY).bytes(wire.as_bytes());
            })?;
            Ok(c.read_i64(reply)? == 1)
        })
    }

    pub(super) fn c10d_num_keys(&self) -> Result<u64> {
        self.c10d_call("num_keys", "", |c, reply| {
            c.request(|b| {
                b.u8(query::GETNUMKEYS);
            })?;
            let n = c.read_i64(reply)?;
            u64::try_from(n).map_err(|_| C10dError::Protocol(format!("GETNUMKEYS answered {n}")))
        })
    }
}
