//! TCP links: for ranks on other hosts, and on this one when shared memory is off.
//!
//! Each peer pair shares `sockets` connections (`TUTTI_SOCKETS_PER_PEER`, default 2);
//! message `i` travels on socket `i % sockets`, so large transfers are striped. Every
//! message is framed (magic, sequence number, length, CRC32 of the payload unless
//! `TUTTI_TCP_CHECKSUM=0`). Sends are written by the calling thread; a reader thread
//! per socket drains incoming frames into a bounded in-memory FIFO, so that two ranks
//! sending to each other never block on full socket buffers. Sockets use
//! TCP_NODELAY. The interface is picked by `TUTTI_SOCKET_IFNAME` (NCCL's syntax:
//! comma-separated prefixes, `^` to exclude, `=` for exact names). Connecting retries
//! with exponential backoff until the deadline. A closed or reset connection is a
//! [`TransportError::PeerGone`] naming the peer.

mod connect;
mod frame;
mod iface;
mod link;

pub use connect::TcpEndpoint;
pub use iface::{interface_addresses, select_address};
pub use link::TcpConfig;
