//! The TCP store: [`TcpStore`] (a client, which on the master rank also starts the
//! server) and [`TcpStoreServer`].
//!
//! Keys: [`TcpStore`] sends every key `k` as `/k`, exactly as c10d's `TCPStore`
//! client does, in both protocols, so a Rust client and a torch.distributed client
//! of one server (tutti's or torch's) reach the same keys.

mod auth;
mod c10d;
mod c10d_client;
mod c10d_ops;
mod client;
mod fdlimit;
mod protocol;
mod server;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub use fdlimit::raise_fd_limit;
pub use server::{C10dAccess, TcpStoreServer};

use self::auth::resolve_token;
use self::c10d_client::C10dConnection;
use self::client::{Connection, ReadError};
use self::protocol::{
    ErrorKind, MAX_FRAME, Request, Response, frame_size, parse_response, timeout_to_ms,
};
use super::util::{
    TimeoutCell, check_key, check_keys, check_multi_set, check_value, timeout_error,
    truncate_for_message,
};
use super::{DEFAULT_TIMEOUT, Store};
use crate::{Result, StoreError};

/// The key every client adds 1 to when a world size is given, so the master can wait
/// for all of them (c10d's TCPStore does the same with its `init/` key).
const INIT_KEY: &str = "tutti/store/init";

/// Extra time a client waits for the server's reply beyond a wait's own timeout
/// (the server answers `TimedOut` itself at the deadline).
const REPLY_GRACE: Duration = Duration::from_secs(30);

/// The environment variable [`TcpStore::builder`] reads the default
/// [`StoreProtocol`] from (`tutti` or `c10d`).
pub const PROTOCOL_ENV: &str = "TUTTI_STORE_PROTOCOL";

/// The wire protocol a [`TcpStore`] client speaks to its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreProtocol {
    /// tutti's protocol: authenticated by the job token (a [`TcpStoreServer`]).
    #[default]
    Tutti,
    /// c10d's TCPStore protocol: to a torch.distributed `TCPStore` server (or a
    /// [`TcpStoreServer`] that accepts c10d clients). No token.
    C10d,
}

impl std::str::FromStr for StoreProtocol {
    type Err = StoreError;

    /// `tutti` or `c10d` (also `torch`).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tutti" => Ok(StoreProtocol::Tutti),
            "c10d" | "torch" => Ok(StoreProtocol::C10d),
            _ => Err(StoreError::InvalidArgument(format!(
                "store protocol {s:?} is not one of tutti, c10d"
            ))),
        }
    }
}

/// Whether this process is a worker of torchrun, whose agent store (at
/// `MASTER_ADDR:MASTER_PORT`) is a torch `TCPStore`: `TORCHELASTIC_USE_AGENT_STORE`
/// is true and no tutti job token is set (`tutti run` sets one for its workers).
fn under_torchrun() -> bool {
    let agent = std::env::var("TORCHELASTIC_USE_AGENT_STORE")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let token = std::env::var(crate::JOB_TOKEN_ENV).is_ok_and(|t| !t.is_empty());
    agent && !token
}

/// The key `key` as sent on the wire.
fn wire_key(key: &str) -> String {
    let mut k = String::with_capacity(key.len() + 1);
    k.push('/');
    k.push_str(key);
    k
}

/// A key reported by the server, as the caller named it.
fn user_key(key: &str) -> &str {
    key.strip_prefix('/').unwrap_or(key)
}

/// A client of a [`TcpStoreServer`]: the default store of a job.
///
/// Build one with [`TcpStore::builder`]. On the master (rank 0, or the launcher) the
/// builder also starts the server in this process, which then lives as long as this
/// store. All calls of one `TcpStore` share one connection (a call waits for the
/// previous one to finish); use [`try_clone`](Self::try_clone) for a second connection.
/// An I/O or protocol error breaks the connection for good: later calls fail at once.
#[derive(Debug)]
pub struct TcpStore {
    conn: Mutex<ConnState>,
    host: String,
    port: u16,
    token: Vec<u8>,
    timeout: TimeoutCell,
    server: Option<Arc<TcpStoreServer>>,
    protocol: StoreProtocol,
}

