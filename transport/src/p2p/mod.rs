//! The point-to-point progress engine: non-blocking sends and receives matched by
//! (peer, tag), over one ring pair per peer (in the same-host window, or bridged to a
//! link for other hosts), with the protocol of [`protocol`].
//!
//! Every posted operation advances whenever anyone makes progress: a thread waiting
//! for an operation moves the bytes itself ([`Engine::drive`], MPI's progress in wait,
//! so a blocking exchange costs no thread hand-off), and a background thread takes over
//! when operations have been pending for a millisecond with nobody waiting or
//! posting. So sends and receives posted in any order never deadlock as long as
//! every send has a matching receive: a send never blocks the receives behind it.
//!
//! Matching: a receive takes the first message from its source (or from any peer)
//! with its tag, in arrival order; messages between two ranks with equal tags are
//! received in the order they were sent, messages with different tags in any order.
//! Lengths must agree: a mismatch fails the receive with
//! [`TransportError::Mismatch`], and a large (rendezvous) send with it; a small
//! (eager) send completed when it was buffered.
//!
//! A deadline passed fails that operation with a timeout; a peer that dies or breaks
//! its connection fails every operation with it.

pub mod protocol;
mod state;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bridge::Bridge;
use crate::window::Window;
use crate::window::ring::{BellRef, RingRx, RingTx};
use crate::{Deadline, Result, TransportError, WaitBudget};
use state::{Done, State};

/// One peer's pair of rings.
#[allow(clippy::large_enum_variant)] // one per peer, built once
pub enum Channel {
    /// Rings in the same-host windows, to and from window member `member`.
    Window {
        /// Records to the peer (in its window).
        tx: RingTx,
        /// Records from the peer (in ours).
        rx: RingRx,
        /// The peer's member index in the window (for liveness).
        member: usize,
    },
    /// Rings bridged to a link (another host).
    Bridged {
        /// The bridge.
        bridge: Box<Bridge>,
        /// The largest record payload the link carries.
        max_payload: usize,
    },
}

impl Channel {
    fn tx(&mut self) -> &mut RingTx {
        match self {
            Channel::Window { tx, .. } => tx,
            Channel::Bridged { bridge, .. } => &mut bridge.tx,
        }
    }

    fn rx(&mut self) -> &mut RingRx {
        match self {
            Channel::Window { rx, .. } => rx,
            Channel::Bridged { bridge, .. } => &mut bridge.rx,
        }
    }

    fn max_payload(&self) -> usize {
        match self {
            Channel::Window { tx, .. } => tx.max_payload(),
            Channel::Bridged {
                bridge,
                max_payload,
            } => bridge.tx.max_payload().min(*max_payload),
        }
    }
}

/// Settings of the engine.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Messages up to this size travel eagerly (no request-to-send round trip) to
    /// peers in the window.
    pub eager_max: usize,
    /// The same for peers over a bridged link (TCP, RDMA), where the request-to-send
    /// round trip passes two bridge threads each way.
    pub eager_max_bridged: usize,
    /// Largest piece of a large message per record.
    pub chunk: usize,
    /// When a large message between ranks of one host is read straight from the
    /// sender's memory (one copy) instead of streamed through the ring (two).
    pub single_copy: SingleCopy,
    /// How a waiting thread polls before it sleeps.
    pub budget: WaitBudget,
}

/// When the receiver of a large message reads it straight from the sender's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SingleCopy {
    /// Never: always through the ring.
    Off,
    /// Between threads of one process (plain loads). The default: between
    /// processes, `process_vm_readv` measured slower one way than the ring's two copies
    /// on the machines this was tuned on (bench/RESULTS.md).
    Threads,
    /// Also between processes, with `process_vm_readv` where the kernel allows it.
    Always,
}

impl SingleCopy {
    /// From `TUTTI_P2P_SINGLE_COPY`: `0`/`off`, `threads` (the default), `1`/`all`.
    pub fn from_env() -> SingleCopy {
        match std::env::var("TUTTI_P2P_SINGLE_COPY")
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "0" | "off" | "no" => SingleCopy::Off,
            "1" | "all" | "always" | "yes" => SingleCopy::Always,
            _ => SingleCopy::Threads,
        }
    }
}

