//! The TCP link halves: [`TcpSend`] writes frames from the calling thread;
//! [`TcpRecv`] reads them from per-socket FIFOs that reader threads fill.

use std::io::{IoSlice, Read};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::Socket;

use super::frame::{FLAG_CRC, HEADER_LEN, Header};
use crate::link::{Injected, Message, RecvHalf, SendHalf};
use crate::shm::{Consumer, FifoConfig, Producer, local_queue};
use crate::wait::{AbortHandle, WaitPolicy};
use crate::{Deadline, Link, Result, TransportError};

/// Settings of TCP links.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// Connections per peer (`TUTTI_SOCKETS_PER_PEER`, default 2).
    pub sockets: usize,
    /// Largest message, in bytes (`TUTTI_TCP_CHUNK_BYTES`, default 512 KiB; a
    /// multiple of 4096).
    pub max_message: usize,
    /// Messages buffered per socket on the receiving side (default 4).
    pub queue: u32,
    /// CRC32 of every payload (`TUTTI_TCP_CHECKSUM`, default on).
    pub checksum: bool,
    /// Interface filter (`TUTTI_SOCKET_IFNAME`), `None` for the default choice.
    pub ifname: Option<String>,
    /// How the receiving thread waits for its reader threads.
    pub policy: WaitPolicy,
    /// Aborts every wait of links made with this config.
    pub abort: AbortHandle,
}

impl TcpConfig {
    /// Defaults, overridden by the environment variables named on each field.
    pub fn from_env(local_ranks: usize) -> Self {
        let parse = |n: &str| {
            std::env::var(n)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        TcpConfig {
            sockets: parse("TUTTI_SOCKETS_PER_PEER").unwrap_or(2).clamp(1, 64),
            max_message: parse("TUTTI_TCP_CHUNK_BYTES").map_or(512 << 10, |v| {
                v.next_multiple_of(4096).clamp(4096, 64 << 20)
            }),
            queue: 4,
            checksum: parse("TUTTI_TCP_CHECKSUM") != Some(0),
            ifname: std::env::var("TUTTI_SOCKET_IFNAME").ok(),
            // The reader threads need CPU time too: spin less than shared memory.
            policy: WaitPolicy {
                spins: 2000,
                yields: 50,
            }
            .min_with(WaitPolicy::for_local_ranks(local_ranks.max(1) * 2)),
            abort: AbortHandle::new(),
        }
    }
}

impl WaitPolicy {
    fn min_with(self, other: WaitPolicy) -> WaitPolicy {
        WaitPolicy {
            spins: self.spins.min(other.spins),
            yields: self.yields.min(other.yields),
        }
    }
}

/// Builds the two halves over connected sockets (socket `i` carries messages
/// `i, i + n, ...`).
pub(crate) fn make_link(sockets: Vec<Socket>, peer: &str, cfg: &TcpConfig) -> Result<Link> {
    let peer: Arc<str> = Arc::from(peer);
    let n = sockets.len() as u64;
    let fifo = FifoConfig {
        slots: cfg.queue.max(2),
        slot_size: cfg.max_message as u32,
        checksum: false,
    };
    let mut consumers = Vec::new();
    let mut readers = Vec::new();
    let failure = Arc::new(Mutex::new(None::<TransportError>));
    for (i, sock) in sockets.iter().enumerate() {
        let (producer, consumer) = local_queue(fifo, peer.clone(), cfg.policy, cfg.abort.clone())?;
        let rsock = sock
            .try_clone()
            .map_err(|e| TransportError::io(&peer, "cloning a socket for its reader thread", e))?;
        let reader = Reader {
            sock: rsock,
            fifo: producer,
            peer: peer.clone(),
            first_seq: i as u64,
            stride: n,
            max_len: cfg.max_message,
            failure: failure.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("tutti-tcp-rx-{i}"))
            .spawn(move || reader.run())
            .map_err(|e| TransportError::io(&peer, "spawning a reader thread", e))?;
        consumers.push(consumer);
        readers.push(handle);
    }
    let read_socks = sockets
        .iter()
        .map(|s| s.try_clone())
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| TransportError::io(&peer, "cloning sockets", e))?;
    let tx = TcpSend {
        socks: sockets,
        peer: peer.clone(),
        seq: 0,
        buf: vec![0; cfg.max_message],
        reserved: None,
        checksum: cfg.checksum,
        abort: cfg.abort.clone(),
        corrupt_next: false,
        drop_next: false,
    };
    let rx = TcpRecv {
        queues: consumers,
        socks: read_socks,
        readers,
        peer,
        index: 0,
        failure,
        max_message: cfg.max_message,
    };
    Ok(Link {
        tx: Box::new(tx),
        rx: Box::new(rx),
    })
}

