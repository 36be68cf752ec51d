//! TCP links: for ranks on other hosts, and on this one when shared memory is off.
//!
//! Each peer pair shares `sockets` connections (`TUTTI_SOCKETS_PER_PEER`, default 2);
//! message `i` travels on socket `i % sockets`, so large transfers are striped. Every
//! message is framed (magic, sequence number, length, and with `TUTTI_TCP_CHECKSUM=1`
//! the CRC32 of the payload). Sockets use TCP_NODELAY and are non-blocking.
//!
//! No thread per socket: the rank's own thread moves the bytes. A sender writes its
//! frame with one `sendmsg` (large messages straight from the caller's memory); a
//! receiver reads the socket its next message arrives on, busy-polling for a time
//! budget, then yielding, then sleeping in `poll(2)` ([`PollBudget`], chosen from the
//! ranks per core). While a thread waits, on a full socket buffer or before it
//! sleeps, it reads every socket of its endpoint into those links' slots
//! ([`TcpConfig::queue`] per socket), so that ranks sending to each other never block
//! each other forever. A frame after a large one is read with one `recv` straight
//! into its slot; small frames come through a small stage, many per `recv`
//! (`inbound`).
//!
//! The interface is picked by `TUTTI_SOCKET_IFNAME` (NCCL's syntax: comma-separated
//! prefixes, `^` to exclude, `=` for exact names). Connecting retries with
//! exponential backoff until the deadline. A closed or reset connection is a
//! [`TransportError::PeerGone`](crate::TransportError::PeerGone) naming the peer.

mod budget;
mod config;
mod connect;
mod frame;
mod iface;
mod inbound;
mod link;
mod progress;
mod recv;
mod send;

pub use budget::{OVERSUBSCRIBED_YIELD, PollBudget, socket_wake_latency};
pub use config::{Congestion, TcpConfig};
pub use connect::TcpEndpoint;
pub use iface::{interface_addresses, select_address};