/// What an operation's completion hands back: for receives, the rank the message came
/// from.
pub type Completion = Result<usize>;

/// The engine of one rank in one group.
pub struct Engine {
    shared: Arc<Shared>,
    bg: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rank", &self.shared.rank)
            .field("pending", &self.shared.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Operations posted and not complete.
    pending: AtomicUsize,
    /// Threads driving progress in [`Engine::drive`].
    drivers: AtomicUsize,
    bell: BellRef,
    window: Option<Arc<Window>>,
    budget: WaitBudget,
    stop: AtomicBool,
    bg_wake: (Mutex<()>, Condvar),
    /// Bumped by every asynchronous post and every driver that starts: the
    /// background thread takes over only after a whole [`WATCH`] without any.
    activity: AtomicU64,
    /// True while the background thread sleeps for [`IDLE_POLL`] (nothing was
    /// pending): a post that leaves work behind wakes it into watching.
    dozing: AtomicBool,
    rank: usize,
}

/// How long a sleeping driver waits for a doorbell before it checks deadlines and
/// liveness again.
const NAP: Duration = Duration::from_millis(5);

impl Engine {
    /// An engine for `rank` with `channels[p]` to each peer `p` (`None` for itself
    /// and peers it cannot reach); `names[p]` describes peer `p` in errors. `bell` is
    /// this rank's doorbell, which every channel rings; `window` checks the
    /// liveness of same-host peers.
    pub fn new(
        rank: usize,
        names: Vec<String>,
        channels: Vec<Option<Channel>>,
        bell: BellRef,
        window: Option<Arc<Window>>,
        cfg: EngineConfig,
    ) -> Engine {
        let engine = Engine {
            shared: Arc::new(Shared {
                state: Mutex::new(State::new(rank, names, channels, cfg)),
                pending: AtomicUsize::new(0),
                drivers: AtomicUsize::new(0),
                bell,
                window,
                budget: cfg.budget,
                stop: AtomicBool::new(false),
                bg_wake: (Mutex::new(()), Condvar::new()),
                activity: AtomicU64::new(0),
                dozing: AtomicBool::new(false),
                rank,
            }),
            bg: Mutex::new(None),
        };
        engine.ensure_background();
        engine
    }

    /// Posts a send of `data` (owned: handed back through `done`) to `peer`.
    pub fn send_owned<B: AsRef<[u8]> + Send + 'static>(
        &self,
        peer: usize,
        tag: u32,
        data: B,
        deadline: Deadline,
        done: impl FnOnce(Result<B>) + Send + 'static,
    ) {
        let out = state::OwnedOut {
            buf: Some(data),
            done: Some(done),
        };
        self.post(|st, sh| st.post_send(peer, tag, Box::new(out), deadline, sh));
    }