#[derive(Debug)]
enum ConnState {
    Ready(Connection),
    C10d(C10dConnection),
    Broken(String),
}

/// Options of a [`TcpStore`]; see [`TcpStore::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TcpStoreBuilder {
    host: String,
    port: u16,
    is_master: bool,
    world_size: Option<usize>,
    wait_for_workers: bool,
    timeout: Duration,
    token: Option<String>,
    bind_addr: IpAddr,
    protocol: Option<StoreProtocol>,
    c10d_access: C10dAccess,
}

impl TcpStoreBuilder {
    /// Whether this process starts the server (c10d's `is_master`). Default: false.
    pub fn master(mut self, is_master: bool) -> Self {
        self.is_master = is_master;
        self
    }

    /// The number of clients of the job, the master's own included. With it, every
    /// client checks in under the key `tutti/store/init` and the master's `connect`
    /// waits for all of them (see [`wait_for_workers`](Self::wait_for_workers)).
    pub fn world_size(mut self, world_size: usize) -> Self {
        self.world_size = Some(world_size);
        self
    }

    /// Whether the master's `connect` waits for `world_size` clients. Default: true.
    pub fn wait_for_workers(mut self, wait: bool) -> Self {
        self.wait_for_workers = wait;
        self
    }

    /// The timeout of connecting (clients retry until it expires), of waiting for
    /// workers, and the store's default timeout. Default: [`DEFAULT_TIMEOUT`]; zero
    /// waits forever.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The job token to present (and, on the master, to require). Default: the value
    /// of `TUTTI_JOB_TOKEN`, or empty.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The address the master's server listens on. Default: `0.0.0.0` (all IPv4
    /// interfaces, as c10d; the token keeps strangers out).
    pub fn bind_addr(mut self, addr: IpAddr) -> Self {
        self.bind_addr = addr;
        self
    }

    /// The protocol to speak to the server. Default: the value of
    /// `TUTTI_STORE_PROTOCOL` (`tutti` or `c10d`); else c10d's in a worker of torchrun
    /// (`TORCHELASTIC_USE_AGENT_STORE=True` without `TUTTI_JOB_TOKEN`, which `tutti
    /// run` always sets: the agent store is a torch `TCPStore`); else tutti's. Use
    /// [`StoreProtocol::C10d`] to reach a torch.distributed `TCPStore` server. The
    /// master always speaks tutti's to its own server.
    pub fn protocol(mut self, protocol: StoreProtocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// On the master: which c10d (torch.distributed) clients its server accepts
    /// (see [`C10dAccess`]). Default: none.
    pub fn c10d_access(mut self, access: C10dAccess) -> Self {
        self.c10d_access = access;
        self
    }

    /// Starts the server if this is the master, connects (retrying with backoff until
    /// the timeout), and on the master waits for the workers if asked to.
    pub fn connect(self) -> Result<TcpStore> {
        let protocol = match self.protocol {
            Some(p) => p,
            None => match std::env::var(PROTOCOL_ENV) {
                Ok(v) if !v.trim().is_empty() => v.parse().map_err(|_| {
                    StoreError::InvalidArgument(format!(
                        "environment variable {PROTOCOL_ENV}={v:?} is not one of tutti, c10d"
                    ))
                })?,
                _ if under_torchrun() => StoreProtocol::C10d,
                _ => StoreProtocol::Tutti,
            },
        };
        let protocol = if self.is_master {
            StoreProtocol::Tutti
        } else {
            protocol
        };
        if protocol == StoreProtocol::C10d {
            return self.connect_c10d();
        }
        let token = resolve_token(self.token.as_deref())?;
        let token_str = String::from_utf8_lossy(&token).into_owned();
        let (server, host, port) = if self.is_master {
            let server = TcpStoreServer::bind_with_c10d(
                (self.bind_addr, self.port),
                Some(&token_str),
                self.c10d_access,
            )?;
            let ip = match server.local_addr().ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            let port = server.port();
            (Some(Arc::new(server)), ip.to_string(), port)
        } else {
            (None, self.host.clone(), self.port)
        };
        let conn = Connection::connect(&host, port, &token, self.timeout)?;
        let store = TcpStore {
            conn: Mutex::new(ConnState::Ready(conn)),
            host,
            port,
            token,
            timeout: TimeoutCell::new(self.timeout),
            server,
            protocol,
        };
        if let Some(world_size) = self.world_size {
            store.add(INIT_KEY, 1)?;
            if self.is_master && self.wait_for_workers {
                store.wait_for_workers(world_size, self.timeout)?;
            }
        }
        Ok(store)
    }
}

impl TcpStore {
    /// Options for a store whose server is at `host:port` (on the master: the port to
    /// listen on, 0 for any free one).
    pub fn builder(host: impl Into<String>, port: u16) -> TcpStoreBuilder {
        TcpStoreBuilder {
            host: host.into(),
            port,
            is_master: false,
            world_size: None,
            wait_for_workers: true,
            timeout: DEFAULT_TIMEOUT,
            token: None,
            bind_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            protocol: None,
            c10d_access: C10dAccess::Deny,
        }
    }

