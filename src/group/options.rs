//! [`GroupOptions`]: how a process group connects and runs its operations.

use std::str::FromStr;
use std::time::Duration;

use tutti_transport::registry::{self, Selection};

use crate::{Error, Result};

/// The default timeout of every operation: 30 minutes, as torch.distributed.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Which transports a group may use (`TUTTI_TRANSPORT`): a name of the transport
/// registry ([`tutti_transport::registry::TRANSPORTS`]), or `auto` for all of them
/// in priority order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportChoice {
    /// Every transport in priority order: the window and shared-memory links
    /// between ranks on one host (in-process FIFOs between threads of one
    /// process), RDMA between hosts whose ranks both have a device (built with the
    /// `rdma` feature), TCP otherwise.
    Auto,
    /// Shared memory only: the window and shm links (every rank must be on this
    /// host).
    Shm,
    /// TCP for every pair, also on one host (no window, so every byte crosses TCP).
    Tcp,
    /// RDMA verbs for every pair (built with the `rdma` feature, every rank with a
    /// device; no window).
    Rdma,
    /// Any other registered transport, by its registry name.
    Named(&'static str),
}

impl TransportChoice {
    /// The registry name (`auto` for [`TransportChoice::Auto`]).
    pub fn name(self) -> &'static str {
        match self {
            TransportChoice::Auto => "auto",
            TransportChoice::Shm => "shm",
            TransportChoice::Tcp => "tcp",
            TransportChoice::Rdma => "rdma",
            TransportChoice::Named(n) => n,
        }
    }

    /// The registry's selection for this choice: an error names a transport that
    /// is not registered (e.g. `rdma` in a build without the `rdma` feature).
    pub fn selection(self) -> Result<Selection> {
        Selection::by_name(self.name()).map_err(|e| Error::InvalidArgument(e.to_string()))
    }
}

impl FromStr for TransportChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let name = s.trim().to_ascii_lowercase();
        match name.as_str() {
            "" | "auto" => return Ok(TransportChoice::Auto),
            "shm" | "inproc" => return Ok(TransportChoice::Shm),
            "tcp" | "socket" => return Ok(TransportChoice::Tcp),
            "rdma" | "ib" | "verbs" => return Ok(TransportChoice::Rdma),
            _ => {}
        }
        match registry::find(&name) {
            Some(t) => Ok(TransportChoice::Named(t.name())),
            None => Err(Error::InvalidArgument(format!(
                "unknown transport {name:?} (TUTTI_TRANSPORT expects auto, shm, tcp, rdma or a registered transport: {})",
                registry::names().join(", ")
            ))),
        }
    }
}

/// Which collective algorithm to use.
///
/// `OneShot` and `TwoShot` run on the same-host windows (every rank reads its peers'
/// windows); `Ring`, `Tree` and `Direct` run over links (shared-memory FIFOs on one
/// host, TCP between hosts). Forcing a link algorithm on one host connects links
/// between the local ranks too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    /// Ring (chains for broadcast and reduce), over links.
    Ring,
    /// Double binary tree (all_reduce), binary tree (broadcast, reduce), over links.
    Tree,
    /// One hop over links: every rank sends its buffer to every other and reduces
    /// locally in rank order (all_reduce of small buffers).
    Direct,
    /// Windows, one synchronisation per round: every rank reduces every window.
    OneShot,
    /// Windows, reduce-scatter by slices then all-gather of the reduced slices.
    TwoShot,
    /// Recursive halving-doubling (Rabenseifner's) all_reduce over links, for a
    /// power-of-two number of ranks: `2 log2 n` exchanges between partners instead of
    /// the ring's `2 (n - 1)` steps, the same bytes. Other collectives run the ring.
    HalvingDoubling,
    /// Hierarchical, for ranks on several hosts: the window inside each host, the
    /// links between one leader rank per host (all_reduce: reduce inside each host,
    /// all_reduce between the leaders, broadcast inside each host).
    Hier,
}