    /// Posts a receive into `buf` (owned: handed back through `done` with the
    /// source rank) from `src` (`None`: any peer) with `tag`.
    pub fn recv_owned<B: AsMut<[u8]> + Send + 'static>(
        &self,
        src: Option<usize>,
        tag: u32,
        buf: B,
        deadline: Deadline,
        done: impl FnOnce(Result<(B, usize)>) + Send + 'static,
    ) {
        let inc = state::OwnedIn {
            buf: Some(buf),
            done: Some(done),
        };
        self.post(|st, sh| st.post_recv(src, tag, Box::new(inc), deadline, sh));
    }

    /// Sends `data` to `peer` and waits until it has left this rank's memory (small
    /// messages: copied into the ring; large ones: read by the receiver's rank).
    pub fn send(&self, peer: usize, tag: u32, data: &[u8], deadline: Deadline) -> Result<()> {
        let done = Arc::new(Done::default());
        let out = state::BorrowedOut {
            ptr: data.as_ptr(),
            len: data.len(),
            done: done.clone(),
        };
        self.post_and_wait(
            |st, sh| st.post_send(peer, tag, Box::new(out), deadline, sh),
            &done,
        )
        .map(|_| ())
    }

    /// Receives into `buf` from `src` (`None`: any peer) with `tag`; returns the rank
    /// the message came from.
    pub fn recv(
        &self,
        src: Option<usize>,
        tag: u32,
        buf: &mut [u8],
        deadline: Deadline,
    ) -> Result<usize> {
        let done = Arc::new(Done::default());
        let inc = state::BorrowedIn {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            done: done.clone(),
        };
        self.post_and_wait(
            |st, sh| st.post_recv(src, tag, Box::new(inc), deadline, sh),
            &done,
        )
    }

    /// Sends `data` to `dst` and receives into `buf` from `src` (`None`: any peer),
    /// both with `tag`, the two in flight together (MPI's `Sendrecv`: a ring shift or
    /// an exchange cannot deadlock whatever the sizes). Returns the rank the message
    /// came from; the first error of the two otherwise (both have completed by then:
    /// neither buffer is used after this returns).
    pub fn sendrecv(
        &self,
        dst: usize,
        data: &[u8],
        src: Option<usize>,
        buf: &mut [u8],
        tag: u32,
        deadline: Deadline,
    ) -> Result<usize> {
        let (sent, got) = (Arc::new(Done::default()), Arc::new(Done::default()));
        let out = state::BorrowedOut {
            ptr: data.as_ptr(),
            len: data.len(),
            done: sent.clone(),
        };
        let inc = state::BorrowedIn {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            done: got.clone(),
        };
        self.post_and_drive(
            |st, sh| {
                st.post_recv(src, tag, Box::new(inc), deadline, sh);
                st.post_send(dst, tag, Box::new(out), deadline, sh);
            },
            &|| sent.is_done() && got.is_done(),
        );
        let (s, r) = (sent.take(), got.take());
        s?;
        r
    }

    /// Posts several operations at once (one lock), so that none of them can be seen
    /// by the peers before the others are posted.
    pub fn batch(&self, f: impl FnOnce(&mut Batch<'_>)) {
        self.post(|st, sh| {
            let mut b = Batch {
                state: st,
                shared: sh,
            };
            f(&mut b);
        });
    }

    /// Posts a borrowed operation and drives progress until it completes. The
    /// operation cannot outlive this call: every operation completes, at the latest
    /// when its deadline passes or the engine is aborted. The caller counts as a
    /// driver from before the post, so the background thread is not woken for it.
    fn post_and_wait(&self, f: impl FnOnce(&mut State, &Shared), done: &Done) -> Result<usize> {
        self.post_and_drive(f, &|| done.is_done());
        done.take()
    }

    /// Posts borrowed operations (`f`, under one lock) and drives progress until
    /// `done()`; see [`post_and_wait`](Self::post_and_wait).
    fn post_and_drive(&self, f: impl FnOnce(&mut State, &Shared), done: &dyn Fn() -> bool) {
        let sh = &self.shared;
        sh.drivers.fetch_add(1, Ordering::AcqRel);
        sh.activity.fetch_add(1, Ordering::AcqRel);
        let finished = {
            let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut st, sh);
            st.progress(sh);
            st.take_finished()
        };
        run(sh, finished);
        if !done() {
            drive_loop(sh, done, None);
        }
        self.stop_driving();
    }

    fn stop_driving(&self) {
        let sh = &self.shared;
        sh.drivers.fetch_sub(1, Ordering::AcqRel);
        wake_if_dozing(sh);
    }

    fn post(&self, f: impl FnOnce(&mut State, &Shared)) {
        let sh = &self.shared;
        let finished = {
            let mut st = sh.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut st, sh);
            // Start it right away (a small send is often done here).
            st.progress(sh);
            st.take_finished()
        };
        run(sh, finished);
        sh.activity.fetch_add(1, Ordering::AcqRel);
        // With nobody driving, the background thread takes over what is left, once
        // the caller has not come back to wait (or post) for a while.
        wake_if_dozing(sh);
    }

    fn ensure_background(&self) {
        let mut bg = self.bg.lock().unwrap_or_else(|p| p.into_inner());
        if bg.is_some() {
            return;
        }
        let shared = self.shared.clone();
        *bg = std::thread::Builder::new()
            .name("tutti-p2p".into())
            .spawn(move || background(&shared))
            .ok();
    }

    /// Makes progress until `done()` or `until` (the calling thread does the work;
    /// others may help).
    pub fn drive(&self, done: &dyn Fn() -> bool, until: Option<Instant>) {
        let sh = &self.shared;
        sh.drivers.fetch_add(1, Ordering::AcqRel);
        sh.activity.fetch_add(1, Ordering::AcqRel);
        drive_loop(sh, done, until);
        self.stop_driving();
    }

    /// Fails every pending operation with `err` and refuses new ones (abort, or the
    /// group failed).
    pub fn fail_all(&self, err: impl Fn() -> TransportError) {
        let finished = {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            st.fail_all(&err, &self.shared);
            st.take_finished()
        };
        run(&self.shared, finished);
    }

    /// Number of operations posted and not complete.
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        {
            let _g = self.shared.bg_wake.0.lock();
            self.shared.bg_wake.1.notify_all();
        }
        self.shared.bell.ring();
        if let Some(h) = self.bg.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
        self.fail_all(|| TransportError::Aborted {
            peer: "(all)".into(),
            op: "point-to-point (the group was dropped)",
        });
    }
}

