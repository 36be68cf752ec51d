//! [`RpcOptions`] and the faulty agent's [`FaultyOptions`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;
use crate::{Error, Functions, MessageType, Result};

/// The default timeout of a call: 60 s (torch's `DEFAULT_RPC_TIMEOUT_SEC`).
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(60);

/// The default size of a worker's pool of threads that run incoming calls (torch's
/// `DEFAULT_NUM_WORKER_THREADS`).
pub const DEFAULT_NUM_WORKER_THREADS: usize = 16;

/// The default number of failing sends per message type of the faulty agent.
pub const DEFAULT_NUM_FAIL_SENDS: u32 = 3;

/// The default limit on one message's size: 2 GiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 2 << 30;

/// The default timeout of the rendezvous at `init_rpc` (torch's store default).
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(300);

/// Options of [`init_rpc`](crate::init_rpc).
///
/// ```
/// use std::time::Duration;
/// use tutti_rpc::{FaultyOptions, RpcOptions};
///
/// let opts = RpcOptions::new()
///     .num_worker_threads(4)
///     .rpc_timeout(Duration::from_secs(10))
///     .faulty(FaultyOptions::new().messages_to_fail(["PYTHON_REMOTE_CALL"]).unwrap());
/// assert_eq!(opts.num_worker_threads, 4);
/// ```
#[derive(Clone)]
#[must_use]
pub struct RpcOptions {
    /// Threads that run incoming calls; calls from many callers run concurrently up
    /// to this many. Default: [`DEFAULT_NUM_WORKER_THREADS`] (16).
    pub num_worker_threads: usize,
    /// The default timeout of calls, `remote` and `to_here` (zero: none). Default:
    /// [`DEFAULT_RPC_TIMEOUT`] (60 s). Changed later with `Rpc::set_rpc_timeout`.
    pub rpc_timeout: Duration,
    /// The store to rendezvous through. Default: a `TcpStore` at
    /// `MASTER_ADDR:MASTER_PORT` whose server runs in rank 0 (torch's `env://`), or
    /// the one `init_method` names.
    pub store: Option<Arc<dyn Store>>,
    /// Where the default store is: `env://` (default), `tcp://host:port` or
    /// `file:///path`.
    pub init_method: Option<String>,
    /// The functions this worker serves (the built-ins are always there).
    pub functions: Functions,
    /// The faulty agent's options; `None` (default) injects no faults.
    pub faulty: Option<FaultyOptions>,
    /// The address other workers reach this one at. Default: the address of the
    /// interface that routes to `MASTER_ADDR` (loopback when that is local), else
    /// `127.0.0.1`.
    pub host: Option<String>,
    /// The address the listening socket binds. Default: all interfaces.
    pub bind_addr: Option<IpAddr>,
    /// The largest message accepted, in bytes. Default: 2 GiB.
    pub max_message_size: usize,
    /// The timeout of the rendezvous at `init_rpc`. Default: 300 s.
    pub init_timeout: Duration,
    /// The timeout of a graceful shutdown (zero: none). Default: 60 s.
    pub shutdown_timeout: Duration,
}

impl Default for RpcOptions {
    fn default() -> Self {
        Self {
            num_worker_threads: DEFAULT_NUM_WORKER_THREADS,
            rpc_timeout: DEFAULT_RPC_TIMEOUT,
            store: None,
            init_method: None,
            functions: Functions::new(),
            faulty: None,
            host: None,
            bind_addr: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            init_timeout: DEFAULT_INIT_TIMEOUT,
            shutdown_timeout: DEFAULT_RPC_TIMEOUT,
        }
    }
}

