//! [`RRef<T>`]: a reference to a value that lives on another worker (its owner).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::agent::Agent;
use crate::agent::refs::OwnerValue;
use crate::codec::{self, Arrivals, Target};
use crate::future::{Label, RpcFuture, Slot};
use crate::wire::Id;
use crate::{Error, Result, WorkerInfo};

/// Whether the `remote` call that creates an RRef has succeeded.
pub(crate) struct CreationCell {
    state: Mutex<Option<Result<()>>>,
    cv: Condvar,
}

impl CreationCell {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(None),
            cv: Condvar::new(),
        })
    }

    pub(crate) fn confirmed() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Some(Ok(()))),
            cv: Condvar::new(),
        })
    }

    pub(crate) fn set(&self, r: Result<()>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.is_none() {
            *st = Some(r);
            self.cv.notify_all();
        }
    }

    /// The outcome, waiting until `deadline` (forever if `None`); `None` if it is
    /// still unknown at the deadline.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Option<Result<()>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = st.as_ref() {
                return Some(r.clone());
            }
            st = match deadline {
                None => self.cv.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    self.cv
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandleKind {
    /// On the owner.
    Owner,
    /// On another worker, holding fork `fork`.
    User { fork: Id },
}

/// One reference: shared by the clones of an `RRef`; releasing it (drop, or
/// graceful shutdown) drives the reference counting.
pub(crate) struct Handle {
    pub(crate) agent: Arc<Agent>,
    pub(crate) rref: Id,
    pub(crate) owner: usize,
    pub(crate) kind: HandleKind,
    pub(crate) creation: Arc<CreationCell>,
    live_key: u64,
    released: AtomicBool,
    /// Released by graceful shutdown (false for the RRefs that belong to an
    /// incoming call being served: its arguments, and those the code serving it
    /// makes or receives; the call releases them when it is done with them).
    pub(crate) swept_at_shutdown: bool,
}

impl Handle {
    pub(crate) fn owner(
        agent: &Arc<Agent>,
        rref: Id,
        creation: Arc<CreationCell>,
        swept_at_shutdown: bool,
    ) -> Arc<Self> {
        agent.register_live(|live_key| {
            Arc::new(Self {
                agent: agent.clone(),
                rref,
                owner: agent.me,
                kind: HandleKind::Owner,
                creation,
                live_key,
                released: AtomicBool::new(false),
                swept_at_shutdown,
            })
        })
    }

    pub(crate) fn user(
        agent: &Arc<Agent>,
        rref: Id,
        owner: usize,
        fork: Id,
        creation: Arc<CreationCell>,
        swept_at_shutdown: bool,
    ) -> Arc<Self> {
        agent.register_live(|live_key| {
            Arc::new(Self {
                agent: agent.clone(),
                rref,
                owner,
                kind: HandleKind::User { fork },
                creation,
                live_key,
                released: AtomicBool::new(false),
                swept_at_shutdown,
            })
        })
    }

    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }

    pub(crate) fn release(&self) {
        if self.released.swap(true, Ordering::SeqCst) {
            return;
        }
        match self.kind {
            HandleKind::Owner => self.agent.owner_local_dec(self.rref),
            HandleKind::User { fork } => self.agent.user_release(fork),
        }
    }

    pub(crate) fn creation_failed(&self, cause: Error) -> Error {
        Error::RRefCreationFailed {
            rref: format!("RRef {}", self.rref),
            owner: self.agent.label(self.owner),
            cause: Box::new(cause),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.release();
        self.agent.unregister_live(self.live_key);
    }
}

/// A reference to a value of type `T` kept on its owner, made by
/// [`Rpc::remote`](crate::Rpc::remote) (torch's `RRef`).
///
/// The value stays on the owner: [`to_here`](Self::to_here) copies it here,
/// [`local_value`](Self::local_value) reads it on the owner. An `RRef` passed as an
/// argument (or returned as a result) of a call reaches the receiver as a new
/// reference to the same value (a fork); the owner keeps the value while any
/// reference exists anywhere. Clones of an `RRef` share one reference.
///
/// If the `remote` call failed (dropped, timed out, or the function failed),
/// every use of the RRef fails with [`Error::RRefCreationFailed`] saying why.
pub struct RRef<T> {
    handle: Arc<Handle>,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for RRef<T> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
            _value: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RRef")
            .field("id", &self.handle.rref.to_string())
            .field("owner", &self.handle.owner)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T> RRef<T> {
    pub(crate) fn from_handle(handle: Arc<Handle>) -> Self {
        Self {
            handle,
            _value: PhantomData,
        }
    }

    /// The RRef's id (`creator:counter`), unique in the job.
    pub fn id(&self) -> String {
        self.handle.rref.to_string()
    }

    /// The worker that owns the value.
    pub fn owner(&self) -> &WorkerInfo {
        &self.handle.agent.workers[self.handle.owner]
    }

    /// The owner's name.
    pub fn owner_name(&self) -> &str {
        &self.owner().name
    }

    /// Whether this worker is the owner.
    pub fn is_owner(&self) -> bool {
        self.handle.kind == HandleKind::Owner
    }

    /// Waits for the `remote` call that creates the value (torch's
    /// `rref._get_future().wait()`): `Ok` once the owner has it, or the error the
    /// creation failed with (a timeout names the call, the owner and the time). With
    /// `Some(timeout)`, gives up waiting after it with [`Error::Timeout`].
    pub fn wait_created(&self, timeout: Option<Duration>) -> Result<()> {
        let start = Instant::now();
        match self.handle.creation.wait(timeout.map(|t| start + t)) {
            Some(r) => r,
            None => Err(Error::Timeout {
                what: format!("waiting for the creation of RRef {}", self.handle.rref),
                to: self.handle.agent.label(self.handle.owner),
                timeout: timeout.unwrap_or_default(),
                waited: start.elapsed(),
            }),
        }
    }

    fn check_usable(&self, what: &str) -> Result<()> {
        if self.handle.agent.is_stopped() || self.handle.is_released() {
            return Err(Error::ShutDown {
                what: what.to_string(),
                worker: self.handle.agent.label(self.handle.agent.me),
            });
        }
        Ok(())
    }

    /// Calls `func` on the owner with `(this RRef, args)` as its arguments (the
    /// function takes `(RRef<T>, A)` and can read the value with `local_value`).
    pub fn rpc_sync<A, R>(&self, func: &str, args: &A, timeout: Option<Duration>) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned + Send + 'static,
    {
        self.rpc_async(func, args, timeout)?.wait()
    }

    /// [`rpc_sync`](Self::rpc_sync) without waiting.
    pub fn rpc_async<A, R>(
        &self,
        func: &str,
        args: &A,
        timeout: Option<Duration>,
    ) -> Result<RpcFuture<R>>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned + Send + 'static,
    {
        let agent = &self.handle.agent;
        agent.call_async(self.handle.owner, func, &(self, args), timeout)
    }

    /// Runs `func` on the owner with `(this RRef, args)` and keeps the result
    /// there as a new RRef.
    pub fn remote<A, U>(&self, func: &str, args: &A, timeout: Option<Duration>) -> Result<RRef<U>>
    where
        A: Serialize + ?Sized,
    {
        let agent = &self.handle.agent;
        agent.remote(self.handle.owner, func, &(self, args), timeout)
    }
}

impl<T: DeserializeOwned> RRef<T> {
    /// Copies the value here from the owner (on the owner: reads it), waiting up to
    /// `timeout` (`None`: the agent's default; zero: no limit) for its creation and
    /// the fetch.
    pub fn to_here(&self, timeout: Option<Duration>) -> Result<T> {
        let h = &self.handle;
        let agent = &h.agent;
        let what = format!("to_here of RRef {}", h.rref);
        self.check_usable(&what)?;
        let timeout = agent.effective_timeout(timeout);
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let timed_out = |why: &str| Error::Timeout {
            what: format!("{what} ({why})"),
            to: agent.label(h.owner),
            timeout: timeout.unwrap_or_default(),
            waited: start.elapsed(),
        };
        match h.creation.wait(deadline) {
            None => return Err(timed_out("waiting for its creation")),
            Some(Err(e)) => return Err(h.creation_failed(e)),
            Some(Ok(())) => {}
        }
        let bytes = match h.kind {
            HandleKind::Owner => match agent.owner_value(h.rref, deadline) {
                OwnerValue::Ready(b) => b,
                OwnerValue::Failed { func, message } => {
                    return Err(h.creation_failed(Error::Remote {
                        func,
                        worker: agent.label(agent.me),
                        message,
                    }));
                }
                OwnerValue::Missing => {
                    return Err(Error::UnknownRRef {
                        rref: format!("RRef {}", h.rref),
                        owner: agent.label(agent.me),
                    });
                }
                OwnerValue::TimedOut => return Err(timed_out("waiting for its value")),
            },
            HandleKind::User { .. } => {
                let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if remaining.is_some_and(|r| r.is_zero()) {
                    return Err(timed_out("no time left to fetch it"));
                }
                let slot = Slot::<Result<Vec<u8>>>::new();
                let s = slot.clone();
                agent.fetch(
                    h.owner,
                    h.rref,
                    remaining,
                    Box::new(move |r| s.complete(Ok(r))),
                );
                let label = Label {
                    what: what.clone(),
                    to: agent.label(h.owner),
                };
                RpcFuture::new(slot, label).wait()??
            }
        };
        codec::decode::<T>(Arrivals::default(), &bytes).map_err(|m| Error::Decode {
            what: format!("the value of RRef {}", h.rref),
            message: m,
        })
    }

    /// The value, on the owner (waiting for its creation up to the agent's default
    /// timeout); on any other worker an [`Error::NotOwner`].
    pub fn local_value(&self) -> Result<T> {
        if !self.is_owner() {
            let agent = &self.handle.agent;
            return Err(Error::NotOwner {
                rref: format!("RRef {}", self.handle.rref),
                owner: agent.label(self.handle.owner),
                worker: agent.label(agent.me),
            });
        }
        self.to_here(None)
    }
}

impl<T> Serialize for RRef<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let fork = codec::with_encoder(|ctx| {
            let r = match ctx.target {
                Target::Value => Err(Error::Encode {
                    what: format!("RRef {}", self.handle.rref),
                    message: "an RRef cannot be part of the value of another RRef".into(),
                }),
                Target::Worker(dest) => ctx.agent.fork_for(&self.handle, dest),
            };
            match r {
                Ok(fd) => {
                    ctx.forks.push(fd);
                    Ok(fd.fork)
                }
                Err(e) => {
                    ctx.error = Some(e.clone());
                    Err(e)
                }
            }
        });
        match fork {
            None => Err(codec::ser_error(
                "an RRef can only be encoded as an argument or result of an RPC call",
            )),
            Some(Err(e)) => Err(codec::ser_error(e)),
            Some(Ok(fork)) => fork.serialize(s),
        }
    }
}

impl<'de, T> Deserialize<'de> for RRef<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let fork = Id::deserialize(d)?;
        codec::take_arrival(fork)
            .map(RRef::from_handle)
            .map_err(codec::de_error)
    }
}
