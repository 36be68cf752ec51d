//! Establishing TCP links: one listening endpoint per rank, addresses exchanged
//! through the [`Rendezvous`], the lower rank of each pair connecting.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use socket2::Socket;

use std::sync::Arc;

use super::config::{Congestion, TcpConfig};
use super::iface::{interface_addresses, select_address};
use super::link::make_link;
use super::progress::Engine;
use crate::{Deadline, Link, Rendezvous, Result, TransportError};

const HELLO_MAGIC: u32 = 0x4f4c_4854; // "THLO"
const HELLO_LEN: usize = 32;

/// A rank's TCP endpoint: its listening socket, and connections that arrived for
/// peers not yet asked for. The links it makes share one set of sockets that any of
/// them drains while it waits (see the module docs).
pub struct TcpEndpoint {
    listener: TcpListener,
    addr: SocketAddr,
    me: usize,
    prefix: String,
    cfg: TcpConfig,
    engine: Arc<Engine>,
    /// Accepted sockets by (peer rank, socket index).
    stash: HashMap<(usize, u32), TcpStream>,
}

impl TcpEndpoint {
    /// Listens on the selected interface (see [`select_address`]) on a free port.
    /// `prefix` must be unique per job and group; it is part of every handshake.
    pub fn bind(cfg: TcpConfig, me: usize, prefix: &str) -> Result<Self> {
        let ip = select_address(cfg.ifname.as_deref()).map_err(|detail| TransportError::Setup {
            peer: "(local)".into(),
            detail,
        })?;
        Self::bind_addr(cfg, me, prefix, ip)
    }

