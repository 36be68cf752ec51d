//! [`TcpConfig`]: the settings of TCP links, from the environment.

use std::time::Duration;

use crate::wait::{AbortHandle, cores};

/// Settings of TCP links.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// Connections per peer (`TUTTI_SOCKETS_PER_PEER`, default 2). Message `i`
    /// travels on socket `i % sockets`.
    pub sockets: usize,
    /// Largest message, in bytes (`TUTTI_TCP_CHUNK_BYTES`, default 512 KiB; a
    /// multiple of 4096).
    pub max_message: usize,
    /// Messages buffered per socket on the receiving side (default 4): how far a
    /// sender may run ahead of a receiver that is not in a call yet.
    pub queue: u32,
    /// CRC32C (SSE4.2 `crc32` where the CPU has it) of every payload, checked by the
    /// receiver (`TUTTI_TCP_CHECKSUM=1`; default off: TCP's own checksum covers the
    /// wire, as NCCL, Gloo and MPI rely on; bench/RESULTS.md has the measured cost).
    pub checksum: bool,
    /// Interface filter (`TUTTI_SOCKET_IFNAME`), `None` for the default choice.
    pub ifname: Option<String>,
    /// How a waiting thread polls its sockets before it sleeps in `poll`.
    pub wait: PollBudget,
    /// Congestion control of the link's sockets (`TUTTI_TCP_CONGESTION`).
    pub congestion: Congestion,
    /// Aborts every wait of links made with this config.
    pub abort: AbortHandle,
}

/// How long a thread waiting for a TCP link polls its sockets before it sleeps:
/// first `spin` of back-to-back non-blocking reads, then `yields` of reads with a
/// `sched_yield` between them, then `poll(2)` (woken by the kernel when data,
/// room or a hang-up arrives). Budgets are times, not iteration counts, so that
/// they mean the same on every CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollBudget {
    /// Busy-polling time.
    pub spin: Duration,
    /// Polling time with a yield between attempts.
    pub yields: Duration,
}

impl PollBudget {
    /// The budget for `local_ranks` ranks sharing this host's cores:
    /// `TUTTI_TCP_SPIN_US` / `TUTTI_TCP_YIELD_US` override the defaults.
    ///
    /// With a core per rank, a waiter busy-polls: waking a thread asleep in `poll`
    /// costs ~30 us per hop on the VMs this was measured on, where a message takes
    /// a few. With more ranks than cores a spinning waiter would steal the core its
    /// peer needs, so it only yields (the peer likely runs next on this core) before
    /// sleeping.
    pub fn for_local_ranks(local_ranks: usize) -> Self {
        let mut b = if local_ranks.max(1) <= cores() {
            PollBudget {
                spin: Duration::from_micros(DEFAULT_SPIN_US),
                yields: Duration::from_micros(DEFAULT_YIELD_US),
            }
        } else {
            PollBudget {
                spin: Duration::ZERO,
                yields: Duration::from_micros(OVERSUBSCRIBED_YIELD_US),
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
}

/// The congestion control algorithm (`TCP_CONGESTION`) of a link's sockets.
///
/// `TUTTI_TCP_CONGESTION`: unset or `auto` for [`Congestion::Auto`], `system` for
/// [`Congestion::System`], any other value names the algorithm for every link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Congestion {
    /// `reno` for links whose peer is on this host (loopback or one of this host's
    /// addresses), the system's default for the others. A host-local connection has
    /// no bottleneck to probe or pace for; a paced algorithm (`bbr`, a common system
    /// default) paces it with timers all the same and caps loopback well below what
    /// the CPU can copy (bench/RESULTS.md measures it). `reno` is the algorithm every
    /// kernel allows unprivileged sockets to pick.
    Auto,
    /// The system's default (`net.ipv4.tcp_congestion_control`) everywhere.
    System,
    /// This algorithm on every link (it must be in
    /// `net.ipv4.tcp_allowed_congestion_control`, or the process privileged).
    Named(String),
}

impl Congestion {
    fn from_env() -> Congestion {
        match std::env::var("TUTTI_TCP_CONGESTION") {
            Ok(v) if v.trim() == "system" => Congestion::System,
            Ok(v) if !v.trim().is_empty() && v.trim() != "auto" => {
                Congestion::Named(v.trim().to_string())
            }
            _ => Congestion::Auto,
        }
    }
}

/// Busy-polling budget with a core per rank, in microseconds.
const DEFAULT_SPIN_US: u64 = 200;
/// Yield-polling budget after spinning, with a core per rank.
const DEFAULT_YIELD_US: u64 = 50;
/// Yield-polling budget when ranks outnumber cores.
const OVERSUBSCRIBED_YIELD_US: u64 = 50;

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.trim().parse().ok()
}

impl TcpConfig {
    /// Defaults, overridden by the environment variables named on each field.
    /// `local_ranks` is the number of ranks on this host (it sets the polling
    /// budget).
    pub fn from_env(local_ranks: usize) -> Self {
        TcpConfig {
            sockets: env_usize("TUTTI_SOCKETS_PER_PEER")
                .unwrap_or(2)
                .clamp(1, 64),
            max_message: env_usize("TUTTI_TCP_CHUNK_BYTES").map_or(512 << 10, |v| {
                v.next_multiple_of(4096).clamp(4096, 64 << 20)
            }),
            queue: 4,
            checksum: env_usize("TUTTI_TCP_CHECKSUM").is_some_and(|v| v != 0),
            ifname: std::env::var("TUTTI_SOCKET_IFNAME").ok(),
            wait: PollBudget::for_local_ranks(local_ranks),
            congestion: Congestion::from_env(),
            abort: AbortHandle::new(),
        }
    }
}
