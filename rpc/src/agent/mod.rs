//! The RPC agent: one per worker. It owns the connections to the other workers,
//! the pending calls and their deadlines, the pool that runs incoming calls, the
//! RRef tables, and the faulty agent's counters.
//!
//! Threads: a listener, one reader per connection, a timer (deadlines, delays,
//! retry backoff), `num_worker_threads` pool threads running functions, and one
//! background thread that sends delayed and reference-counting messages (so that
//! reader threads never block on a write).

mod conn;
mod init;
pub(crate) mod refs;
mod serve;
mod shutdown;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use self::conn::Conn;
pub(crate) use self::init::init;
pub(crate) use self::refs::Refs;
use crate::codec::{self, Arrivals, Target};
use crate::future::{Label, RpcFuture, Slot};
use crate::pool::Pool;
use crate::rref::{CreationCell, Handle, RRef};
use crate::store::Store;
use crate::timer::Timer;
use crate::wire::{ForkData, Id, RequestKind, WireError};
use crate::{Error, FaultyOptions, Functions, MessageType, Result, RpcShared, WorkerInfo};

pub(crate) const RUNNING: u8 = 0;
pub(crate) const DRAINING: u8 = 1;
pub(crate) const STOPPED: u8 = 2;

/// Timeout of one attempt of a reference-counting or cleanup message.
const REF_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of a retried message before the agent gives up (backoff 10 ms,
/// doubling, at most 1 s: about 4 s in all).
const REF_MAX_ATTEMPTS: u32 = 10;

thread_local! {
    /// Set while this thread runs an incoming call (calls it makes are the work
    /// it owes its caller, allowed during a graceful shutdown).
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is running an incoming call.
pub(crate) fn in_handler() -> bool {
    IN_HANDLER.with(Cell::get)
}

/// A reply to a request.
pub(crate) struct Reply {
    pub body: Vec<u8>,
    pub arrivals: Arrivals,
}

/// Why a request got no reply.
pub(crate) struct Failure {
    pub error: Error,
    /// Whether the destination may have received the request (false: it surely
    /// did not, e.g. the faulty agent dropped it or the connection failed first).
    pub maybe_delivered: bool,
}

pub(crate) type Completer = Box<dyn FnOnce(std::result::Result<Reply, Failure>) + Send>;

/// A request to send.
pub(crate) struct Request {
    pub to: usize,
    pub kind: RequestKind,
    pub body: Vec<u8>,
    pub forks: Vec<ForkData>,
}

struct Pending {
    to: usize,
    /// Made from inside an incoming call: RRefs in the reply belong to that call.
    from_handler: bool,
    what: String,
    started: Instant,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// The connection the request was written on.
    conn: Option<u64>,
    done: Completer,
}

#[derive(Default)]
struct Calls {
    map: HashMap<u64, Pending>,
    deadlines: BTreeSet<(Instant, u64)>,
}

impl Calls {
    fn take(&mut self, id: u64) -> Option<Pending> {
        let p = self.map.remove(&id)?;
        if let Some(d) = p.deadline {
            self.deadlines.remove(&(d, id));
        }
        Some(p)
    }
}

/// Message counters and activity, for graceful shutdown's termination detection.
#[derive(Default)]
struct Stats {
    /// Frames (requests and responses) written, and read (self-sends count both).
    sent: AtomicU64,
    recv: AtomicU64,
    /// Requests received and not answered yet.
    active: AtomicUsize,
    /// Retried messages not acknowledged (or given up) yet.
    ref_ops: AtomicUsize,
    /// Sends held back by the faulty agent.
    delayed: AtomicUsize,
}

struct Faults {
    options: FaultyOptions,
    counts: Mutex<HashMap<MessageType, u32>>,
}

impl Faults {
    /// Whether this send of `t` fails; the failure's number (1-based) if so.
    fn should_fail(&self, t: MessageType) -> Option<u32> {
        if !self.options.messages_to_fail.contains(&t) {
            return None;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let c = counts.entry(t).or_insert(0);
        if *c < self.options.num_fail_sends {
            *c += 1;
            Some(*c)
        } else {
            None
        }
    }

    fn delay(&self, t: MessageType) -> Option<Duration> {
        self.options
            .messages_to_delay
            .get(&t)
            .copied()
            .filter(|d| !d.is_zero())
    }
}

/// Counts of what an agent holds (torch's `_get_debug_info`), for tests and
/// debugging.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DebugInfo {
    /// RRefs this worker owns.
    pub owner_rrefs: usize,
    /// Forks (other workers' references) of the RRefs this worker owns.
    pub forks: usize,
    /// Deletes that arrived before the fork they delete (settled when it arrives).
    pub early_deletes: usize,
    /// Handles on this worker to RRefs it owns.
    pub owner_handles: usize,
    /// References this worker holds to RRefs owned by others (released ones whose
    /// children have not been accepted yet included).
    pub user_rrefs: usize,
    /// RRefs this worker passed on whose receivers have not confirmed yet.
    pub pending_children: usize,
    /// Outgoing requests waiting for a reply.
    pub pending_calls: usize,
    /// Incoming requests being served.
    pub active_calls: usize,
    /// Reference-counting and cleanup messages not acknowledged yet.
    pub ref_messages_in_flight: usize,
    /// Sends the faulty agent failed so far, by message type.
    pub injected_faults: BTreeMap<MessageType, u32>,
}

pub(crate) struct Agent {
    pub(crate) me: usize,
    pub(crate) workers: Vec<WorkerInfo>,
    addrs: Vec<String>,
    secrets: Vec<[u64; 2]>,
    my_secret: [u64; 2],
    names: HashMap<String, usize>,
    pub(crate) functions: Functions,
    faults: Option<Faults>,
    pub(crate) num_worker_threads: usize,
    max_message: usize,
    /// The default timeout in ns (0: none).
    default_timeout_ns: AtomicU64,
    shutdown_timeout: Duration,
    state: AtomicU8,
    peers: Vec<Mutex<Option<Arc<Conn>>>>,
    left: Vec<AtomicBool>,
    calls: Mutex<Calls>,
    next_id: AtomicU64,
    timer: Timer,
    pool: Pool,
    bg: Pool,
    refs: Mutex<Refs>,
    refs_cv: Condvar,
    stats: Stats,
    threads: Mutex<Vec<JoinHandle<()>>>,
    server_conns: Mutex<HashMap<u64, Arc<Conn>>>,
    listen_addr: SocketAddr,
    store: Arc<dyn Store>,
    prefix: String,
    rpc: OnceLock<Weak<RpcShared>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent {
    pub(crate) fn set_rpc(&self, rpc: Weak<RpcShared>) {
        let _ = self.rpc.set(rpc);
    }

    pub(crate) fn rpc_handle(&self) -> Option<crate::Rpc> {
        let shared = self.rpc.get()?.upgrade()?;
        (!self.is_stopped()).then(|| crate::Rpc::from_shared(shared))
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.state.load(Ordering::SeqCst) == STOPPED
    }

    pub(crate) fn faulty_options(&self) -> Option<&FaultyOptions> {
        self.faults.as_ref().map(|f| &f.options)
    }

    /// A fresh id (request ids, RRef ids and fork ids share the counter).
    pub(crate) fn new_id(&self) -> Id {
        Id {
            worker: self.me as u32,
            seq: self.next_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The address worker `rank` listens at.
    pub(crate) fn address(&self, rank: usize) -> &str {
        &self.addrs[rank]
    }

    /// `name (rank r)` of a worker.
    pub(crate) fn label(&self, rank: usize) -> String {
        self.workers[rank].to_string()
    }

    pub(crate) fn resolve(&self, w: crate::WorkerRef<'_>) -> Result<usize> {
        let found = match w {
            crate::WorkerRef::Name(n) => self.names.get(n).copied(),
            crate::WorkerRef::Rank(r) => (r < self.workers.len()).then_some(r),
        };
        found.ok_or_else(|| Error::UnknownWorker {
            worker: w.to_string(),
            world_size: self.workers.len(),
            names: self
                .workers
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    pub(crate) fn default_timeout(&self) -> Duration {
        Duration::from_nanos(self.default_timeout_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn set_default_timeout(&self, t: Duration) {
        self.default_timeout_ns
            .store(t.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// The timeout a call runs with: `None` asks for the default; zero is none.
    pub(crate) fn effective_timeout(&self, t: Option<Duration>) -> Option<Duration> {
        let t = t.unwrap_or_else(|| self.default_timeout());
        (!t.is_zero()).then_some(t)
    }

    /// Fails unless user calls are accepted (running, or draining and called from
    /// inside an incoming call).
    pub(crate) fn check_accepting(&self, what: &dyn Fn() -> String) -> Result<()> {
        match self.state.load(Ordering::SeqCst) {
            RUNNING => Ok(()),
            DRAINING if in_handler() => Ok(()),
            _ => Err(Error::ShutDown {
                what: what(),
                worker: self.label(self.me),
            }),
        }
    }

    fn take_call(&self, id: u64) -> Option<Pending> {
        lock(&self.calls).take(id)
    }

    /// Fails call `id` (if still pending); rolls its forks back when the request
    /// surely was not delivered.
    fn fail_call(
        self: &Arc<Self>,
        id: u64,
        forks: &[ForkData],
        to: usize,
        maybe_delivered: bool,
        error: impl FnOnce(&str) -> Error,
    ) {
        if !maybe_delivered {
            self.rollback_forks(forks, to);
        }
        if let Some(p) = self.take_call(id) {
            let error = error(&p.what);
            (p.done)(Err(Failure {
                error,
                maybe_delivered,
            }));
        }
    }

    /// Sends a request; `done` gets the reply or the failure (timeout, lost
    /// connection, injected fault, ...), exactly once.
    pub(crate) fn send(self: &Arc<Self>, req: Request, timeout: Option<Duration>, done: Completer) {
        let what = req.kind.describe();
        let to = req.to;
        let mt = req.kind.message_type();
        let fail_now = |error: Error, done: Completer| {
            self.rollback_forks(&req.forks, to);
            done(Err(Failure {
                error,
                maybe_delivered: false,
            }));
        };
        if self.is_stopped() {
            return fail_now(
                Error::ShutDown {
                    what,
                    worker: self.label(self.me),
                },
                done,
            );
        }
        if req.body.len() > self.max_message {
            return fail_now(
                Error::MessageTooLarge {
                    what,
                    size: req.body.len(),
                    max: self.max_message,
                },
                done,
            );
        }
        if self.left[to].load(Ordering::SeqCst) && mt != MessageType::Cleanup {
            return fail_now(
                Error::WorkerShutDown {
                    what,
                    to: self.label(to),
                },
                done,
            );
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let deadline = timeout.map(|t| now + t);
        {
            let mut calls = lock(&self.calls);
            calls.map.insert(
                id,
                Pending {
                    to,
                    from_handler: in_handler(),
                    what: what.clone(),
                    started: now,
                    timeout,
                    deadline,
                    conn: None,
                    done,
                },
            );
            if let Some(d) = deadline {
                calls.deadlines.insert((d, id));
            }
        }
        if let Some(d) = deadline {
            self.timer.deadline_added(d);
        }
        if let Some(f) = &self.faults {
            if let Some(attempt) = f.should_fail(mt) {
                tracing::debug!(%what, to, attempt, "faulty agent: failing the send");
                let n = f.options.num_fail_sends;
                let to_label = self.label(to);
                return self.fail_call(id, &req.forks, to, false, |what| Error::InjectedFault {
                    what: what.to_string(),
                    to: to_label,
                    message_type: mt,
                    attempt,
                    num_fail_sends: n,
                });
            }
            if let Some(delay) = f.delay(mt) {
                tracing::debug!(%what, to, ?delay, "faulty agent: delaying the send");
                self.stats.delayed.fetch_add(1, Ordering::SeqCst);
                let agent = self.clone();
                self.timer.schedule(
                    now + delay,
                    Box::new(move || {
                        let a = agent.clone();
                        let queued = agent.bg.spawn(Box::new(move || {
                            a.transmit(id, req);
                            a.stats.delayed.fetch_sub(1, Ordering::SeqCst);
                        }));
                        if !queued {
                            agent.stats.delayed.fetch_sub(1, Ordering::SeqCst);
                        }
                    }),
                );
                return;
            }
        }
        self.transmit(id, req);
    }

    /// Puts request `id` on the wire (or hands it to this worker's own server).
    fn transmit(self: &Arc<Self>, id: u64, req: Request) {
        let to = req.to;
        if to == self.me {
            self.stats.sent.fetch_add(1, Ordering::SeqCst);
            self.stats.recv.fetch_add(1, Ordering::SeqCst);
            self.on_request(
                serve::Source::Local,
                self.me,
                id,
                req.kind,
                req.forks,
                req.body,
            );
            return;
        }
        if self.is_stopped() {
            let me = self.label(self.me);
            return self.fail_call(id, &req.forks, to, false, |what| Error::ShutDown {
                what: what.to_string(),
                worker: me,
            });
        }
        let conn = match self.connect(to) {
            Ok(c) => c,
            Err(e) => {
                let to_label = self.label(to);
                return self.fail_call(id, &req.forks, to, false, |what| {
                    e.into_error(what, to_label)
                });
            }
        };
        {
            let mut calls = lock(&self.calls);
            if !conn.is_closed() {
                if let Some(p) = calls.map.get_mut(&id) {
                    p.conn = Some(conn.id);
                }
            } else {
                drop(calls);
                let to_label = self.label(to);
                return self.fail_call(id, &req.forks, to, false, |what| Error::ConnectionLost {
                    what: what.to_string(),
                    to: to_label,
                    reason: "the connection closed before the request was sent".into(),
                });
            }
        }
        let header = crate::wire::encode_header(&crate::wire::Frame::Request {
            id,
            kind: req.kind,
            forks: req.forks.clone(),
        });
        match conn.write(&header, &req.body) {
            Ok(()) => {
                self.stats.sent.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                let reason = e.to_string();
                let to_label = self.label(to);
                self.fail_call(id, &req.forks, to, false, |what| Error::ConnectionLost {
                    what: what.to_string(),
                    to: to_label,
                    reason: reason.clone(),
                });
                self.conn_lost(&conn, &reason);
            }
        }
    }

    /// A reply arrived for request `id` from `from`.
    pub(crate) fn on_response(
        self: &Arc<Self>,
        from: usize,
        id: u64,
        result: std::result::Result<Vec<ForkData>, WireError>,
        body: Vec<u8>,
    ) {
        let pending = self.take_call(id);
        // RRefs in a reply to user code are released by graceful shutdown; those in
        // a reply to a call made by an incoming call belong to that call.
        let sweepable = pending.as_ref().is_some_and(|p| !p.from_handler);
        let (arrivals, result) = match result {
            Ok(forks) => (self.accept_forks(from, &forks, sweepable), Ok(())),
            Err(e) => (Arrivals::default(), Err(e)),
        };
        let Some(p) = pending else {
            // Timed out or failed already; the RRefs it brought are released.
            return;
        };
        match result {
            Ok(()) => (p.done)(Ok(Reply { body, arrivals })),
            Err(w) => {
                let error = self.wire_error(w, &p.what, from);
                (p.done)(Err(Failure {
                    error,
                    maybe_delivered: true,
                }))
            }
        }
    }

    fn wire_error(&self, w: WireError, what: &str, from: usize) -> Error {
        let worker = self.label(from);
        match w {
            WireError::UnknownFunction { func, registered } => Error::UnknownFunction {
                func,
                worker,
                registered,
            },
            WireError::BadArguments { func, message } => Error::BadArguments {
                func,
                worker,
                message,
            },
            WireError::Failed { func, message } => Error::Remote {
                func,
                worker,
                message,
            },
            WireError::UnknownRRef { rref } => Error::UnknownRRef {
                rref: format!("RRef {rref}"),
                owner: worker,
            },
            WireError::CreationFailed {
                rref,
                func,
                message,
            } => Error::RRefCreationFailed {
                rref: format!("RRef {rref}"),
                owner: worker.clone(),
                cause: Box::new(Error::Remote {
                    func,
                    worker,
                    message,
                }),
            },
            WireError::ShuttingDown => Error::WorkerShutDown {
                what: what.to_string(),
                to: worker,
            },
            WireError::ReplyTooLarge { size, max } => Error::MessageTooLarge {
                what: format!("the reply to {what} from {worker}"),
                size: size as usize,
                max: max as usize,
            },
            WireError::Other(m) => Error::Protocol(format!("{what} to {worker}: {m}")),
        }
    }

    /// Fails the calls whose deadline passed; returns the next deadline.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let (expired, next) = {
            let mut calls = lock(&self.calls);
            let mut out = Vec::new();
            while let Some(&(d, id)) = calls.deadlines.first() {
                if d > now {
                    break;
                }
                calls.deadlines.pop_first();
                if let Some(p) = calls.map.remove(&id) {
                    out.push(p);
                }
            }
            (out, calls.deadlines.first().map(|&(d, _)| d))
        };
        for p in expired {
            let error = Error::Timeout {
                what: p.what,
                to: self.label(p.to),
                timeout: p.timeout.unwrap_or_default(),
                waited: now.saturating_duration_since(p.started),
            };
            (p.done)(Err(Failure {
                error,
                maybe_delivered: true,
            }));
        }
        next
    }

    /// Sends a reference-counting or cleanup message, retrying (with backoff) until
    /// it is acknowledged; then runs `then`.
    pub(crate) fn send_ref(
        self: &Arc<Self>,
        to: usize,
        kind: RequestKind,
        then: Option<Box<dyn FnOnce() + Send>>,
    ) {
        if self.is_stopped() {
            return;
        }
        self.stats.ref_ops.fetch_add(1, Ordering::SeqCst);
        self.ref_attempt(to, kind, then, 0);
    }

    fn ref_attempt(
        self: &Arc<Self>,
        to: usize,
        kind: RequestKind,
        then: Option<Box<dyn FnOnce() + Send>>,
        attempt: u32,
    ) {
        let agent = self.clone();
        let queued = self.bg.spawn(Box::new(move || {
            let a = agent.clone();
            let k = kind.clone();
            agent.send(
                Request {
                    to,
                    kind,
                    body: Vec::new(),
                    forks: Vec::new(),
                },
                Some(REF_TIMEOUT),
                Box::new(move |r| match r {
                    Ok(_) => {
                        if let Some(t) = then {
                            t();
                        }
                        a.stats.ref_ops.fetch_sub(1, Ordering::SeqCst);
                    }
                    Err(f) if retryable(&f.error) && attempt + 1 < REF_MAX_ATTEMPTS && !a.is_stopped() => {
                        let backoff = Duration::from_millis(10u64 << attempt.min(7)).min(Duration::from_secs(1));
                        tracing::debug!(error = %f.error, ?backoff, "retrying");
                        let b = a.clone();
                        a.timer.schedule(
                            Instant::now() + backoff,
                            Box::new(move || b.ref_attempt(to, k, then, attempt + 1)),
                        );
                    }
                    Err(f) => {
                        if !a.is_stopped() {
                            tracing::warn!(error = %f.error, attempts = attempt + 1, "giving up on a reference-counting message");
                        }
                        a.stats.ref_ops.fetch_sub(1, Ordering::SeqCst);
                    }
                }),
            );
        }));
        if !queued {
            self.stats.ref_ops.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Starts a call of `func` on `to`.
    pub(crate) fn call_async<A, R>(
        self: &Arc<Self>,
        to: usize,
        func: &str,
        args: &A,
        timeout: Option<Duration>,
    ) -> Result<RpcFuture<R>>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned + Send + 'static,
    {
        let what = format!("call {func:?}");
        self.check_accepting(&|| what.clone())?;
        let enc = codec::encode(self, Target::Worker(to), args, &|| {
            format!("the arguments of {what}")
        })?;
        let slot = Slot::<R>::new();
        let label = Label {
            what: what.clone(),
            to: self.label(to),
        };
        let s = slot.clone();
        let to_label = label.to.clone();
        self.send(
            Request {
                to,
                kind: RequestKind::Call {
                    func: func.to_string(),
                },
                body: enc.bytes,
                forks: enc.forks,
            },
            self.effective_timeout(timeout),
            Box::new(move |r| {
                s.complete(match r {
                    Ok(reply) => {
                        codec::decode::<R>(reply.arrivals, &reply.body).map_err(|m| Error::Decode {
                            what: format!("the result of {what} from {to_label}"),
                            message: m,
                        })
                    }
                    Err(f) => Err(f.error),
                })
            }),
        );
        Ok(RpcFuture::new(slot, label))
    }

    /// Starts `func` on `to`, keeping its result there as a new RRef.
    pub(crate) fn remote<A, T>(
        self: &Arc<Self>,
        to: usize,
        func: &str,
        args: &A,
        timeout: Option<Duration>,
    ) -> Result<RRef<T>>
    where
        A: Serialize + ?Sized,
    {
        let what = format!("remote call {func:?}");
        self.check_accepting(&|| what.clone())?;
        let enc = codec::encode(self, Target::Worker(to), args, &|| {
            format!("the arguments of {what}")
        })?;
        let rref = self.new_id();
        let creation = CreationCell::new();
        let (handle, fork) = if to == self.me {
            self.owner_local_new(rref);
            (
                Handle::owner(self, rref, creation.clone(), !in_handler()),
                None,
            )
        } else {
            let fork = self.new_id();
            self.user_new(fork, rref, to, true);
            (
                Handle::user(self, rref, to, fork, creation.clone(), !in_handler()),
                Some(fork),
            )
        };
        let agent = self.clone();
        self.send(
            Request {
                to,
                kind: RequestKind::RemoteCall {
                    func: func.to_string(),
                    rref,
                    fork,
                },
                body: enc.bytes,
                forks: enc.forks,
            },
            self.effective_timeout(timeout),
            Box::new(move |r| {
                let maybe_delivered = match r {
                    Ok(_) => {
                        creation.set(Ok(()));
                        true
                    }
                    Err(f) => {
                        creation.set(Err(f.error));
                        f.maybe_delivered
                    }
                };
                if let Some(fork) = fork {
                    agent.user_creation_settled(fork, maybe_delivered);
                }
            }),
        );
        Ok(RRef::from_handle(handle))
    }

    /// Fetches the value of RRef `rref` from its owner (`to_here` on a user).
    pub(crate) fn fetch(
        self: &Arc<Self>,
        owner: usize,
        rref: Id,
        timeout: Option<Duration>,
        done: Box<dyn FnOnce(Result<Vec<u8>>) + Send>,
    ) {
        self.send(
            Request {
                to: owner,
                kind: RequestKind::Fetch { rref },
                body: Vec::new(),
                forks: Vec::new(),
            },
            timeout,
            Box::new(move |r| done(r.map(|reply| reply.body).map_err(|f| f.error))),
        );
    }

    pub(crate) fn debug_info(&self) -> DebugInfo {
        let mut info = self.refs_debug_info();
        info.pending_calls = lock(&self.calls).map.len();
        info.active_calls = self.stats.active.load(Ordering::SeqCst);
        info.ref_messages_in_flight = self.stats.ref_ops.load(Ordering::SeqCst);
        if let Some(f) = &self.faults {
            info.injected_faults = lock(&f.counts).iter().map(|(&t, &n)| (t, n)).collect();
        }
        info
    }

    fn spawn_thread(
        self: &Arc<Self>,
        name: String,
        f: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let h = std::thread::Builder::new().name(name).spawn(f)?;
        lock(&self.threads).push(h);
        Ok(())
    }
}

/// Whether a failed reference-counting message is worth sending again.
fn retryable(e: &Error) -> bool {
    matches!(
        e,
        Error::InjectedFault { .. }
            | Error::ConnectionLost { .. }
            | Error::Unreachable { .. }
            | Error::Timeout { .. }
            | Error::Io { .. }
    )
}