/// Several operations posted under one lock ([`Engine::batch`]).
pub struct Batch<'a> {
    state: &'a mut State,
    shared: &'a Shared,
}

impl Batch<'_> {
    /// Adds a send (see [`Engine::send_owned`]).
    pub fn send_owned<B: AsRef<[u8]> + Send + 'static>(
        &mut self,
        peer: usize,
        tag: u32,
        data: B,
        deadline: Deadline,
        done: impl FnOnce(Result<B>) + Send + 'static,
    ) {
        let out = state::OwnedOut {
            buf: Some(data),
            done: Some(done),
        };
        self.state
            .post_send(peer, tag, Box::new(out), deadline, self.shared);
    }

    /// Adds a receive (see [`Engine::recv_owned`]).
    pub fn recv_owned<B: AsMut<[u8]> + Send + 'static>(
        &mut self,
        src: Option<usize>,
        tag: u32,
        buf: B,
        deadline: Deadline,
        done: impl FnOnce(Result<(B, usize)>) + Send + 'static,
    ) {
        let inc = state::OwnedIn {
            buf: Some(buf),
            done: Some(done),
        };
        self.state
            .post_recv(src, tag, Box::new(inc), deadline, self.shared);
    }
}

/// Runs the completions of finished operations (outside the state lock), then rings
/// the doorbell so that a thread waiting for one of them stops sleeping.
fn run(sh: &Shared, finished: Vec<Box<dyn FnOnce() + Send>>) {
    if finished.is_empty() {
        return;
    }
    for f in finished {
        f();
    }
    sh.bell.ring();
}

/// One pass over every channel, if no one else holds the state; returns whether
/// anything moved.
fn try_progress(sh: &Shared) -> bool {
    let Ok(mut st) = sh.state.try_lock() else {
        return false;
    };
    let moved = st.progress(sh);
    let finished = st.take_finished();
    drop(st);
    let any = moved || !finished.is_empty();
    run(sh, finished);
    any
}

/// Deadlines and liveness, checked while idle.
fn check(sh: &Shared) {
    let finished = {
        let Ok(mut st) = sh.state.try_lock() else {
            return;
        };
        st.check(sh);
        st.take_finished()
    };
    run(sh, finished);
}

fn drive_loop(sh: &Shared, done: &dyn Fn() -> bool, until: Option<Instant>) {
    let budget = sh.budget;
    let mut idle_since = Instant::now();
    let mut last_check = idle_since;
    let mut idle_rounds: u32 = 0;
    loop {
        if done() {
            return;
        }
        if try_progress(sh) {
            idle_rounds = 0;
            continue;
        }
        if done() {
            return;
        }
        // Reading the clock costs more than a pass over the rings: every 16 idle passes.
        idle_rounds = idle_rounds.wrapping_add(1);
        if idle_rounds == 1 {
            idle_since = Instant::now();
        }
        if !idle_rounds.is_multiple_of(16) {
            std::hint::spin_loop();
            continue;
        }
        let now = Instant::now();
        if until.is_some_and(|u| now >= u) {
            return;
        }
        if now.duration_since(last_check) >= NAP {
            check(sh);
            last_check = now;
        }
        let idle = now.duration_since(idle_since);
        if idle < budget.spin {
            continue;
        }
        if idle < budget.spin + budget.yields {
            std::thread::yield_now();
            continue;
        }
        let nap = until.map_or(NAP, |u| u.saturating_duration_since(now).min(NAP));
        sh.bell.sleep(nap, || done() || try_progress(sh));
        idle_rounds = 0;
    }
}

