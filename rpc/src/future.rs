//! [`RpcFuture`]: the result of an asynchronous call.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Error, Result};

type Callback<T> = Box<dyn FnOnce(Result<T>) + Send>;

enum State<T> {
    Pending(Option<Callback<T>>),
    Done(Result<T>),
    Taken,
}

pub(crate) struct Slot<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
    /// Set with the result, for waiters that spin before they block.
    done: AtomicBool,
}

impl<T: Send + 'static> Slot<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::Pending(None)),
            cv: Condvar::new(),
            done: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the result (the first one wins) and runs the then-callback, if any.
    pub(crate) fn complete(&self, r: Result<T>) {
        let mut st = self.lock();
        match std::mem::replace(&mut *st, State::Taken) {
            State::Pending(Some(cb)) => {
                drop(st);
                cb(r);
            }
            State::Pending(None) => {
                *st = State::Done(r);
                self.done.store(true, Ordering::Release);
                self.cv.notify_all();
            }
            done => *st = done,
        }
    }
}

/// What the future is the result of, for wait-timeout errors.
#[derive(Clone, Debug)]
pub(crate) struct Label {
    pub what: String,
    pub to: String,
}

/// The result of [`rpc_async`](crate::Rpc::rpc_async) (or of a then-callback), to
/// wait for: [`wait`](Self::wait), [`wait_timeout`](Self::wait_timeout),
/// [`wait_for`](Self::wait_for), or chain with [`then`](Self::then).
///
/// The call's own timeout applies whether or not anyone waits: when it expires the
/// future completes with [`Error::Timeout`].
#[must_use = "a future does nothing unless waited for or chained"]
pub struct RpcFuture<T> {
    slot: Arc<Slot<T>>,
    label: Arc<Label>,
}

impl<T> fmt::Debug for RpcFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcFuture")
            .field("what", &self.label.what)
            .field("to", &self.label.to)
            .finish()
    }
}

impl<T: Send + 'static> RpcFuture<T> {
    pub(crate) fn new(slot: Arc<Slot<T>>, label: Label) -> Self {
        Self {
            slot,
            label: Arc::new(label),
        }
    }

    /// Whether the result is there.
    pub fn is_done(&self) -> bool {
        matches!(*self.slot.lock(), State::Done(_))
    }

    /// Waits up to `timeout` for the result; returns whether it is there.
    pub fn wait_for(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.slot.lock();
        loop {
            match &*st {
                State::Done(_) => return true,
                State::Taken => return false,
                State::Pending(_) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .slot
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for the result.
    pub fn wait(self) -> Result<T> {
        // Most replies come within a round trip: spin a little before blocking.
        crate::spin::spin(|| self.slot.done.load(Ordering::Acquire).then_some(()));
        let mut st = self.slot.lock();
        loop {
            match std::mem::replace(&mut *st, State::Taken) {
                State::Done(r) => return r,
                other => *st = other,
            }
            st = self.slot.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits up to `timeout` for the result; fails with [`Error::Timeout`] naming
    /// the call when it is not there by then (the call itself goes on; its result
    /// is dropped).
    pub fn wait_timeout(self, timeout: Duration) -> Result<T> {
        let start = Instant::now();
        if self.wait_for(timeout) {
            return self.wait();
        }
        Err(Error::Timeout {
            what: format!("wait for {}", self.label.what),
            to: self.label.to.clone(),
            timeout,
            waited: start.elapsed(),
        })
    }

    /// Runs `f` on the result when it arrives (at once if it is there) and returns
    /// the future of `f`'s result. `f` runs on the thread that completes this
    /// future (an RPC thread): keep it short and do not wait for other calls in it.
    pub fn then<U, F>(self, f: F) -> RpcFuture<U>
    where
        U: Send + 'static,
        F: FnOnce(Result<T>) -> Result<U> + Send + 'static,
    {
        let next = Slot::<U>::new();
        let label = (*self.label).clone();
        let mut st = self.slot.lock();
        match std::mem::replace(&mut *st, State::Taken) {
            State::Done(r) => {
                drop(st);
                next.complete(f(r));
            }
            State::Pending(_) => {
                let n = next.clone();
                *st = State::Pending(Some(Box::new(move |r| n.complete(f(r)))));
            }
            State::Taken => {}
        }
        RpcFuture::new(next, label)
    }
}
