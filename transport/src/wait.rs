//! Waiting for a condition that another process or thread makes true: spin briefly,
//! then yield, then sleep on a futex, checking the deadline, the abort flag and the
//! peer's liveness while asleep.
//!
//! Spinning is what makes 2 ranks on 2 cores fast (sub-microsecond hand-offs);
//! sleeping is what keeps 4 ranks on 2 cores fast (a spinning rank would steal the
//! core its peer needs). [`WaitPolicy::for_local_ranks`] picks the balance from the
//! number of ranks sharing the host and the number of cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};
use std::time::Duration;

use rustix::thread::futex;

use crate::{Deadline, Result, TransportError};

/// How long a waiter sleeps at most between liveness checks.
const LIVENESS_PERIOD: Duration = Duration::from_millis(10);

/// How a waiter spends its time before it sleeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitPolicy {
    /// Busy-poll iterations before yielding.
    pub spins: u32,
    /// `sched_yield` iterations before sleeping on the futex.
    pub yields: u32,
}

impl WaitPolicy {
    /// Spin long when every rank has a core of its own, barely at all when ranks
    /// outnumber cores. `TUTTI_SPIN` / `TUTTI_YIELDS` override the counts.
    pub fn for_local_ranks(local_ranks: usize) -> Self {
        let mut p = if local_ranks <= cores() {
            // ~1 ms of polling before yielding: hand-offs between ranks that each
            // have a core stay sub-microsecond without burning a core for long
            // when the peer is descheduled.
            WaitPolicy {
                spins: 30_000,
                yields: 100,
            }
        } else {
            // More ranks than cores: a spinning waiter steals the core its peer
            // needs. Yield a few times (the peer likely runs next on this core),
            // then sleep. Measured on 4 ranks / 2 cores: 8-byte all_reduce 3.7-4.5 us
            // this way, 8.8 us with 200 spins, 90 us with 2000.
            WaitPolicy {
                spins: 0,
                yields: 20,
            }
        };
        if let Some(v) = env_u32("TUTTI_SPIN") {
            p.spins = v;
        }
        if let Some(v) = env_u32("TUTTI_YIELDS") {
            p.yields = v;
        }
        p
    }
}

/// CPUs this process may run on (read once: `available_parallelism` reads cgroup
/// files on every call, tens of microseconds).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// A flag that makes every wait of the links that share it fail with
/// [`TransportError::Aborted`]. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct AbortHandle(Arc<AtomicBool>);

impl AbortHandle {
    /// A new, unset flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag: pending and future waits fail promptly (within the liveness
    /// period of a sleeping waiter).
    pub fn abort(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`abort`](Self::abort) was called.
    pub fn is_aborted(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The futex pair for one direction of wake-ups: `seq` changes whenever the waker
/// makes progress while someone sleeps, `sleeping` says someone does. One waiter at
/// a time per pair; both words may live in shared memory.
pub(crate) struct WakeWords<'a> {
    pub seq: &'a AtomicU32,
    pub sleeping: &'a AtomicU32,
    /// Whether the words are shared between processes (no `FUTEX_PRIVATE_FLAG`).
    pub shared: bool,
}

impl WakeWords<'_> {
    fn flags(&self) -> futex::Flags {
        if self.shared {
            futex::Flags::empty()
        } else {
            futex::Flags::PRIVATE
        }
    }

    /// Called by the side that made progress, after publishing it.
    #[inline]
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) != 0 {
            self.seq.fetch_add(1, Ordering::Release);
            // An error here (EFAULT, ...) cannot be acted on; the sleeper's periodic
            // re-check still sees the progress.
            let _ = futex::wake(self.seq, self.flags(), 1);
        }
    }
}

/// What a wait checks besides its condition.
pub(crate) struct WaitCtx<'a> {
    pub policy: WaitPolicy,
    pub deadline: Deadline,
    pub abort: &'a AbortHandle,
    pub peer: &'a str,
    pub op: &'static str,
}

