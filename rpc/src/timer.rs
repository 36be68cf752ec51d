//! Deadlines of pending calls and delayed tasks (faulty-agent delays, retry
//! backoff), served by one thread.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::pool::Job;

/// The longest the timer thread sleeps without looking at the deadlines again.
const MAX_SLEEP: Duration = Duration::from_secs(1);

struct Task {
    at: Instant,
    seq: u64,
    job: Job,
}

impl PartialEq for Task {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Task {}
impl PartialOrd for Task {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Task {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct State {
    tasks: BinaryHeap<Reverse<Task>>,
    seq: u64,
    dirty: bool,
    stop: bool,
}

/// The timer's shared state; the thread's loop is [`Timer::run`].
pub(crate) struct Timer {
    epoch: Instant,
    state: Mutex<State>,
    cv: Condvar,
    /// When the thread will next wake (ns since `epoch`); `u64::MAX` while it is
    /// awake. A new deadline earlier than this wakes it.
    armed: AtomicU64,
}

impl Timer {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            state: Mutex::new(State {
                tasks: BinaryHeap::new(),
                seq: 0,
                dirty: false,
                stop: false,
            }),
            cv: Condvar::new(),
            armed: AtomicU64::new(u64::MAX),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the thread about a new deadline `at` (after it was recorded).
    pub(crate) fn deadline_added(&self, at: Instant) {
        if self.nanos(at) < self.armed.load(Ordering::SeqCst) {
            let mut st = self.lock();
            st.dirty = true;
            self.cv.notify_one();
        }
    }

    /// Runs `job` on the timer thread at `at` (keep it short: queue real work).
    pub(crate) fn schedule(&self, at: Instant, job: Job) {
        let mut st = self.lock();
        if st.stop {
            return;
        }
        st.seq += 1;
        let seq = st.seq;
        st.tasks.push(Reverse(Task { at, seq, job }));
        if self.nanos(at) < self.armed.load(Ordering::SeqCst) {
            st.dirty = true;
            self.cv.notify_one();
        }
    }

    pub(crate) fn stop(&self) {
        let mut st = self.lock();
        st.stop = true;
        st.tasks.clear();
        self.cv.notify_all();
    }

    /// The thread's loop: `expire(now)` fails the calls whose deadline passed and
    /// returns the earliest remaining deadline.
    pub(crate) fn run(&self, expire: &dyn Fn(Instant) -> Option<Instant>) {
        loop {
            self.armed.store(u64::MAX, Ordering::SeqCst);
            let now = Instant::now();
            let next_call = expire(now);
            let due: Vec<Task> = {
                let mut st = self.lock();
                if st.stop {
                    return;
                }
                let mut due = Vec::new();
                while st.tasks.peek().is_some_and(|t| t.0.at <= now) {
                    if let Some(Reverse(t)) = st.tasks.pop() {
                        due.push(t);
                    }
                }
                due
            };
            for t in due {
                (t.job)();
            }
            let mut st = self.lock();
            if st.stop {
                return;
            }
            let now = Instant::now();
            let mut next = now + MAX_SLEEP;
            if let Some(d) = next_call {
                next = next.min(d);
            }
            if let Some(t) = st.tasks.peek() {
                next = next.min(t.0.at);
            }
            if !st.dirty && next > now {
                self.armed.store(self.nanos(next), Ordering::SeqCst);
                st = self
                    .cv
                    .wait_timeout(st, next - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            st.dirty = false;
        }
    }
}
