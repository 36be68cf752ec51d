//! [`Functions`]: the functions a worker serves, registered by name with typed
//! arguments and results.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::Agent;
use crate::codec::{self, Arrivals, Target};
use crate::wire::ForkData;
use crate::{Error, Result, Rpc, WorkerInfo};

/// Why a function could not produce a result.
#[derive(Debug)]
pub(crate) enum HandlerError {
    /// The arguments do not decode as the function's argument type.
    BadArguments(String),
    /// The function returned an error, panicked, or its result does not encode.
    Failed(String),
}

/// A function as the agent runs it: encoded arguments in, encoded result out.
pub(crate) type RawFn =
    dyn Fn(&CallContext<'_>, &[u8]) -> std::result::Result<Vec<u8>, HandlerError> + Send + Sync;

/// What a function registered with [`Functions::register_with_context`] learns
/// about its call.
pub struct CallContext<'a> {
    pub(crate) agent: &'a Arc<Agent>,
    pub(crate) caller: usize,
    pub(crate) func: &'a str,
    pub(crate) arrivals: RefCell<Option<Arrivals>>,
    pub(crate) forks: RefCell<Vec<ForkData>>,
    pub(crate) target: Target,
}

impl CallContext<'_> {
    /// The worker that made the call.
    pub fn caller(&self) -> &WorkerInfo {
        &self.agent.workers[self.caller]
    }

    /// This worker.
    pub fn worker(&self) -> &WorkerInfo {
        &self.agent.workers[self.agent.me]
    }

    /// The name the function was called by.
    pub fn function(&self) -> &str {
        self.func
    }

    /// This worker's RPC handle, to make calls from inside the function (`None`
    /// once the agent is shut down).
    pub fn rpc(&self) -> Option<Rpc> {
        self.agent.rpc_handle()
    }

    pub(crate) fn decode_args<A: DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> std::result::Result<A, HandlerError> {
        let arrivals = self.arrivals.borrow_mut().take().unwrap_or_default();
        codec::decode::<A>(arrivals, bytes).map_err(HandlerError::BadArguments)
    }

    pub(crate) fn encode_result<R: Serialize + ?Sized>(
        &self,
        r: &R,
    ) -> std::result::Result<Vec<u8>, HandlerError> {
        let func = self.func;
        let e = codec::encode(self.agent, self.target, r, &|| {
            format!("the result of function {func:?}")
        })
        .map_err(|e| HandlerError::Failed(e.to_string()))?;
        self.forks.borrow_mut().extend(e.forks);
        Ok(e.bytes)
    }
}

/// The functions a worker serves, by name. Every worker of a job registers the
/// functions others call on it; the built-ins (see [`builtin`](crate::builtin)) are
/// always there.
///
/// ```
/// use tutti_rpc::Functions;
///
/// let mut f = Functions::new();
/// f.register("add", |(a, b): (i64, i64)| Ok::<_, String>(a + b)).unwrap();
/// assert!(f.names().any(|n| n == "add"));
/// ```
#[derive(Clone)]
pub struct Functions {
    map: BTreeMap<String, Entry>,
}

#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) f: Arc<RawFn>,
    /// Never blocks: served on the connection's reader thread, not the pool.
    pub(crate) inline: bool,
}

impl Default for Functions {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Functions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl Functions {
    /// The built-in functions only.
    pub fn new() -> Self {
        let mut f = Self {
            map: BTreeMap::new(),
        };
        crate::builtin::register(&mut f);
        f
    }

    /// Registers `f` under `name`: it takes an `A` (decoded from the caller's
    /// arguments) and returns an `R` (sent back, or kept as the RRef's value for
    /// `remote`), or an error whose message the caller receives as
    /// [`Error::Remote`]. A panic is reported the same way.
    ///
    /// Names are 1 to 256 bytes; `tutti.` is reserved for built-ins; a name can be
    /// registered once.
    pub fn register<A, R, E, F>(&mut self, name: &str, f: F) -> Result<&mut Self>
    where
        A: DeserializeOwned,
        R: Serialize,
        E: fmt::Display,
        F: Fn(A) -> std::result::Result<R, E> + Send + Sync + 'static,
    {
        self.register_with_context(name, move |_ctx: &CallContext<'_>, a: A| f(a))
    }

    /// Like [`register`](Self::register), for a function that also wants to know
    /// its caller or make calls of its own ([`CallContext`]).
    pub fn register_with_context<A, R, E, F>(&mut self, name: &str, f: F) -> Result<&mut Self>
    where
        A: DeserializeOwned,
        R: Serialize,
        E: fmt::Display,
        F: Fn(&CallContext<'_>, A) -> std::result::Result<R, E> + Send + Sync + 'static,
    {
        if name.starts_with("tutti.") {
            return Err(Error::InvalidArgument(format!(
                "function name {name:?}: the prefix \"tutti.\" is reserved for built-in functions"
            )));
        }
        let raw = move |ctx: &CallContext<'_>, bytes: &[u8]| {
            let args: A = ctx.decode_args(bytes)?;
            let r = f(ctx, args).map_err(|e| HandlerError::Failed(e.to_string()))?;
            ctx.encode_result(&r)
        };
        self.insert(name, Arc::new(raw), false)?;
        Ok(self)
    }

    pub(crate) fn insert(&mut self, name: &str, f: Arc<RawFn>, inline: bool) -> Result<()> {
        if name.is_empty() || name.len() > 256 {
            return Err(Error::InvalidArgument(format!(
                "function name {name:?} must be 1 to 256 bytes long"
            )));
        }
        if self.map.contains_key(name) {
            return Err(Error::InvalidArgument(format!(
                "a function named {name:?} is already registered"
            )));
        }
        self.map.insert(name.to_string(), Entry { f, inline });
        Ok(())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Entry> {
        self.map.get(name)
    }

    /// The registered names, built-ins included, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}