impl fmt::Debug for RpcOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcOptions")
            .field("num_worker_threads", &self.num_worker_threads)
            .field("rpc_timeout", &self.rpc_timeout)
            .field("store", &self.store.as_ref().map(|_| "<store>"))
            .field("init_method", &self.init_method)
            .field("functions", &self.functions)
            .field("faulty", &self.faulty)
            .field("host", &self.host)
            .field("bind_addr", &self.bind_addr)
            .field("max_message_size", &self.max_message_size)
            .field("init_timeout", &self.init_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

impl RpcOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`num_worker_threads`](Self::num_worker_threads).
    pub fn num_worker_threads(mut self, n: usize) -> Self {
        self.num_worker_threads = n;
        self
    }

    /// Sets [`rpc_timeout`](Self::rpc_timeout).
    pub fn rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = timeout;
        self
    }

    /// Sets [`store`](Self::store).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Sets [`init_method`](Self::init_method).
    pub fn init_method(mut self, method: impl Into<String>) -> Self {
        self.init_method = Some(method.into());
        self
    }

    /// Sets [`functions`](Self::functions).
    pub fn functions(mut self, functions: Functions) -> Self {
        self.functions = functions;
        self
    }

    /// Sets [`faulty`](Self::faulty).
    pub fn faulty(mut self, faulty: FaultyOptions) -> Self {
        self.faulty = Some(faulty);
        self
    }

    /// Sets [`host`](Self::host).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Sets [`bind_addr`](Self::bind_addr).
    pub fn bind_addr(mut self, addr: IpAddr) -> Self {
        self.bind_addr = Some(addr);
        self
    }

    /// Sets [`max_message_size`](Self::max_message_size).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`init_timeout`](Self::init_timeout).
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// Sets [`shutdown_timeout`](Self::shutdown_timeout).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.num_worker_threads == 0 {
            return Err(Error::InvalidArgument(
                "num_worker_threads must be at least 1 (got 0)".into(),
            ));
        }
        if self.max_message_size < 1024 {
            return Err(Error::InvalidArgument(format!(
                "max_message_size must be at least 1024 bytes (got {})",
                self.max_message_size
            )));
        }
        Ok(())
    }
}

/// Options of the faulty agent (torch's `FaultyTensorPipeRpcBackendOptions`): the
/// first [`num_fail_sends`](Self::num_fail_sends) sends of each type in
/// [`messages_to_fail`](Self::messages_to_fail) fail, and every send of a type in
/// [`messages_to_delay`](Self::messages_to_delay) waits that long before it goes out
/// (the caller does not wait; the call's timeout counts from the call).
///
/// The defaults are those of torch's faulty-agent test fixture: the four retried
/// message types fail (`rref_fork_request`, `rref_child_accept`, `rref_user_delete`,
/// `cleanup`; torch's `RREF_FORK_REQUEST`, `RREF_CHILD_ACCEPT`, `RREF_USER_DELETE`,
/// `CLEANUP_AUTOGRAD_CONTEXT_REQ`), 3 times each, and calls are delayed by 1.5 s
/// (torch's `SCRIPT_CALL` and `PYTHON_CALL`, which are both tutti's `call`).
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct FaultyOptions {
    /// The message types whose first `num_fail_sends` sends fail.
    pub messages_to_fail: Vec<MessageType>,
    /// How many sends of each type in `messages_to_fail` fail. Default: 3.
    pub num_fail_sends: u32,
    /// The message types that are delayed, and by how long.
    pub messages_to_delay: BTreeMap<MessageType, Duration>,
}

impl Default for FaultyOptions {
    fn default() -> Self {
        Self {
            messages_to_fail: vec![
                MessageType::RRefForkRequest,
                MessageType::RRefChildAccept,
                MessageType::RRefUserDelete,
                MessageType::Cleanup,
            ],
            num_fail_sends: DEFAULT_NUM_FAIL_SENDS,
            messages_to_delay: BTreeMap::from([(MessageType::Call, Duration::from_millis(1500))]),
        }
    }
}

