//! [`Work`]: the handle of an asynchronous operation, and the worker thread that
//! runs a group's asynchronous operations in the order they were issued.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::{Error, Result};

thread_local! {
    /// True on a group's worker thread, whose jobs must not wait for the queue
    /// they are part of.
    static ON_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct Slot<T> {
    result: Mutex<Option<Result<T>>>,
    done: Condvar,
}

/// The handle of an asynchronous operation (torch's `Work`): poll it, wait for it
/// (with or without a timeout), read its error, or take its result.
pub struct Work<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Work<T> {
    pub(crate) fn new() -> (Work<T>, Completer<T>) {
        let slot = Arc::new(Slot {
            result: Mutex::new(None),
            done: Condvar::new(),
        });
        (Work { slot: slot.clone() }, Completer { slot: Some(slot) })
    }

    /// True once the operation finished (successfully or not).
    pub fn is_completed(&self) -> bool {
        self.lock().is_some()
    }

    /// Waits up to `timeout` for the operation; `Ok(true)` once it finished,
    /// `Ok(false)` if it is still running. Does not cancel it.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        let guard = self.lock();
        let (guard, _) = self
            .slot
            .done
            .wait_timeout_while(guard, timeout, |r| r.is_none())
            .unwrap_or_else(|p| p.into_inner());
        Ok(guard.is_some())
    }

    /// The error message if the operation failed, `None` while running or after
    /// success.
    pub fn error(&self) -> Option<String> {
        match &*self.lock() {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        }
    }

    /// Waits for the operation and returns its result (the buffers it owned).
    pub fn wait(self) -> Result<T> {
        let guard = self.lock();
        let mut guard = self
            .slot
            .done
            .wait_while(guard, |r| r.is_none())
            .unwrap_or_else(|p| p.into_inner());
        guard.take().unwrap_or_else(|| {
            Err(Error::GroupFailed {
                reason: "the operation's result was already taken".into(),
            })
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Result<T>>> {
        self.slot.result.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The worker side of a [`Work`]: completes it exactly once (on drop, with an error,
/// if the job never ran).
pub(crate) struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Completer<T> {
    pub(crate) fn complete(mut self, r: Result<T>) {
        if let Some(slot) = self.slot.take() {
            *slot.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            slot.done.notify_all();
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            *slot.result.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Err(Error::GroupFailed {
                    reason: "the group was dropped before the operation ran".into(),
                }));
            slot.done.notify_all();
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs jobs in submission order on one thread; counts what is in flight so that a
/// blocking operation can wait for earlier asynchronous ones.
pub(crate) struct Worker {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    pending: Arc<(Mutex<u64>, Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set once the first job was queued.
    started: std::sync::atomic::AtomicBool,
}

impl Worker {
    pub(crate) fn new() -> Self {
        Worker {
            tx: Mutex::new(None),
            pending: Arc::new((Mutex::new(0), Condvar::new())),
            thread: Mutex::new(None),
            started: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Queues `job`; starts the thread on first use.
    pub(crate) fn submit(&self, job: Job) {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.is_none() {
            let (s, r) = mpsc::channel::<Job>();
            let pending = self.pending.clone();
            let handle = std::thread::Builder::new()
                .name("tutti-work".into())
                .spawn(move || {
                    ON_WORKER.with(|w| w.set(true));
                    for job in r {
                        job();
                        let (m, cv) = &*pending;
                        *m.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
                        cv.notify_all();
                    }
                })
                .ok();
            *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = handle;
            *tx = Some(s);
        }
        *self.pending.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.started
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(s) = tx.as_ref()
            && let Err(mpsc::SendError(job)) = s.send(job)
        {
            // The thread is gone: run here so the Work completes.
            job();
            *self.pending.0.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        }
    }

    /// Waits until every submitted job has run.
    pub(crate) fn drain(&self) {
        if ON_WORKER.with(|w| w.get()) {
            return;
        }
        // Fast path: no asynchronous operation was ever queued.
        if !self.started.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let (m, cv) = &*self.pending;
        let g = m.lock().unwrap_or_else(|p| p.into_inner());
        let _g = cv
            .wait_while(g, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }
}