    /// Listens on `ip` on a free port.
    pub fn bind_addr(cfg: TcpConfig, me: usize, prefix: &str, ip: IpAddr) -> Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .map_err(|e| TransportError::io("(local)", format!("listening on {ip}"), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| TransportError::io("(local)", "configuring the listener", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| TransportError::io("(local)", "reading the listener address", e))?;
        tracing::debug!(%addr, rank = me, "TCP endpoint listening");
        let engine = Engine::new(cfg.wait, cfg.abort.clone());
        Ok(TcpEndpoint {
            listener,
            addr,
            me,
            prefix: prefix.to_string(),
            cfg,
            engine,
            stash: HashMap::new(),
        })
    }

    /// The address peers connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Publishes this endpoint's address for the peers.
    pub fn publish(&self, rdv: &dyn Rendezvous) -> Result<()> {
        rdv.publish(
            &key(&self.prefix, self.me),
            self.addr.to_string().as_bytes(),
        )
        .map_err(|detail| TransportError::Setup {
            peer: "(all)".into(),
            detail: format!("publishing the TCP address: {detail}"),
        })
    }

    /// Connects to `peer`: the lower rank connects `sockets` times to the higher
    /// rank's published address (retrying with backoff until the deadline), the
    /// higher rank accepts. Both ranks call this.
    pub fn connect(
        &mut self,
        rdv: &dyn Rendezvous,
        peer: usize,
        peer_name: &str,
        deadline: Deadline,
    ) -> Result<Link> {
        let n = self.cfg.sockets as u32;
        let mut socks = Vec::with_capacity(n as usize);
        if self.me < peer {
            let raw = rdv
                .lookup(&key(&self.prefix, peer), deadline)
                .map_err(|detail| TransportError::Setup {
                    peer: peer_name.to_string(),
                    detail: format!("waiting for the peer's TCP address: {detail}"),
                })?;
            let addr: SocketAddr =
                String::from_utf8_lossy(&raw)
                    .parse()
                    .map_err(|_| TransportError::Setup {
                        peer: peer_name.to_string(),
                        detail: format!(
                            "the peer published an invalid address {:?}",
                            String::from_utf8_lossy(&raw)
                        ),
                    })?;
            for i in 0..n {
                let mut s = connect_retry(addr, peer_name, deadline)?;
                self.hello(&mut s, peer, i, n, peer_name, deadline)?;
                socks.push(s);
            }
        } else {
            for i in 0..n {
                let s = self.accept_from(peer, i, n, peer_name, deadline)?;
                socks.push(s);
            }
        }
        let socks = socks
            .into_iter()
            .map(|s| {
                s.set_nodelay(true)
                    .map_err(|e| TransportError::io(peer_name, "setting TCP_NODELAY", e))?;
                s.set_read_timeout(None)
                    .map_err(|e| TransportError::io(peer_name, "configuring a socket", e))?;
                let sock = Socket::from(s);
                let ka = socket2::TcpKeepalive::new()
                    .with_time(Duration::from_secs(10))
                    .with_interval(Duration::from_secs(2))
                    .with_retries(5);
                let _ = sock.set_tcp_keepalive(&ka);
                set_congestion(&sock, &self.cfg.congestion, peer_name);
                Ok(sock)
            })
            .collect::<Result<Vec<_>>>()?;
        tracing::debug!(peer = peer_name, sockets = n, "TCP link up");
        make_link(socks, peer_name, &self.cfg, &self.engine)
    }

    fn hello(
        &self,
        s: &mut TcpStream,
        peer: usize,
        index: u32,
        count: u32,
        peer_name: &str,
        deadline: Deadline,
    ) -> Result<()> {
        let msg = Hello {
            from: self.me as u64,
            to: peer as u64,
            index,
            count,
            tag: tag(&self.prefix),
        };
        s.set_write_timeout(Some(
            deadline
                .cap(Duration::from_secs(30))
                .max(Duration::from_millis(1)),
        ))
        .and_then(|()| s.write_all(&msg.encode()))
        .map_err(|e| TransportError::io(peer_name, "sending the TCP handshake", e))?;
        let mut ack = [0u8; 1];
        s.set_read_timeout(Some(
            deadline
                .cap(Duration::from_secs(30))
                .max(Duration::from_millis(1)),
        ))
        .and_then(|()| s.read_exact(&mut ack))
        .map_err(|e| TransportError::Setup {
            peer: peer_name.to_string(),
            detail: format!("no handshake acknowledgement: {e}"),
        })?;
        if ack[0] != 1 {
            return Err(TransportError::Setup {
                peer: peer_name.to_string(),
                detail: "the peer refused the handshake (different job or group?)".into(),
            });
        }
        Ok(())
    }

    /// Accepts connections until socket `index` from `peer` is here.
    fn accept_from(
        &mut self,
        peer: usize,
        index: u32,
        count: u32,
        peer_name: &str,
        deadline: Deadline,
    ) -> Result<TcpStream> {
        loop {
            if let Some(s) = self.stash.remove(&(peer, index)) {
                return Ok(s);
            }
            match self.listener.accept() {
                Ok((mut s, from)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut buf = [0u8; HELLO_LEN];
                    let hello = s
                        .read_exact(&mut buf)
                        .ok()
                        .and_then(|()| Hello::decode(&buf));
                    let ok = hello.filter(|h| {
                        h.to == self.me as u64 && h.tag == u64::from(tag(&self.prefix) as u32)
                    });
                    let Some(h) = ok else {
                        tracing::warn!(%from, "refused a TCP connection with a bad handshake");
                        let _ = s.write_all(&[0]);
                        continue;
                    };
                    if h.count != count && h.from as usize == peer {
                        let _ = s.write_all(&[0]);
                        return Err(TransportError::Setup {
                            peer: peer_name.to_string(),
                            detail: format!(
                                "the peer uses {} sockets per peer, this rank {count}",
                                h.count
                            ),
                        });
                    }
                    s.write_all(&[1]).map_err(|e| {
                        TransportError::io(peer_name, "acknowledging the TCP handshake", e)
                    })?;
                    self.stash.insert((h.from as usize, h.index), s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if deadline.expired() {
                        return Err(TransportError::Timeout {
                            peer: peer_name.to_string(),
                            op: "TCP accept (waiting for the peer to connect)",
                            waited: deadline.waited(),
                        });
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                Err(e) => {
                    return Err(TransportError::io(
                        peer_name,
                        "accepting a TCP connection",
                        e,
                    ));
                }
            }
        }
    }
}

/// Connects with exponential backoff (1 ms doubling to 1 s) until the deadline.
fn connect_retry(addr: SocketAddr, peer_name: &str, deadline: Deadline) -> Result<TcpStream> {
    let mut backoff = Duration::from_millis(1);
    loop {
        let attempt = deadline
            .cap(Duration::from_secs(5))
            .max(Duration::from_millis(10));
        match TcpStream::connect_timeout(&addr, attempt) {
            Ok(s) => return Ok(s),
            Err(e) => {
                if deadline.expired() {
                    tracing::debug!(%addr, error = %e, "last connect attempt failed");
                    return Err(TransportError::Timeout {
                        peer: peer_name.to_string(),
                        op: "TCP connect",
                        waited: deadline.waited(),
                    });
                }
                tracing::trace!(%addr, error = %e, "connect failed, retrying");
                std::thread::sleep(deadline.cap(backoff));
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Applies the configured congestion control; a refusal (an algorithm the kernel
/// does not offer or allow) leaves the system's default and says so.
fn set_congestion(sock: &Socket, choice: &Congestion, peer_name: &str) {
    let name = match choice {
        Congestion::System => return,
        Congestion::Named(n) => n.as_str(),
        Congestion::Auto => {
            let local = sock
                .peer_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .is_some_and(|a| is_local(a.ip()));
            if !local {
                return;
            }
            "reno"
        }
    };
    if let Err(e) = sock.set_tcp_congestion(name.as_bytes()) {
        tracing::warn!(peer = peer_name, algorithm = name, error = %e, "could not set the TCP congestion control; keeping the system default");
    }
}

/// Whether `ip` is an address of this host (a connection to it never leaves it).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || interface_addresses().iter().any(|(_, a)| *a == ip)
}

fn key(prefix: &str, rank: usize) -> String {
    format!("{prefix}/tcp/{rank}")
}

/// A 64-bit tag of the job/group prefix, so that connections of another job or
/// group are refused.
fn tag(prefix: &str) -> u64 {
    // FNV-1a.
    prefix.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

struct Hello {
    from: u64,
    to: u64,
    index: u32,
    count: u32,
    tag: u64,
}

impl Hello {
    fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&HELLO_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.index.to_le_bytes());
        b[8..16].copy_from_slice(&self.from.to_le_bytes());
        b[16..24].copy_from_slice(&self.to.to_le_bytes());
        b[24..28].copy_from_slice(&self.count.to_le_bytes());
        b[28..32].copy_from_slice(&(self.tag as u32).to_le_bytes());
        b
    }

    fn decode(b: &[u8; HELLO_LEN]) -> Option<Hello> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| u64::from(u32_at(i)) | (u64::from(u32_at(i + 4)) << 32);
        (u32_at(0) == HELLO_MAGIC).then(|| Hello {
            index: u32_at(4),
            from: u64_at(8),
            to: u64_at(16),
            count: u32_at(24),
            tag: u64::from(u32_at(28)),
        })
    }
}
