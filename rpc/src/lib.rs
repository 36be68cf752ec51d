//! tutti's RPC layer (torch.distributed.rpc's model): named workers call
//! functions on each other by name, with typed (serde) arguments and results, get
//! results back ([`Rpc::rpc_sync`], [`Rpc::rpc_async`]) or keep them on the callee
//! as remote references ([`Rpc::remote`] -> [`RRef`]), pass those references on to
//! third workers (with reference counting), and time out.
//!
//! ```no_run
//! use tutti_rpc::{Functions, RpcOptions, init_rpc};
//!
//! # fn main() -> tutti_rpc::Result<()> {
//! let rank: usize = std::env::var("RANK").unwrap().parse().unwrap();
//! let mut functions = Functions::new();
//! functions.register("add", |(a, b): (i64, i64)| Ok::<_, String>(a + b))?;
//! // Rendezvous through the TCP store at MASTER_ADDR:MASTER_PORT (rank 0 serves it).
//! let rpc = init_rpc(&format!("worker{rank}"), rank, 2, RpcOptions::new().functions(functions))?;
//! if rank == 0 {
//!     let sum: i64 = rpc.rpc_sync("worker1", "add", &(2i64, 3i64), None)?;
//!     assert_eq!(sum, 5);
//!     let rref = rpc.remote::<_, i64>("worker1", "add", &(1i64, 1i64), None)?;
//!     assert_eq!(rref.to_here(None)?, 2);
//! }
//! rpc.shutdown(true)?; // waits for every worker's outstanding work and references
//! # Ok(())
//! # }
//! ```
//!
//! - Arguments and results are encoded with postcard (compact binary). tutti's
//!   element vectors ([`Elements`], [`ElementSlice`], or `#[serde(with =
//!   "tutti_rpc::elements")]` on a `Vec<T>`) travel as raw bytes.
//! - Built-in functions ([`builtin`]) are registered everywhere.
//! - Timeouts: per call (`Some(d)`), or the agent's default (`None`, 60 s unless
//!   [`RpcOptions::rpc_timeout`] or [`Rpc::set_rpc_timeout`] say otherwise); zero is
//!   no timeout. A timeout names the call, the destination and the time waited.
//! - A worker that dies turns the calls pending to it into [`Error::ConnectionLost`]
//!   at once (its sockets close), not at the timeout.
//! - The faulty agent ([`FaultyOptions`]) fails or delays messages by
//!   [`MessageType`], like torch's `FaultyTensorPipeAgent`; the reference-counting
//!   messages are retried, so dropping them loses and leaks nothing.
//!
//! Transport: one TCP connection per (caller, callee) pair with length-prefixed
//! frames (see the `wire` module); workers find each other through the Store.
//!
//! Waiting: a caller waiting for a reply polls for up to `TUTTI_RPC_SPIN_US`
//! microseconds (default 100, 0: never) before it blocks (waking a blocked thread
//! costs tens of microseconds on virtual machines); at most `cores - 1` threads of
//! a process spin at once.

mod agent;
pub mod builtin;
mod codec;
pub mod elements;
mod error;
mod functions;
mod future;
mod message_type;
mod options;
mod pool;
mod rref;
mod spin;
pub mod store;
mod timer;
mod wire;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use agent::DebugInfo;
pub use elements::{ElementSlice, Elements};
pub use error::{Error, Result};
pub use functions::{CallContext, Functions};
pub use future::RpcFuture;
pub use message_type::MessageType;
pub use options::{
    DEFAULT_INIT_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_NUM_FAIL_SENDS,
    DEFAULT_NUM_WORKER_THREADS, DEFAULT_RPC_TIMEOUT, FaultyOptions, RpcOptions,
};
pub use rref::RRef;
pub use spin::SPIN_ENV;
pub use worker::{WorkerInfo, WorkerRef};

use agent::Agent;

/// Starts this worker's RPC agent and rendezvouses with the others (torch's
/// `init_rpc`): `name` must be unique in the job (1 to 128 characters of
/// `[A-Za-z0-9_.:-]`), `rank` in `0..world_size`. Returns when every worker has
/// published its address in the store.
pub fn init_rpc(name: &str, rank: usize, world_size: usize, options: RpcOptions) -> Result<Rpc> {
    let agent = agent::init(name, rank, world_size, options)?;
    let shared = Arc::new(RpcShared { agent });
    shared.agent.set_rpc(Arc::downgrade(&shared));
    Ok(Rpc { shared })
}

struct RpcShared {
    agent: Arc<Agent>,
}

impl Drop for RpcShared {
    fn drop(&mut self) {
        // Dropping the last handle without shutdown stops the agent (not gracefully).
        self.agent.stop();
    }
}