/// Waits until `ready()` is true. `alive()` is called while sleeping and returns an
/// error when the peer is known to be gone.
pub(crate) fn wait_until(
    words: &WakeWords<'_>,
    ctx: &WaitCtx<'_>,
    mut ready: impl FnMut() -> bool,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<()> {
    for _ in 0..ctx.policy.spins {
        if ready() {
            return Ok(());
        }
        std::hint::spin_loop();
    }
    for _ in 0..ctx.policy.yields {
        if ready() {
            return Ok(());
        }
        std::thread::yield_now();
    }
    loop {
        words.sleeping.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let seen = words.seq.load(Ordering::Acquire);
        if ready() {
            words.sleeping.store(0, Ordering::Relaxed);
            return Ok(());
        }
        check(ctx)?;
        let nap = ctx.deadline.cap(LIVENESS_PERIOD);
        let ts = rustix::time::Timespec {
            tv_sec: nap.as_secs() as i64,
            tv_nsec: i64::from(nap.subsec_nanos()),
        };
        // EAGAIN (seq moved), EINTR and ETIMEDOUT all mean: look again.
        let _ = futex::wait(words.seq, words.flags(), seen, Some(&ts));
        words.sleeping.store(0, Ordering::Relaxed);
        if ready() {
            return Ok(());
        }
        check(ctx)?;
        alive()?;
    }
}

/// How long a waiter polls before it sleeps, as time budgets rather than iteration
/// counts (an iteration costs 2 ns on one CPU and 40 on another).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitBudget {
    /// Busy-polling time before yielding.
    pub spin: Duration,
    /// `sched_yield` polling time before sleeping on the futex.
    pub yields: Duration,
}

impl WaitBudget {
    /// The budget for `local_ranks` ranks sharing this host's cores, given `wake`, the
    /// measured cost of sleeping on a futex and being woken ([`wake_latency`]).
    ///
    /// When every rank has a core, a waiter polls for twice what a sleep would cost
    /// (the classic competitive choice: never more than 3x the optimum) and as long
    /// again yielding. When ranks outnumber cores, polling steals the core the peer
    /// needs: no spinning, and yielding only as long as one wake-up would cost (the
    /// peer likely runs next on this core). `TUTTI_SPIN_US` / `TUTTI_YIELD_US`
    /// override both.
    pub fn new(local_ranks: usize, wake: Duration) -> Self {
        let mut b = if local_ranks <= cores() {
            let spin = (wake * 2).clamp(Duration::from_micros(20), Duration::from_millis(2));
            WaitBudget { spin, yields: spin }
        } else {
            WaitBudget {
                spin: Duration::ZERO,
                yields: wake.clamp(Duration::from_micros(5), Duration::from_micros(200)),
            }
        };
        if let Some(v) = env_u32("TUTTI_SPIN_US") {
            b.spin = Duration::from_micros(u64::from(v));
        }
        if let Some(v) = env_u32("TUTTI_YIELD_US") {
            b.yields = Duration::from_micros(u64::from(v));
        }
        b
    }

    /// [`new`](Self::new) with this process's measured [`wake_latency`].
    pub fn for_local_ranks(local_ranks: usize) -> Self {
        Self::new(local_ranks, wake_latency())
    }
}

/// The median time, in this process, from a futex wake to the sleeper running again
/// (two threads ping-ponging on a futex, measured once per process, ~1-5 ms).
///
/// The threads are not pinned, and often share a core: on a 2-vCPU Zen 4 guest it
/// measures 1.5-1.8 us (`cargo run --release -p tutti-transport --example
/// wake_probe`), a same-core wake-up, so [`WaitBudget::new`] sits at its 20 us floor
/// (a cross-core wake-up there costs ~20-25 us). Budgets of 20 and 50 us measured the
/// same all_reduce speeds, 2 and 4 ranks, 64 KiB-4 MiB (3 interleaved runs each).
pub fn wake_latency() -> Duration {
    static WAKE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *WAKE.get_or_init(measure_wake_latency)
}

