//! Progress without reader threads: the thread that waits on a TCP link reads its
//! sockets itself.
//!
//! A receiver polls the socket its next message arrives on: non-blocking reads for
//! the spin budget, then with yields, then it sleeps in `poll(2)`. A sender whose
//! socket buffer is full reads every socket of its endpoint into their links' slots
//! while it waits for room, and so does a receiver before it sleeps: when two ranks
//! send to each other, or every rank of a ring sends before it receives, each one
//! drains what its peers send while it waits, so nobody blocks on a full socket
//! buffer forever (the bounded buffering the reader threads used to give, without
//! waking a thread per message).

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::config::PollBudget;
use super::inbound::Inbound;
use crate::{AbortHandle, Deadline, Result, TransportError};

/// Longest sleep between checks of the abort flag and the deadline.
const NAP: Duration = Duration::from_millis(10);

/// The receiving side of one link: its sockets' states, behind one lock.
pub(crate) struct RxShared {
    pub peer: Arc<str>,
    pub inbound: Mutex<Vec<Inbound>>,
}

impl RxShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<Inbound>> {
        self.inbound.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What one endpoint's links share: the receiving sides to drain while waiting,
/// the polling budget and the abort flag.
pub(crate) struct Engine {
    links: Mutex<Vec<Weak<RxShared>>>,
    pub budget: PollBudget,
    pub abort: AbortHandle,
}

impl Engine {
    pub(crate) fn new(budget: PollBudget, abort: AbortHandle) -> Arc<Engine> {
        Arc::new(Engine {
            links: Mutex::new(Vec::new()),
            budget,
            abort,
        })
    }

    /// Adds a link's receiving side to those drained while waiting.
    pub(crate) fn register(&self, rx: &Arc<RxShared>) {
        let mut l = self.links.lock().unwrap_or_else(|p| p.into_inner());
        l.retain(|w| w.strong_count() > 0);
        l.push(Arc::downgrade(rx));
    }

    fn live(&self) -> Vec<Arc<RxShared>> {
        let l = self.links.lock().unwrap_or_else(|p| p.into_inner());
        l.iter().filter_map(Weak::upgrade).collect()
    }

    /// Reads, without blocking, whatever has arrived on every socket of this
    /// endpoint that has a free slot. A failure stays with its socket, for the
    /// receiver of that link.
    pub(crate) fn sweep(&self) {
        for rx in self.live() {
            let mut g = rx.lock();
            for ib in g.iter_mut() {
                ib.pump(&rx.peer, false);
            }
        }
    }

    /// Drains every socket, then sleeps until `own` is ready for `events`, a socket
    /// with a free slot has data (or a hang-up), or a nap passes.
    pub(crate) fn sleep(&self, own: RawFd, events: i16, deadline: Deadline) {
        let ms = deadline.cap(NAP).as_millis().clamp(1, NAP.as_millis()) as libc::c_int;
        self.poll(own, events, ms, true);
    }

    /// Polls `own` for `events` and every socket of this endpoint with a free slot
    /// for input, waiting up to `ms` milliseconds (0: just look), after draining
    /// them first when `drain`. Returns whether some socket other than `own` has
    /// input waiting (then a [`sweep`](Self::sweep) reads it).
    pub(crate) fn poll(&self, own: RawFd, events: i16, ms: libc::c_int, drain: bool) -> bool {
        let live = self.live();
        let mut fds = vec![libc::pollfd {
            fd: own,
            events,
            revents: 0,
        }];
        for rx in &live {
            let mut g = rx.lock();
            for ib in g.iter_mut() {
                if drain {
                    ib.pump(&rx.peer, false);
                }
                if ib.wants_input() && ib.fd() != own {
                    fds.push(libc::pollfd {
                        fd: ib.fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                }
            }
        }
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the
        // duration of the call; the descriptors stay open because `live` holds
        // their links and the caller holds `own`'s socket. An error (EINTR) only
        // means: look again.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        n > 0 && fds[1..].iter().any(|p| p.revents != 0)
    }

    /// Fails when the links were aborted or the deadline passed.
    pub(crate) fn check(&self, peer: &str, op: &'static str, deadline: Deadline) -> Result<()> {
        if self.abort.is_aborted() {
            return Err(TransportError::Aborted {
                peer: peer.to_string(),
                op,
            });
        }
        if deadline.expired() {
            return Err(TransportError::Timeout {
                peer: peer.to_string(),
                op,
                waited: deadline.waited(),
            });
        }
        Ok(())
    }
}

/// Where a wait stands in its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Poll again at once.
    Spin,
    /// Yield the core, then poll again.
    Yield,
    /// Sleep in `poll(2)`.
    Sleep,
}

/// The clock of one wait, started at its first unsuccessful poll.
pub(crate) struct Waiting {
    start: Option<Instant>,
    budget: PollBudget,
}

impl Waiting {
    pub(crate) fn new(budget: PollBudget) -> Waiting {
        Waiting {
            start: None,
            budget,
        }
    }

    pub(crate) fn phase(&mut self) -> Phase {
        if self.budget.spin.is_zero() && self.budget.yields.is_zero() {
            return Phase::Sleep;
        }
        let t = self.start.get_or_insert_with(Instant::now).elapsed();
        if t < self.budget.spin {
            Phase::Spin
        } else if t < self.budget.spin + self.budget.yields {
            Phase::Yield
        } else {
            Phase::Sleep
        }
    }
}
