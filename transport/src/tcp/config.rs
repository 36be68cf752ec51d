//! [`TcpConfig`]: the settings of TCP links, from the environment.

pub use super::budget::PollBudget;
use crate::wait::AbortHandle;

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
    /// CRC32 of every payload (PCLMUL-folded, see `frame::checksum`), checked by the
    /// receiver (`TUTTI_TCP_CHECKSUM=1`; default off: TCP's own checksum covers the
    /// wire, as NCCL, Gloo and MPI rely on; bench/RESULTS.md has the measured cost).
    pub checksum: bool,
    /// Interface filter (`TUTTI_SOCKET_IFNAME`), `None` for the default choice.
    pub ifname: Option<String>,
    /// How a waiting thread polls its sockets before it sleeps in `poll`.
    pub wait: PollBudget,
    /// Whether a thread waiting on one link also reads the endpoint's other links
    /// (default true: what keeps collectives where every rank sends first free of
    /// deadlock without reader threads). False for links that each have a reader
    /// thread of their own (the point-to-point bridges): there a thread reading
    /// another link's socket would consume the data whose arrival that link's
    /// reader sleeps on, which then wakes only after its nap.
    pub drain_others: bool,
    /// Congestion control of the link's sockets (`TUTTI_TCP_CONGESTION`).
    pub congestion: Congestion,
    /// Aborts every wait of links made with this config.
    pub abort: AbortHandle,
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

pub(crate) fn env_usize(name: &str) -> Option<usize> {
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
            drain_others: true,
            congestion: Congestion::from_env(),
            abort: AbortHandle::new(),
        }
    }
}