fn measure_wake_latency() -> Duration {
    const ROUNDS: u32 = 64;
    let word = Arc::new(AtomicU32::new(0));
    let other = word.clone();
    // The partner waits for odd values and answers with the next even one.
    let partner = std::thread::Builder::new()
        .name("tutti-wake-probe".into())
        .spawn(move || {
            for i in 0..ROUNDS {
                let want = 2 * i + 1;
                while other.load(Ordering::Acquire) != want {
                    let _ = futex::wait(&other, futex::Flags::PRIVATE, want - 1, None);
                }
                other.store(want + 1, Ordering::Release);
                let _ = futex::wake(&other, futex::Flags::PRIVATE, 1);
            }
        });
    let Ok(partner) = partner else {
        return Duration::from_micros(50);
    };
    let mut samples = Vec::with_capacity(ROUNDS as usize);
    for i in 0..ROUNDS {
        let start = std::time::Instant::now();
        word.store(2 * i + 1, Ordering::Release);
        let _ = futex::wake(&word, futex::Flags::PRIVATE, 1);
        while word.load(Ordering::Acquire) != 2 * i + 2 {
            let _ = futex::wait(&word, futex::Flags::PRIVATE, 2 * i + 1, None);
        }
        // A round trip is two wake-ups.
        samples.push(start.elapsed() / 2);
    }
    let _ = partner.join();
    samples.sort();
    samples[samples.len() / 2]
}

/// A futex word other ranks ring to wake its owner, and the owner's "asleep" flag.
/// Both may live in shared memory; one sleeper per bell.
pub(crate) struct Bell<'a> {
    pub seq: &'a AtomicU32,
    pub sleeping: &'a AtomicU32,
}

/// Waits until `ready()`: polls for `budget.spin`, yields for `budget.yields`, then
/// sleeps on `bell` (woken by [`Bell::ring`]) in naps of at most 10 ms, calling
/// `check()` (deadline, abort, liveness, closed peers) every few microseconds while
/// polling and on every wake-up.
pub(crate) fn wait_on_bell(
    bell: &Bell<'_>,
    budget: WaitBudget,
    deadline: Deadline,
    mut ready: impl FnMut() -> bool,
    mut check: impl FnMut() -> Result<()>,
) -> Result<()> {
    if ready() {
        return Ok(());
    }
    let start = std::time::Instant::now();
    if !budget.spin.is_zero() {
        let mut rounds: u32 = 0;
        loop {
            for _ in 0..64 {
                if ready() {
                    return Ok(());
                }
                std::hint::spin_loop();
            }
            rounds = rounds.wrapping_add(1);
            if rounds.is_multiple_of(64) {
                recheck(&mut ready, &mut check)?;
            }
            if start.elapsed() >= budget.spin {
                break;
            }
        }
    }
    let yield_until = budget.spin + budget.yields;
    let mut yields: u32 = 0;
    while start.elapsed() < yield_until {
        if ready() {
            return Ok(());
        }
        std::thread::yield_now();
        yields = yields.wrapping_add(1);
        if yields.is_multiple_of(16) {
            recheck(&mut ready, &mut check)?;
        }
    }
    loop {
        bell.sleeping.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let seen = bell.seq.load(Ordering::Acquire);
        if ready() {
            bell.sleeping.store(0, Ordering::Relaxed);
            return Ok(());
        }
        if let Err(e) = recheck(&mut ready, &mut check) {
            bell.sleeping.store(0, Ordering::Relaxed);
            return Err(e);
        }
        let nap = deadline.cap(LIVENESS_PERIOD);
        let ts = rustix::time::Timespec {
            tv_sec: nap.as_secs() as i64,
            tv_nsec: i64::from(nap.subsec_nanos()),
        };
        // EAGAIN (rung meanwhile), EINTR and ETIMEDOUT all mean: look again.
        let _ = futex::wait(bell.seq, futex::Flags::empty(), seen, Some(&ts));
        bell.sleeping.store(0, Ordering::Relaxed);
        if ready() {
            return Ok(());
        }
        recheck(&mut ready, &mut check)?;
    }
}

/// Runs `check`; when it fails (a peer left, say), looks at the condition once more:
/// what the peer published before it failed still counts.
fn recheck(ready: &mut impl FnMut() -> bool, check: &mut impl FnMut() -> Result<()>) -> Result<()> {
    match check() {
        Err(_) if ready() => Ok(()),
        r => r,
    }
}

fn check(ctx: &WaitCtx<'_>) -> Result<()> {
    if ctx.abort.is_aborted() {
        return Err(TransportError::Aborted {
            peer: ctx.peer.to_string(),
            op: ctx.op,
        });
    }
    if ctx.deadline.expired() {
        return Err(TransportError::Timeout {
            peer: ctx.peer.to_string(),
            op: ctx.op,
            waited: ctx.deadline.waited(),
        });
    }
    Ok(())
}