/// A worker's RPC handle (cheap to clone). Dropping the last clone without
/// [`shutdown`](Self::shutdown) stops the agent as `shutdown(false)` would.
#[derive(Clone)]
pub struct Rpc {
    shared: Arc<RpcShared>,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rpc")
            .field("worker", &self.worker_info())
            .field("world_size", &self.world_size())
            .finish()
    }
}

impl Rpc {
    fn from_shared(shared: Arc<RpcShared>) -> Self {
        Self { shared }
    }

    fn agent(&self) -> &Arc<Agent> {
        &self.shared.agent
    }

    /// This worker.
    pub fn worker_info(&self) -> &WorkerInfo {
        &self.agent().workers[self.agent().me]
    }

    /// A worker, by name or rank (torch's `get_worker_info`).
    pub fn get_worker_info<'a>(&self, worker: impl Into<WorkerRef<'a>>) -> Result<WorkerInfo> {
        let r = self.agent().resolve(worker.into())?;
        Ok(self.agent().workers[r].clone())
    }

    /// Every worker, by rank.
    pub fn worker_infos(&self) -> &[WorkerInfo] {
        &self.agent().workers
    }

    /// The number of workers.
    pub fn world_size(&self) -> usize {
        self.agent().workers.len()
    }

    /// The address (`host:port`) other workers reach this worker's RPC listener at.
    pub fn address(&self) -> &str {
        self.agent().address(self.agent().me)
    }

    /// Calls `func` on `to` and waits for its result (torch's `rpc_sync`).
    /// `timeout`: `None` for the agent's default, zero for none.
    pub fn rpc_sync<'a, A, R>(
        &self,
        to: impl Into<WorkerRef<'a>>,
        func: &str,
        args: &A,
        timeout: Option<Duration>,
    ) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned + Send + 'static,
    {
        self.rpc_async(to, func, args, timeout)?.wait()
    }

    /// Calls `func` on `to` and returns at once (torch's `rpc_async`). Fails now
    /// for an unknown worker, a stopped agent, or arguments that cannot be encoded
    /// (an RRef whose creation failed, for one); everything else arrives through
    /// the future.
    pub fn rpc_async<'a, A, R>(
        &self,
        to: impl Into<WorkerRef<'a>>,
        func: &str,
        args: &A,
        timeout: Option<Duration>,
    ) -> Result<RpcFuture<R>>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned + Send + 'static,
    {
        let to = self.agent().resolve(to.into())?;
        self.agent().call_async(to, func, args, timeout)
    }

    /// Runs `func` on `to` and keeps its result there (torch's `remote`); the
    /// returned [`RRef`] refers to it. Failures of the call show when the RRef is
    /// used ([`Error::RRefCreationFailed`]) or through
    /// [`RRef::wait_created`].
    pub fn remote<'a, A, T>(
        &self,
        to: impl Into<WorkerRef<'a>>,
        func: &str,
        args: &A,
        timeout: Option<Duration>,
    ) -> Result<RRef<T>>
    where
        A: Serialize + ?Sized,
    {
        let to = self.agent().resolve(to.into())?;
        self.agent().remote(to, func, args, timeout)
    }

    /// The default timeout of calls (zero: none).
    pub fn rpc_timeout(&self) -> Duration {
        self.agent().default_timeout()
    }

    /// Changes the default timeout of calls made from now on (zero: none).
    pub fn set_rpc_timeout(&self, timeout: Duration) {
        self.agent().set_default_timeout(timeout);
    }

    /// The size of this worker's pool for incoming calls.
    pub fn num_worker_threads(&self) -> usize {
        self.agent().num_worker_threads
    }

    /// The faulty agent's options, if this agent injects faults.
    pub fn faulty_options(&self) -> Option<&FaultyOptions> {
        self.agent().faulty_options()
    }

    /// What this agent holds now (RRefs, forks, pending calls, ...).
    pub fn debug_info(&self) -> DebugInfo {
        self.agent().debug_info()
    }

    /// Shuts this worker's agent down. Graceful (`true`): releases this worker's
    /// RRefs, waits until every worker has finished the calls it owes others and
    /// every reference everywhere is released, then closes (every worker must call
    /// it; calls that arrive meanwhile are served). Not graceful: closes now;
    /// pending calls fail with [`Error::ShutDown`]. Either way the agent is stopped
    /// afterwards; a graceful shutdown that fails (a worker died, the timeout
    /// passed) says why.
    pub fn shutdown(&self, graceful: bool) -> Result<()> {
        let agent = self.agent();
        let r = if graceful { agent.drain() } else { Ok(()) };
        agent.stop();
        r
    }
}
