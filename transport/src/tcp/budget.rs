//! [`PollBudget`]: how long a thread waiting on a TCP link polls before it sleeps,
//! from the measured cost of sleeping.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::config::env_usize;
use crate::wait::cores;
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// How long a thread waiting for a TCP link polls its sockets before it sleeps:
/// first `spin` of back-to-back readiness checks, then `yields` of checks with a
/// `sched_yield` between them, then `poll(2)` (woken by the kernel when data, room
/// or a hang-up arrives). Budgets are times, not iteration counts, so that they
/// mean the same on every CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollBudget {
    /// Busy-polling time.
    pub spin: Duration,
    /// Polling time with a yield between attempts.
    pub yields: Duration,
}

/// How long a waiter yields before it sleeps when ranks outnumber cores.
pub const OVERSUBSCRIBED_YIELD: Duration = Duration::from_millis(10);

impl PollBudget {
    /// No polling: a waiter sleeps in `poll(2)` at once (for threads that only wait,
    /// like the point-to-point bridges' readers, while another thread polls).
    pub const SLEEP: PollBudget = PollBudget {
        spin: Duration::ZERO,
        yields: Duration::ZERO,
    };

    /// The budget for `local_ranks` ranks sharing this host's cores, given `wake`,
    /// the cost of sleeping on a socket and being woken ([`socket_wake_latency`]).
    ///
    /// With a core per rank, a waiter busy-polls for 8 wake-ups' worth, then yields
    /// for a quarter of that. The classic spin-then-sleep rule (spin as long as a
    /// sleep costs, twice at most) bounds the loss of one wait; a collective waits
    /// again and again (for each message, and for socket room while sending), and
    /// measured with 2 wake-ups of polling (~100 us here) 64-256 KiB all_reduce took
    /// twice as long as with 8 (bench/RESULTS.md). With more ranks than cores a
    /// spinning waiter steals the core its peer needs: no spinning, but yielding
    /// for up to [`OVERSUBSCRIBED_YIELD`] before sleeping. A yield hands the core to
    /// a rank that can use it and costs ~1 us when none can, while every sleep
    /// costs a wake-up; measured with 4 ranks on 2 cores, 10 ms of yielding made
    /// 1-16 MiB all_reduce 1.3x faster than 2 wake-ups' worth (Open MPI's
    /// `mpi_yield_when_idle` yields forever).
    /// `TUTTI_TCP_SPIN_US` / `TUTTI_TCP_YIELD_US` override both.
    pub fn new(local_ranks: usize, wake: Duration) -> Self {
        let mut b = if local_ranks.max(1) <= cores() {
            let spin = (wake * 8).clamp(Duration::from_micros(50), Duration::from_millis(2));
            PollBudget {
                spin,
                yields: spin / 4,
            }
        } else {
            PollBudget {
                spin: Duration::ZERO,
                yields: OVERSUBSCRIBED_YIELD,
            }
        };
        if let Some(us) = env_usize("TUTTI_TCP_SPIN_US") {
            b.spin = Duration::from_micros(us as u64);
        }
        if let Some(us) = env_usize("TUTTI_TCP_YIELD_US") {
            b.yields = Duration::from_micros(us as u64);
        }
        b
    }

    /// [`new`](Self::new) with this process's measured [`socket_wake_latency`].
    pub fn for_local_ranks(local_ranks: usize) -> Self {
        Self::new(local_ranks, socket_wake_latency())
    }
}

/// The median time from a write on a TCP socket to the thread asleep reading its
/// other end, on another core, running again: half the round trip of a one-byte
/// ping-pong over loopback between two threads pinned to two different cores, both
/// sleeping in `read` (measured once per process, 32 round trips, ~1-3 ms). Two
/// threads sharing a core would measure a cheaper wake-up than ranks on different
/// cores get (no inter-processor interrupt; in a VM, no exit from an idle vCPU).
pub fn socket_wake_latency() -> Duration {
    static WAKE: OnceLock<Duration> = OnceLock::new();
    *WAKE.get_or_init(|| measure().unwrap_or(Duration::from_micros(50)))
}

fn measure() -> Option<Duration> {
    const ROUNDS: usize = 32;
    let l = TcpListener::bind(("127.0.0.1", 0)).ok()?;
    let mut a = TcpStream::connect(l.local_addr().ok()?).ok()?;
    let (mut b, _) = l.accept().ok()?;
    a.set_nodelay(true).ok()?;
    b.set_nodelay(true).ok()?;
    let cpus: Vec<usize> = sched_getaffinity(None)
        .map(|set| {
            (0..CpuSet::MAX_CPU)
                .filter(|&c| set.is_set(c))
                .take(2)
                .collect()
        })
        .unwrap_or_default();
    let pin = move |i: usize| {
        if let [_, _] = cpus[..] {
            let mut set = CpuSet::new();
            set.set(cpus[i]);
            // Best effort: unpinned, the figure is only lower.
            let _ = sched_setaffinity(None, &set);
        }
    };
    let pin2 = pin.clone();
    let partner = std::thread::Builder::new()
        .name("tutti-wake-probe".into())
        .spawn(move || {
            pin2(1);
            let mut x = [0u8; 1];
            for _ in 0..ROUNDS {
                if b.read_exact(&mut x).is_err() || b.write_all(&x).is_err() {
                    return;
                }
            }
        })
        .ok()?;
    let pinger = std::thread::Builder::new()
        .name("tutti-wake-probe".into())
        .spawn(move || {
            pin(0);
            let mut samples = Vec::with_capacity(ROUNDS);
            let mut x = [1u8; 1];
            for _ in 0..ROUNDS {
                let t = Instant::now();
                if a.write_all(&x).is_err() || a.read_exact(&mut x).is_err() {
                    break;
                }
                samples.push(t.elapsed() / 2);
            }
            samples
        })
        .ok()?;
    let mut samples = pinger.join().ok()?;
    let _ = partner.join();
    samples.sort();
    samples.get(samples.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_follow_the_wake_cost_and_ranks_per_core() {
        let wake = Duration::from_micros(30);
        let own = PollBudget::new(1, wake);
        assert_eq!(own.spin, Duration::from_micros(240));
        assert_eq!(own.yields, Duration::from_micros(60));
        let crowded = PollBudget::new(cores() * 2, wake);
        assert_eq!(crowded.spin, Duration::ZERO);
        assert_eq!(crowded.yields, OVERSUBSCRIBED_YIELD);
        // Clamped both ways.
        assert_eq!(
            PollBudget::new(1, Duration::from_nanos(10)).spin,
            Duration::from_micros(50)
        );
        assert_eq!(
            PollBudget::new(1, Duration::from_secs(1)).spin,
            Duration::from_millis(2)
        );
        let w = socket_wake_latency();
        assert!(w > Duration::ZERO && w < Duration::from_secs(1), "{w:?}");
    }
}
