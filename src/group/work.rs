//! [`Work`]: the handle of an asynchronous operation; the worker thread that runs a
//! group's asynchronous collectives in the order they were issued; and the joins that
//! complete when several operations have.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::{Error, Result};

thread_local! {
    /// True on a group's worker thread, whose jobs must not wait for the queue
    /// they are part of.
    static ON_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes progress on operations while a caller waits for one (the point-to-point
/// engine: the waiting thread moves the bytes itself, like MPI's progress in wait).
pub(crate) trait Driver: Send + Sync {
    /// Makes progress until `done()` returns true or `until` passes.
    fn drive(&self, done: &dyn Fn() -> bool, until: Option<Instant>);
}

type Hook = Box<dyn FnOnce() + Send>;

struct Slot<T> {
    result: Mutex<Option<Result<T, Arc<Error>>>>,
    done: Condvar,
    finished: AtomicBool,
    /// Threads blocked on `done` (completion notifies only when there are some).
    waiters: AtomicUsize,
    driver: Option<Arc<dyn Driver>>,
    /// Run once when the operation completes (joins count down through them).
    hooks: Mutex<Vec<Hook>>,
}

/// The handle of an asynchronous operation (torch's `Work`): poll it, wait for it
/// (with or without a timeout), read its error, or take its result.
///
/// Dropping a `Work` does not cancel the operation: it still runs to completion and
/// its buffers are freed afterwards.
pub struct Work<T> {
    slot: Arc<Slot<T>>,
}

impl<T> std::fmt::Debug for Work<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work")
            .field("completed", &self.slot.finished.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Work<T> {
    pub(crate) fn new() -> (Work<T>, Completer<T>) {
        Self::with_driver(None)
    }

    pub(crate) fn with_driver(driver: Option<Arc<dyn Driver>>) -> (Work<T>, Completer<T>) {
        let slot = Arc::new(Slot {
            result: Mutex::new(None),
            done: Condvar::new(),
            finished: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            driver,
            hooks: Mutex::new(Vec::new()),
        });
        (Work { slot: slot.clone() }, Completer { slot: Some(slot) })
    }

    /// A Work that already finished with `r` (for operations refused up front).
    pub(crate) fn ready(r: Result<T>) -> Work<T> {
        let (w, c) = Work::new();
        c.complete(r);
        w
    }

    /// True once the operation finished (successfully or not). For point-to-point
    /// operations, also makes one round of progress.
    pub fn is_completed(&self) -> bool {
        if !self.finished()
            && let Some(d) = &self.slot.driver
        {
            d.drive(&|| self.finished(), Some(Instant::now()));
        }
        self.finished()
    }

    fn finished(&self) -> bool {
        self.slot.finished.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` for the operation; `Ok(true)` once it finished,
    /// `Ok(false)` if it is still running. Does not cancel it.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        let until = Instant::now() + timeout;
        self.wait_until(Some(until));
        Ok(self.finished())
    }

    fn wait_until(&self, until: Option<Instant>) {
        if self.finished() {
            return;
        }
        if let Some(d) = &self.slot.driver {
            d.drive(&|| self.finished(), until);
            return;
        }
        self.slot.waiters.fetch_add(1, Ordering::SeqCst);
        let guard = self.lock();
        let still = |r: &mut Option<Result<T, Arc<Error>>>| r.is_none();
        let _g = match until {
            None => self
                .slot
                .done
                .wait_while(guard, still)
                .unwrap_or_else(|p| p.into_inner()),
            Some(u) => {
                let left = u.saturating_duration_since(Instant::now());
                self.slot
                    .done
                    .wait_timeout_while(guard, left, still)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
        self.slot.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// The operation's error, if it failed (`None` while it runs or after success).
    /// The error is typed: match on `&*err`.
    pub fn error(&self) -> Option<Arc<Error>> {
        match &*self.lock() {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Waits for the operation and returns its result (the buffers it owned). An
    /// error whose handle [`error`](Self::error) still shares comes back as
    /// [`Error::Shared`].
    pub fn wait(self) -> Result<T> {
        loop {
            self.wait_until(None);
            if let Some(r) = self.lock().take() {
                return r.map_err(|e| Arc::try_unwrap(e).unwrap_or_else(Error::Shared));
            }
            if self.finished() {
                return Err(Error::GroupFailed {
                    reason: "the operation's result was already taken".into(),
                });
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Result<T, Arc<Error>>>> {
        self.slot.result.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `hook` when the operation completes (now, if it already has).
    fn on_complete(&self, hook: Hook) {
        let mut hooks = self.slot.hooks.lock().unwrap_or_else(|p| p.into_inner());
        if self.finished() {
            drop(hooks);
            hook();
        } else {
            hooks.push(hook);
        }
    }

    /// A `Work<()>` that completes when this one does, with its error (shared).
    pub(crate) fn signal(&self) -> Work<()> {
        let (marker, completer) = Work::with_driver(self.slot.driver.clone());
        let slot = self.slot.clone();
        self.on_complete(Box::new(move || {
            let err = match &*slot.result.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(Err(e)) => Some(e.clone()),
                _ => None,
            };
            completer.complete_shared(err.map_or(Ok(()), Err));
        }));
        marker
    }

    /// A Work that completes when every one of `works` has, with their results in
    /// order (the first error, if any fails).
    pub fn all(works: Vec<Work<T>>) -> Work<Vec<T>> {
        let driver = works.iter().find_map(|w| w.slot.driver.clone());
        let (joined, completer) = Work::with_driver(driver);
        let n = works.len();
        if n == 0 {
            completer.complete(Ok(Vec::new()));
            return joined;
        }
        struct Join<T> {
            left: AtomicUsize,
            works: Mutex<Option<Vec<Work<T>>>>,
            completer: Mutex<Option<Completer<Vec<T>>>>,
        }
        let join = Arc::new(Join {
            left: AtomicUsize::new(n),
            works: Mutex::new(None),
            completer: Mutex::new(Some(completer)),
        });
        let hooks: Vec<Hook> = (0..n)
            .map(|_| {
                let join = join.clone();
                Box::new(move || {
                    if join.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                        let works = join.works.lock().unwrap_or_else(|p| p.into_inner()).take();
                        let c = join
                            .completer
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .take();
                        if let (Some(works), Some(c)) = (works, c) {
                            c.complete(works.into_iter().map(Work::wait).collect());
                        }
                    }
                }) as Hook
            })
            .collect();
        // Park the works first, then hook them: the last hook takes them back.
        let slots: Vec<Arc<Slot<T>>> = works.iter().map(|w| w.slot.clone()).collect();
        *join.works.lock().unwrap_or_else(|p| p.into_inner()) = Some(works);
        for (slot, hook) in slots.into_iter().zip(hooks) {
            Work { slot }.on_complete(hook);
        }
        joined
    }
}

/// The running side of a [`Work`]: completes it exactly once (on drop, with an error,
/// if the operation never ran).
pub(crate) struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Completer<T> {
    pub(crate) fn complete(self, r: Result<T>) {
        self.complete_shared(r.map_err(Arc::new));
    }

    pub(crate) fn complete_shared(mut self, r: Result<T, Arc<Error>>) {
        if let Some(slot) = self.slot.take() {
            finish(&slot, r);
        }
    }
}

fn finish<T>(slot: &Slot<T>, r: Result<T, Arc<Error>>) {
    *slot.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    slot.finished.store(true, Ordering::SeqCst);
    if slot.waiters.load(Ordering::SeqCst) > 0 {
        slot.done.notify_all();
    }
    let hooks = std::mem::take(&mut *slot.hooks.lock().unwrap_or_else(|p| p.into_inner()));
    for h in hooks {
        h();
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            finish(
                &slot,
                Err(Arc::new(Error::GroupFailed {
                    reason: "the group was dropped before the operation ran".into(),
                })),
            );
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
    started: AtomicBool,
}

impl Worker {
    pub(crate) fn new() -> Self {
        Worker {
            tx: Mutex::new(None),
            pending: Arc::new((Mutex::new(0), Condvar::new())),
            thread: Mutex::new(None),
            started: AtomicBool::new(false),
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
        self.started.store(true, Ordering::Release);
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
        if !self.started.load(Ordering::Acquire) {
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