impl Algo {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Ring => "ring",
            Algo::Tree => "tree",
            Algo::Direct => "direct",
            Algo::OneShot => "oneshot",
            Algo::TwoShot => "twoshot",
            Algo::HalvingDoubling => "halving_doubling",
            Algo::Hier => "hier",
        }
    }

    /// True for the algorithms that run over links (not windows).
    pub fn uses_links(self) -> bool {
        matches!(
            self,
            Algo::Ring | Algo::Tree | Algo::Direct | Algo::HalvingDoubling
        )
    }
}

impl FromStr for Algo {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ring" => Ok(Algo::Ring),
            "tree" => Ok(Algo::Tree),
            "direct" => Ok(Algo::Direct),
            "oneshot" | "one_shot" | "one-shot" => Ok(Algo::OneShot),
            "twoshot" | "two_shot" | "two-shot" => Ok(Algo::TwoShot),
            "hier" | "hierarchical" => Ok(Algo::Hier),
            "hd" | "halving_doubling" | "halving-doubling" | "rabenseifner" => {
                Ok(Algo::HalvingDoubling)
            }
            other => Err(Error::InvalidArgument(format!(
                "unknown algorithm {other:?} (TUTTI_ALGO expects oneshot, twoshot, ring, tree, direct, hd or hier)"
            ))),
        }
    }
}

/// Options of a process group.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupOptions {
    /// Default timeout of every operation; zero means none.
    pub timeout: Duration,
    /// Transport selection (`TUTTI_TRANSPORT`).
    pub transport: TransportChoice,
    /// Forced algorithm (`TUTTI_ALGO`); `None` lets the tuner pick.
    pub algo: Option<Algo>,
    /// Forced pipeline chunk in bytes (`TUTTI_CHUNK_BYTES`).
    pub chunk: Option<usize>,
    /// Compare every op's arguments across ranks first (`TUTTI_CHECK=1`).
    pub check: bool,
    /// Time allowed for connecting the group's links.
    pub connect_timeout: Duration,
    /// Bytes of each of the two buffers of the same-host window
    /// (`TUTTI_WINDOW_BYTES`, a multiple of 4096; `None`: the default, 512 KiB). Every
    /// rank of a host must use the same value.
    pub window_bytes: Option<usize>,
    /// Ring all_reduce sends the next round's own chunk before it waits for the
    /// round's last message, so that the link carries data while its rank waits
    /// (`TUTTI_RING_AHEAD=0|1`, default on; bench/RESULTS.md, "ring lookahead", has
    /// the TCP figures). Only over links that hold two messages (see
    /// `tutti_transport::SendHalf::depth`).
    pub ring_ahead: bool,
    /// Window all_reduces of at least this many bytes run two-shot, smaller ones
    /// one-shot (`TUTTI_TWO_SHOT_FROM`; `None`: the host probe's measurement). The
    /// ranks of a host agree at group creation on the value of the host's first
    /// member, so a rank that measured or was told otherwise still runs the same
    /// algorithm as its peers.
    pub two_shot_from: Option<usize>,
    /// Which local ranks' inputs two-shot window all_reduces read where they lie,
    /// instead of copies of them in the windows (`TUTTI_WINDOW_DIRECT`). Used only
    /// when every rank of the host can and wants to (agreed at group creation).
    pub window_direct: DirectReads,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            timeout: DEFAULT_OP_TIMEOUT,
            transport: TransportChoice::Auto,
            algo: None,
            chunk: None,
            check: false,
            connect_timeout: Duration::from_secs(300),
            window_bytes: None,
            ring_ahead: true,
            two_shot_from: None,
            window_direct: DirectReads::InProcess,
        }
    }
}