/// Reads frames from one socket into a FIFO until the connection ends.
struct Reader {
    sock: Socket,
    fifo: Producer,
    peer: Arc<str>,
    first_seq: u64,
    stride: u64,
    max_len: usize,
    failure: Arc<Mutex<Option<TransportError>>>,
}

impl Reader {
    fn run(mut self) {
        if let Err(e) = self.pump() {
            let local_close = matches!(&e, TransportError::PeerGone { detail, .. } if detail == "the peer closed the link");
            if !local_close {
                tracing::debug!(peer = %self.peer, error = %e, "TCP reader stopped");
                let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
                f.get_or_insert(e);
            }
        }
        // Dropping the producer marks the FIFO closed and wakes the receiver.
    }

    fn pump(&mut self) -> Result<()> {
        let mut seq = self.first_seq;
        let mut hdr = [0u8; HEADER_LEN];
        loop {
            if !read_full(&mut self.sock, &mut hdr, &self.peer, true)? {
                return Err(TransportError::PeerGone {
                    peer: self.peer.to_string(),
                    op: "recv",
                    detail: "connection closed by the peer".into(),
                });
            }
            let h = Header::decode(&hdr, seq, self.max_len, &self.peer)?;
            let len = h.len as usize;
            let slot = self.fifo.reserve(len, Deadline::never())?;
            read_full(&mut self.sock, slot, &self.peer, false)?;
            if h.flags & FLAG_CRC != 0 && crc32fast::hash(slot) != h.crc {
                return Err(TransportError::Corrupt {
                    peer: self.peer.to_string(),
                    detail: format!("checksum mismatch in frame {seq} ({len} bytes)"),
                });
            }
            self.fifo.commit()?;
            seq += self.stride;
        }
    }
}

/// Fills `buf` from the socket. Returns `Ok(false)` on a clean EOF before the first
/// byte when `eof_ok`.
fn read_full(sock: &mut Socket, buf: &mut [u8], peer: &str, eof_ok: bool) -> Result<bool> {
    let mut off = 0;
    while off < buf.len() {
        match sock.read(&mut buf[off..]) {
            Ok(0) if off == 0 && eof_ok => return Ok(false),
            Ok(0) => {
                return Err(TransportError::PeerGone {
                    peer: peer.to_string(),
                    op: "recv",
                    detail: format!(
                        "connection closed mid-frame ({off} of {} bytes read)",
                        buf.len()
                    ),
                });
            }
            Ok(n) => off += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(gone_or_io(peer, "recv", e)),
        }
    }
    Ok(true)
}

fn gone_or_io(peer: &str, op: &'static str, e: std::io::Error) -> TransportError {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected => {
            TransportError::PeerGone {
                peer: peer.to_string(),
                op,
                detail: e.to_string(),
            }
        }
        _ => TransportError::io(peer, op, e),
    }
}

/// The sending half: frames written by the calling thread.
pub(crate) struct TcpSend {
    socks: Vec<Socket>,
    peer: Arc<str>,
    seq: u64,
    buf: Vec<u8>,
    reserved: Option<(usize, Deadline)>,
    checksum: bool,
    abort: AbortHandle,
    corrupt_next: bool,
    drop_next: bool,
}

impl TcpSend {
    fn write_frame(&mut self, len: usize, deadline: Deadline) -> Result<()> {
        let h = Header {
            flags: if self.checksum { FLAG_CRC } else { 0 },
            seq: self.seq,
            len: len as u32,
            crc: if self.checksum {
                crc32fast::hash(&self.buf[..len])
            } else {
                0
            },
        };
        if std::mem::take(&mut self.corrupt_next) && len > 0 {
            self.buf[0] ^= 0x5a;
        }
        let sock = &self.socks[(self.seq % self.socks.len() as u64) as usize];
        self.seq += 1;
        if std::mem::take(&mut self.drop_next) {
            return Ok(());
        }
        let head = h.encode();
        let mut parts = [&head[..], &self.buf[..len]];
        let total = HEADER_LEN + len;
        let mut sent = 0;
        while sent < total {
            let iov: Vec<IoSlice<'_>> = parts
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| IoSlice::new(p))
                .collect();
            match sock.send_vectored_with_flags(&iov, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) {
                Ok(n) => {
                    sent += n;
                    advance(&mut parts, n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.wait_writable(sock, deadline)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(gone_or_io(&self.peer, "send", e)),
            }
        }
        Ok(())
    }

    fn wait_writable(&self, sock: &Socket, deadline: Deadline) -> Result<()> {
        use std::os::fd::AsFd;
        if self.abort.is_aborted() {
            return Err(TransportError::Aborted {
                peer: self.peer.to_string(),
                op: "send",
            });
        }
        if deadline.expired() {
            return Err(TransportError::Timeout {
                peer: self.peer.to_string(),
                op: "send (socket buffer full)",
                waited: deadline.waited(),
            });
        }
        let nap = deadline.cap(Duration::from_millis(10));
        let ts = rustix::time::Timespec {
            tv_sec: nap.as_secs() as i64,
            tv_nsec: i64::from(nap.subsec_nanos()),
        };
        let fd = sock.as_fd();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::OUT,
        )];
        let _ = rustix::event::poll(&mut fds, Some(&ts));
        Ok(())
    }
}