impl FaultyOptions {
    /// The defaults (see the type's documentation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the list of failing message types, given by name (tutti's or
    /// torch's); an empty list fails nothing. Unknown names are an error.
    pub fn messages_to_fail<I, S>(mut self, names: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut types = Vec::new();
        for name in names {
            let t: MessageType = name.as_ref().parse()?;
            if !types.contains(&t) {
                types.push(t);
            }
        }
        self.messages_to_fail = types;
        Ok(self)
    }

    /// Replaces the delayed message types, given as (name, seconds); an empty map
    /// delays nothing. Unknown names, and negative or non-finite delays, are errors.
    pub fn messages_to_delay<I, S>(mut self, delays: I) -> Result<Self>
    where
        I: IntoIterator<Item = (S, f64)>,
        S: AsRef<str>,
    {
        let mut map = BTreeMap::new();
        for (name, secs) in delays {
            let t: MessageType = name.as_ref().parse()?;
            if !secs.is_finite() || secs < 0.0 {
                return Err(Error::InvalidArgument(format!(
                    "messages_to_delay: the delay of {} must be a finite number of seconds >= 0 (got {secs})",
                    name.as_ref()
                )));
            }
            map.insert(t, Duration::from_secs_f64(secs));
        }
        self.messages_to_delay = map;
        Ok(self)
    }

    /// Sets [`num_fail_sends`](Self::num_fail_sends).
    pub fn num_fail_sends(mut self, n: u32) -> Self {
        self.num_fail_sends = n;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_torch() {
        let o = RpcOptions::new();
        assert_eq!(o.num_worker_threads, 16);
        assert_eq!(o.rpc_timeout, Duration::from_secs(60));
        assert!(o.faulty.is_none());
        let f = FaultyOptions::new();
        assert_eq!(f.num_fail_sends, 3);
        assert_eq!(
            f.messages_to_fail,
            [
                MessageType::RRefForkRequest,
                MessageType::RRefChildAccept,
                MessageType::RRefUserDelete,
                MessageType::Cleanup
            ]
        );
        assert_eq!(
            f.messages_to_delay,
            BTreeMap::from([(MessageType::Call, Duration::from_millis(1500))])
        );
    }

    #[test]
    fn custom_and_empty_lists() {
        let f = FaultyOptions::new()
            .messages_to_fail([
                "RREF_FORK_REQUEST",
                "rref_child_accept",
                "RREF_FORK_REQUEST",
            ])
            .unwrap();
        assert_eq!(
            f.messages_to_fail,
            [MessageType::RRefForkRequest, MessageType::RRefChildAccept]
        );
        let f = f.messages_to_fail(Vec::<String>::new()).unwrap();
        assert!(f.messages_to_fail.is_empty());
        let f = f.messages_to_delay([("SCRIPT_CALL", 1.5)]).unwrap();
        assert_eq!(
            f.messages_to_delay,
            BTreeMap::from([(MessageType::Call, Duration::from_millis(1500))])
        );
        let f = f.messages_to_delay(Vec::<(&str, f64)>::new()).unwrap();
        assert!(f.messages_to_delay.is_empty());
    }

    #[test]
    fn bad_names_and_delays_are_errors() {
        let e = FaultyOptions::new()
            .messages_to_fail(["RREF_FORK_REQUEST", "NOPE"])
            .unwrap_err();
        assert!(
            matches!(&e, Error::UnknownMessageType { name } if name == "NOPE"),
            "{e}"
        );
        let e = FaultyOptions::new()
            .messages_to_delay([("bogus", 1.0)])
            .unwrap_err();
        assert!(
            matches!(&e, Error::UnknownMessageType { name } if name == "bogus"),
            "{e}"
        );
        let e = FaultyOptions::new()
            .messages_to_delay([("call", -1.0)])
            .unwrap_err();
        assert!(e.to_string().contains("delay of call"), "{e}");
        let e = RpcOptions::new()
            .num_worker_threads(0)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("num_worker_threads"), "{e}");
    }
}