    /// Connects to the server at `host:port` with the default options.
    pub fn connect(host: impl Into<String>, port: u16) -> Result<Self> {
        Self::builder(host, port).connect()
    }

    /// The host this client connected to (on the master: the loopback address).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server's port (on the master, the one actually bound when 0 was asked).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server this store started, on the master.
    pub fn server(&self) -> Option<&TcpStoreServer> {
        self.server.as_deref()
    }

    /// The protocol this client speaks.
    pub fn protocol(&self) -> StoreProtocol {
        self.protocol
    }

    /// A second client of the same server with its own connection (sharing the
    /// master's server, which then lives until both are dropped).
    pub fn try_clone(&self) -> Result<Self> {
        let conn = match self.protocol {
            StoreProtocol::Tutti => ConnState::Ready(Connection::connect(
                &self.host,
                self.port,
                &self.token,
                self.timeout(),
            )?),
            StoreProtocol::C10d => ConnState::C10d(C10dConnection::connect(
                &self.host,
                self.port,
                self.timeout(),
            )?),
        };
        Ok(Self {
            conn: Mutex::new(conn),
            host: self.host.clone(),
            port: self.port,
            token: self.token.clone(),
            timeout: TimeoutCell::new(self.timeout()),
            server: self.server.clone(),
            protocol: self.protocol,
        })
    }