/// Drops the first `n` bytes of a two-part iovec.
fn advance(parts: &mut [&[u8]; 2], mut n: usize) {
    for p in parts.iter_mut() {
        let k = n.min(p.len());
        *p = &p[k..];
        n -= k;
    }
}

impl SendHalf for TcpSend {
    fn peer(&self) -> &str {
        &self.peer
    }

    fn max_message(&self) -> usize {
        self.buf.len()
    }

    fn reserve(&mut self, len: usize, deadline: Deadline) -> Result<&mut [u8]> {
        if len > self.buf.len() {
            return Err(TransportError::InvalidArgument(format!(
                "message of {len} bytes exceeds the link's maximum {} (peer {})",
                self.buf.len(),
                self.peer
            )));
        }
        self.reserved = Some((len, deadline));
        Ok(&mut self.buf[..len])
    }

    fn commit(&mut self) -> Result<()> {
        let Some((len, deadline)) = self.reserved.take() else {
            return Err(TransportError::InvalidArgument(format!(
                "commit without a reserved message (peer {})",
                self.peer
            )));
        };
        self.write_frame(len, deadline)
    }

    fn inject(&mut self, fault: Injected) -> bool {
        match fault {
            Injected::CorruptNext => self.corrupt_next = true,
            Injected::DropNext => self.drop_next = true,
            Injected::Cut => {
                for s in &self.socks {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
        true
    }
}

impl Drop for TcpSend {
    fn drop(&mut self) {
        for s in &self.socks {
            let _ = s.shutdown(Shutdown::Write);
        }
    }
}

/// The receiving half: messages in order from the per-socket FIFOs.
pub(crate) struct TcpRecv {
    queues: Vec<Consumer>,
    socks: Vec<Socket>,
    readers: Vec<JoinHandle<()>>,
    peer: Arc<str>,
    index: u64,
    failure: Arc<Mutex<Option<TransportError>>>,
    max_message: usize,
}

fn take_failure(failure: &Mutex<Option<TransportError>>) -> Option<TransportError> {
    failure.lock().unwrap_or_else(|p| p.into_inner()).take()
}

impl RecvHalf for TcpRecv {
    fn peer(&self) -> &str {
        &self.peer
    }

    fn max_message(&self) -> usize {
        self.max_message
    }

    fn next(&mut self, deadline: Deadline) -> Result<Message<'_>> {
        let q = (self.index % self.queues.len() as u64) as usize;
        // A closed queue means its reader stopped: report why.
        let failed = match self.queues[q].next(deadline) {
            Ok(_) => None,
            Err(TransportError::PeerGone { detail, .. })
                if detail == "the peer closed the link" =>
            {
                Some(
                    take_failure(&self.failure).unwrap_or_else(|| TransportError::PeerGone {
                        peer: self.peer.to_string(),
                        op: "recv",
                        detail: "connection closed".into(),
                    }),
                )
            }
            Err(e) => Some(e),
        };
        match failed {
            Some(e) => Err(e),
            None => self.queues[q].next(deadline),
        }
    }

    fn release(&mut self) -> Result<()> {
        let q = (self.index % self.queues.len() as u64) as usize;
        self.queues[q].release()?;
        self.index += 1;
        Ok(())
    }
}

impl Drop for TcpRecv {
    fn drop(&mut self) {
        for s in &self.socks {
            let _ = s.shutdown(Shutdown::Read);
        }
        // Dropping the consumers wakes readers blocked on a full queue.
        self.queues.clear();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}