/// How long the background thread sleeps on the bell before it checks deadlines and
/// liveness again.
const BACKGROUND_NAP: Duration = Duration::from_millis(20);

/// How long posted operations must go unattended (no driver, no new post) before
/// the background thread moves them. Waking it at every post cost more than the
/// messages on 2 cores: with two ranks, two more threads took turns on the cores
/// while the callers were about to wait anyway (tutti-p2p 16-64 KiB one way
/// 1.5-7 GB/s against 7-13.5 without the wake-ups, bench/RESULTS.md).
const WATCH: Duration = Duration::from_millis(1);

/// Wakes the background thread from its long idle sleep when operations are left
/// with nobody driving them; it then watches them for [`WATCH`] before it acts.
fn wake_if_dozing(sh: &Shared) {
    if sh.dozing.load(Ordering::SeqCst)
        && sh.drivers.load(Ordering::Acquire) == 0
        && sh.pending.load(Ordering::Acquire) > 0
    {
        let _g = sh.bg_wake.0.lock();
        sh.bg_wake.1.notify_all();
    }
}

/// The background thread: strong progress without a thread hand-off on the fast
/// path. With nothing pending it sleeps [`IDLE_POLL`] at a time, taking in what
/// arrives (small messages nobody asked for yet) without sleeping on the doorbell
/// (so that peers' messages do not wake it). With operations pending it watches:
/// when a whole [`WATCH`] passed with nobody driving them and nothing posted, the
/// caller is busy elsewhere and it drives them itself, sleeping on the doorbell in
/// between, until a caller drives again or nothing is pending.
fn background(sh: &Shared) {
    let mut seen = sh.activity.load(Ordering::Acquire);
    // Whether the last look also found operations pending and nobody driving.
    let mut was_unattended = false;
    loop {
        if sh.stop.load(Ordering::Acquire) {
            return;
        }
        let pending = sh.pending.load(Ordering::Acquire) > 0;
        let driven = sh.drivers.load(Ordering::Acquire) > 0;
        let now = sh.activity.load(Ordering::Acquire);
        let unattended = pending && !driven;
        if unattended && was_unattended && now == seen {
            // Unattended for a whole watch: drive.
            while !sh.stop.load(Ordering::Acquire)
                && sh.drivers.load(Ordering::Acquire) == 0
                && sh.pending.load(Ordering::Acquire) > 0
            {
                if try_progress(sh) {
                    continue;
                }
                check(sh);
                sh.bell.sleep(BACKGROUND_NAP, || {
                    sh.stop.load(Ordering::Acquire)
                        || sh.drivers.load(Ordering::Acquire) > 0
                        || try_progress(sh)
                });
            }
            seen = sh.activity.load(Ordering::Acquire);
            was_unattended = false;
            continue;
        }
        seen = now;
        was_unattended = unattended;
        if !driven {
            // Unasked-for messages, deadlines and liveness.
            try_progress(sh);
            check(sh);
        }
        let g = sh.bg_wake.0.lock().unwrap_or_else(|p| p.into_inner());
        let nap = if pending { WATCH } else { IDLE_POLL };
        sh.dozing.store(!pending, Ordering::SeqCst);
        let _g = sh
            .bg_wake
            .1
            .wait_timeout_while(g, nap, |_| {
                // Woken early only to stop, or out of the long sleep when work is
                // left behind (then it watches from now).
                !sh.stop.load(Ordering::Acquire)
                    && (pending
                        || sh.pending.load(Ordering::Acquire) == 0
                        || sh.drivers.load(Ordering::Acquire) > 0)
            })
            .unwrap_or_else(|p| p.into_inner());
        sh.dozing.store(false, Ordering::SeqCst);
    }
}

/// How often an idle background thread takes in unasked-for messages.
const IDLE_POLL: Duration = Duration::from_millis(10);