impl GroupOptions {
    /// Defaults overridden by `TUTTI_TRANSPORT`, `TUTTI_ALGO`, `TUTTI_CHUNK_BYTES`,
    /// `TUTTI_CHECK`, `TUTTI_TIMEOUT_SECS`, `TUTTI_WINDOW_BYTES`, `TUTTI_RING_AHEAD`,
    /// `TUTTI_TWO_SHOT_FROM` and `TUTTI_WINDOW_DIRECT`.
    /// A value that does not parse is an error naming the variable.
    pub fn from_env() -> Result<Self> {
        let mut o = GroupOptions::default();
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        if let Some(v) = var("TUTTI_TRANSPORT") {
            o.transport = v.parse()?;
        }
        if let Some(v) = var("TUTTI_ALGO") {
            o.algo = Some(v.parse()?);
        }
        if let Some(v) = var("TUTTI_CHUNK_BYTES") {
            let c: usize = v.trim().parse().map_err(|_| bad("TUTTI_CHUNK_BYTES", &v))?;
            if c < 16 || !c.is_multiple_of(16) {
                return Err(Error::InvalidArgument(format!(
                    "TUTTI_CHUNK_BYTES={c} must be a positive multiple of 16"
                )));
            }
            o.chunk = Some(c);
        }
        if let Some(v) = var("TUTTI_WINDOW_BYTES") {
            let b: usize = v
                .trim()
                .parse()
                .map_err(|_| bad("TUTTI_WINDOW_BYTES", &v))?;
            if b == 0 || !b.is_multiple_of(4096) {
                return Err(Error::InvalidArgument(format!(
                    "TUTTI_WINDOW_BYTES={b} must be a positive multiple of 4096"
                )));
            }
            o.window_bytes = Some(b);
        }
        if let Some(v) = var("TUTTI_RING_AHEAD") {
            o.ring_ahead = switch("TUTTI_RING_AHEAD", &v)?;
        }
        if let Some(v) = var("TUTTI_WINDOW_DIRECT") {
            o.window_direct = v.parse()?;
        }
        if let Some(v) = var("TUTTI_TWO_SHOT_FROM") {
            let b: usize = v
                .trim()
                .parse()
                .map_err(|_| bad("TUTTI_TWO_SHOT_FROM", &v))?;
            o.two_shot_from = Some(b);
        }
        if let Some(v) = var("TUTTI_CHECK") {
            o.check = !matches!(v.trim(), "0" | "false" | "no" | "off");
        }
        if let Some(v) = var("TUTTI_TIMEOUT_SECS") {
            let s: f64 = v
                .trim()
                .parse()
                .map_err(|_| bad("TUTTI_TIMEOUT_SECS", &v))?;
            if !(s >= 0.0 && s.is_finite()) {
                return Err(bad("TUTTI_TIMEOUT_SECS", &v));
            }
            o.timeout = Duration::from_secs_f64(s);
        }
        Ok(o)
    }
}

fn bad(name: &str, v: &str) -> Error {
    Error::InvalidArgument(format!("environment variable {name}={v:?} does not parse"))
}

/// An on/off variable's value.
fn switch(name: &str, v: &str) -> Result<bool> {
    match v.trim() {
        "0" | "false" | "no" | "off" => Ok(false),
        "1" | "true" | "yes" | "on" => Ok(true),
        _ => Err(bad(name, v)),
    }
}

/// Where two-shot window all_reduces read the other local ranks' inputs directly
/// ([`GroupOptions::window_direct`], `TUTTI_WINDOW_DIRECT=off|threads|all`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DirectReads {
    /// Never: every rank copies the slices the others reduce into its window.
    Off,
    /// Between threads of one process, where a peer's input is a plain address and
    /// reading it saves a copy (2 threads, Intel Xeon: 1 MiB 6.4 -> 9.4 GB/s busbw;
    /// bench/RESULTS.md). The default.
    #[default]
    InProcess,
    /// Also between processes, through `process_vm_readv` where the kernel allows it.
    /// That moves the copy into the kernel rather than saving it, plus a system call
    /// per 64 KiB: measured a little faster out of place at 256 KiB-1 MiB and slower
    /// in place, so it is not the default.
    All,
}

impl std::str::FromStr for DirectReads {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "0" | "off" | "no" | "false" => Ok(DirectReads::Off),
            "threads" | "in-process" | "inprocess" => Ok(DirectReads::InProcess),
            "1" | "all" | "on" | "yes" | "true" | "cma" => Ok(DirectReads::All),
            _ => Err(Error::InvalidArgument(format!(
                "TUTTI_WINDOW_DIRECT={s:?}: expected off, threads or all"
            ))),
        }
    }
}