    fn wait_for_workers(&self, world_size: usize, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let joined = self.add(INIT_KEY, 0)?;
            if usize::try_from(joined).is_ok_and(|j| j >= world_size) {
                return Ok(());
            }
            if !timeout.is_zero() && start.elapsed() >= timeout {
                return Err(StoreError::Request {
                    op: "wait_for_workers",
                    key: INIT_KEY.into(),
                    message: format!(
                        "timed out after {:?}: {joined} of {world_size} clients joined",
                        start.elapsed()
                    ),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// `add` in tutti's protocol on the wire key `wire`.
    fn tutti_add(&self, wire: &str, key: &str, delta: i64) -> Result<i64> {
        let mut out = 0;
        self.exchange(
            "add",
            key,
            &Request::Add { key: wire, delta },
            None,
            1,
            |resp| match resp {
                Response::Integer(v) => {
                    out = v;
                    Ok(())
                }
                other => Err(self.unexpected("add", &other)),
            },
        )?;
        Ok(out)
    }

    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `req` and hands each reply to `on_reply` (up to `replies` of them, fewer
    /// if one is not a `Value`: that is how `TimedOut`/`Error` end a multi_get). `wait`
    /// is the request's own timeout for waiting requests.
    fn exchange(
        &self,
        op: &'static str,
        key: &str,
        req: &Request<'_>,
        wait: Option<Duration>,
        replies: usize,
        mut on_reply: impl FnMut(Response<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut state = self.lock();
        let conn = match &mut *state {
            ConnState::Ready(conn) => conn,
            ConnState::C10d(_) => {
                return Err(StoreError::InvalidArgument(format!(
                    "store {op}: a c10d connection cannot carry tutti's protocol"
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
        let reply_timeout = match wait {
            Some(w) if w.is_zero() => None,
            Some(w) => Some(w.saturating_add(REPLY_GRACE)),
            None => Some(self.timeout()).filter(|t| !t.is_zero()),
        };
        let peer = conn.peer().to_string();
        let context = || format!("store {op} {:?} with {peer}", truncate_for_message(key));
        let outcome = (|| -> Result<()> {
            conn.send(req).map_err(|e| StoreError::Io {
                context: context(),
                source: e,
            })?;
            for _ in 0..replies {
                let body = conn.read_reply(reply_timeout).map_err(|e| match e {
                    ReadError::Io(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        StoreError::Io {
                            context: format!("{}: no reply within {reply_timeout:?}", context()),
                            source: e,
                        }
                    }
                    ReadError::Io(e) => StoreError::Io {
                        context: context(),
                        source: e,
                    },
                    ReadError::Protocol(m) => StoreError::Protocol {
                        peer: peer.clone(),
                        message: m,
                    },
                })?;
                let resp = parse_response(body).map_err(|e| StoreError::Protocol {
                    peer: peer.clone(),
                    message: e.0,
                })?;
                let more = matches!(resp, Response::Value(_));
                match resp {
                    Response::Error {
                        kind: ErrorKind::Request,
                        message,
                    } => {
                        return Err(StoreError::Request {
                            op,
                            key: key.to_string(),
                            message: message.to_string(),
                        });
                    }
                    Response::Error { message, .. } => {
                        return Err(StoreError::Protocol {
                            peer: peer.clone(),
                            message: format!("the server refused {op}: {message}"),
                        });
                    }
                    resp => on_reply(resp)?,
                }
                if !more {
                    break;
                }
            }
            Ok(())
        })();
        if let Err(e) = &outcome
            && matches!(e, StoreError::Io { .. } | StoreError::Protocol { .. })
        {
            tracing::warn!(peer = %peer, "store client: connection broken: {e}");
            *state = ConnState::Broken(e.to_string());
        }
        outcome
    }

    fn unexpected(&self, op: &str, resp: &Response<'_>) -> StoreError {
        StoreError::Protocol {
            peer: format!("{}:{}", self.host, self.port),
            message: format!("unexpected reply to {op}: {resp:?}"),
        }
    }

    /// Sends a request answered by `Ok`.
    fn expect_ok(&self, op: &'static str, key: &str, req: &Request<'_>) -> Result<()> {
        self.exchange(op, key, req, None, 1, |resp| match resp {
            Response::Ok => Ok(()),
            other => Err(self.unexpected(op, &other)),
        })
    }

    fn wait_timed(&self, keys: &[&str], timeout: Duration) -> Result<()> {
        check_keys("wait", keys)?;
        check_frame("wait", frame_size(8, keys.iter().map(|k| k.len() + 1)))?;
        let start = Instant::now();
        let wire: Vec<String> = keys.iter().map(|k| wire_key(k)).collect();
        let req = Request::Wait {
            keys: wire.iter().map(String::as_str).collect(),
            timeout_ms: timeout_to_ms(timeout),
        };
        self.exchange(
            "wait",
            keys.first().copied().unwrap_or(""),
            &req,
            Some(timeout),
            1,
            |resp| match resp {
                Response::Ok => Ok(()),
                Response::TimedOut { missing } => Err(timed_out(keys, &missing, start)),
                other => Err(self.unexpected("wait", &other)),
            },
        )
    }
}

/// The timeout error for `keys`, of which the server reported `missing` (wire keys).
fn timed_out(keys: &[&str], missing: &[&str], start: Instant) -> StoreError {
    let missing: Vec<&str> = missing.iter().map(|k| user_key(k)).collect();
    timeout_error(keys, &missing, start.elapsed())
}

fn check_frame(op: &'static str, size: usize) -> Result<()> {
    if size > MAX_FRAME {
        return Err(StoreError::InvalidArgument(format!(
            "store {op}: the request needs {size} bytes, over the frame limit of {MAX_FRAME} bytes; split it"
        )));
    }
    Ok(())
}

impl Store for TcpStore {
    fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        check_key("set", key)?;
        check_value("set", key, value.len())?;
        if self.protocol == StoreProtocol::C10d {
            return self.c10d_set(key, value);
        }
        let wire = wire_key(key);
        self.expect_ok("set", key, &Request::Set { key: &wire, value })
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        check_key("get", key)?;
        if self.protocol == StoreProtocol::C10d {
            return self.c10d_get(key);
        }
        let timeout = self.timeout();
        let start = Instant::now();
        let mut out = Vec::new();
        let wire = wire_key(key);
        let req = Request::Get {
            key: &wire,
            timeout_ms: timeout_to_ms(timeout),
        };
        self.exchange("get", key, &req, Some(timeout), 1, |resp| match resp {
            Response::Value(v) => {
                out = v.to_vec();
                Ok(())
            }
            Response::TimedOut { missing } => Err(timed_out(&[key], &missing, start)),
            other => Err(self.unexpected("get", &other)),
        })?;
        Ok(out)
    }

    fn add(&self, key: &str, delta: i64) -> Result<i64> {
        check_key("add", key)?;
        if self.protocol == StoreProtocol::C10d {
            return self.c10d_add(&wire_key(key), key, delta);
        }
        self.tutti_add(&wire_key(key), key, delta)
    }

    fn compare_set(&self, key: &str, expected: &[u8], desired: &[u8]) -> Result<Vec<u8>> {
        check_key("compare_set", key)?;
        check_value("compare_set", key, expected.len())?;
        check_value("compare_set", key, desired.len())?;
        if self.protocol == StoreProtocol::C10d {
            return self.c10d_compare_set(key, expected, desired);
        }
        let mut out = Vec::new();
        let wire = wire_key(key);
        let req = Request::CompareSet {
            key: &wire,
            expected,
            desired,
        };
        self.exchange("compare_set", key, &req, None, 1, |resp| match resp {
            Response::Value(v) => {
                out = v.to_vec();
                Ok(())
            }
            other => Err(self.unexpected("compare_set", &other)),
        })?;
        Ok(out)
    }

    fn check(&self, keys: &[&str]) -> Result<bool> {
        check_keys("check", keys)?;
        if self.protocol == StoreProtocol::C10d {
            return self.c10d_check(keys);
        }
        check_frame("check", frame_size(0, keys.iter().map(|k| k.len() + 1)))?;
        let mut out = false;
        let wire: Vec<String> = keys.iter().map(|k| wire_key(k)).collect();
        let req = Request::Check {
            keys: wire.iter().map(String::as_str).collect(),
        };
        self.exchange(
            "check",
            keys.first().copied().unwrap_or(""),
            &req,
            None,
            1,
            |resp| match resp {
                Response::Bool(b) => {
                    out = b;
                    Ok(())
                }
                other => Err(self.unexpected("check", &other)),
            },
        )?;
        Ok(out)
    }

    fn wait(&self, keys: &[&str], timeout: Option<Duration>) -> Result<()> {
        let timeout = timeout.unwrap_or_else(|| self.timeout());
        if self.protocol == StoreProtocol::C10d {
            check_keys("wait", keys)?;
            return self.c10d_wait(keys, timeout);
        }
        self.wait_timed(keys, timeout)
    }

    fn multi_get(&self, keys: &[&str]) -> Result<Vec<Vec<u8>>> {
        check_keys("multi_get", keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if self.protocol == StoreProtocol::C10d {
            return self.c10d_multi_get(keys);
        }
        check_frame("multi_get", frame_size(8, keys.iter().map(|k| k.len() + 1)))?;
        let timeout = self.timeout();
        let start = Instant::now();
        let mut out = Vec::with_capacity(keys.len());
        let wire: Vec<String> = keys.iter().map(|k| wire_key(k)).collect();
        let req = Request::MultiGet {
            keys: wire.iter().map(String::as_str).collect(),
            timeout_ms: timeout_to_ms(timeout),
        };
        self.exchange(
            "multi_get",
            keys[0],
            &req,
            Some(timeout),
            keys.len(),
            |resp| match resp {
                Response::Value(v) => {
                    out.push(v.to_vec());
                    Ok(())
                }
                Response::TimedOut { missing } => Err(timed_out(keys, &missing, start)),
                other => Err(self.unexpected("multi_get", &other)),
            },
        )?;
        Ok(out)
    }

    fn multi_set(&self, keys: &[&str], values: &[&[u8]]) -> Result<()> {
        check_multi_set(keys, values)?;
        if self.protocol == StoreProtocol::C10d {
            return self.c10d_multi_set(keys, values);
        }
        let wire: Vec<String> = keys.iter().map(|k| wire_key(k)).collect();
        // Pack the pairs into as few frames as the frame limit allows.
        let mut batch: Vec<(&str, &[u8])> = Vec::new();
        let mut size = frame_size(4, []);
        for (k, v) in wire.iter().zip(values) {
            let pair = 8 + k.len() + v.len();
            if !batch.is_empty() && size + pair > MAX_FRAME {
                let pairs = std::mem::take(&mut batch);
                let first = user_key(pairs[0].0).to_string();
                self.expect_ok("multi_set", &first, &Request::MultiSet { pairs })?;
                size = frame_size(4, []);
            }
            batch.push((k, v));
            size += pair;
        }
        if batch.is_empty() {
            return Ok(());
        }
        let first = user_key(batch[0].0).to_string();
        self.expect_ok("multi_set", &first, &Request::MultiSet { pairs: batch })
    }

    fn append(&self, key: &str, value: &[u8]) -> Result<()> {
        check_key("append", key)?;
        check_value("append", key, value.len())?;
        if self.protocol == StoreProtocol::C10d {
            return self.c10d_append(key, value);
        }
        let wire = wire_key(key);
        self.expect_ok("append", key, &Request::Append { key: &wire, value })
    }

    fn delete_key(&self, key: &str) -> Result<bool> {
        check_key("delete_key", key)?;
        if self.protocol == StoreProtocol::C10d {
            return self.c10d_delete_key(key);
        }
        let mut out = false;
        let wire = wire_key(key);
        self.exchange(
            "delete_key",
            key,
            &Request::DeleteKey { key: &wire },
            None,
            1,
            |resp| match resp {
                Response::Bool(b) => {
                    out = b;
                    Ok(())
                }
                other => Err(self.unexpected("delete_key", &other)),
            },
        )?;
        Ok(out)
    }

    fn num_keys(&self) -> Result<u64> {
        if self.protocol == StoreProtocol::C10d {
            return self.c10d_num_keys();
        }
        let mut out = 0;
        self.exchange(
            "num_keys",
            "",
            &Request::NumKeys,
            None,
            1,
            |resp| match resp {
                Response::Count(n) => {
                    out = n;
                    Ok(())
                }
                other => Err(self.unexpected("num_keys", &other)),
            },
        )?;
        Ok(out)
    }

    fn timeout(&self) -> Duration {
        self.timeout.get()
    }

    fn set_timeout(&self, timeout: Duration) {
        self.timeout.set(timeout);
    }
}
