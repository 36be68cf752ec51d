//! Connections between workers: one TCP connection per (caller, callee) pair,
//! opened by the caller on its first request; the callee answers on it.
//!
//! A lost connection fails every call pending on it at once (a killed worker's
//! sockets close with it); TCP keepalive and `TCP_USER_TIMEOUT` notice a vanished
//! host within seconds.

use std::io::{self, BufReader};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

use super::{Agent, Failure, Pending, lock};
use crate::Error;
use crate::wire::{Frame, ReadError, VERSION, encode_header, read_frame, write_frame};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// One end of a connection.
pub(crate) struct Conn {
    pub id: u64,
    pub peer: usize,
    writer: Mutex<TcpStream>,
    sock: TcpStream,
    closed: AtomicBool,
}

impl Conn {
    fn new(peer: usize, stream: TcpStream) -> io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            peer,
            sock: stream.try_clone()?,
            writer: Mutex::new(stream),
            closed: AtomicBool::new(false),
        }))
    }

    pub(crate) fn write(&self, header: &[u8], body: &[u8]) -> io::Result<()> {
        let mut w = lock(&self.writer);
        write_frame(&mut *w, header, body)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// Why a connection could not be opened.
pub(crate) struct ConnectError {
    addr: String,
    reason: String,
}

impl ConnectError {
    pub(crate) fn into_error(self, what: &str, to: String) -> Error {
        Error::Unreachable {
            what: what.to_string(),
            to,
            addr: self.addr,
            reason: self.reason,
        }
    }
}

fn tune(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let sock = SockRef::from(s);
    let ka = TcpKeepalive::new()
        .with_time(Duration::from_secs(2))
        .with_interval(Duration::from_secs(1))
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&ka);
    let _ = sock.set_tcp_user_timeout(Some(Duration::from_secs(10)));
}

impl Agent {
    /// The connection to `to`, opened (with the handshake) if there is none.
    pub(crate) fn connect(self: &Arc<Self>, to: usize) -> Result<Arc<Conn>, ConnectError> {
        let mut slot = lock(&self.peers[to]);
        if let Some(c) = slot.as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let addr = self.addrs[to].clone();
        let err = |reason: String| ConnectError {
            addr: addr.clone(),
            reason,
        };
        let sa = addr
            .to_socket_addrs()
            .map_err(|e| err(format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| err("resolves to no address".into()))?;
        let stream =
            TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT).map_err(|e| err(e.to_string()))?;
        tune(&stream);
        let hello = encode_header(&Frame::Hello {
            version: VERSION,
            from: self.me as u32,
            secret: self.secrets[to],
        });
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| err(e.to_string()))?);
        write_frame(&mut &stream, &hello, &[]).map_err(|e| err(format!("handshake: {e}")))?;
        let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        match read_frame(&mut reader, 0) {
            Ok((Frame::HelloOk, _)) => {}
            Ok((Frame::HelloReject { reason }, _)) => {
                return Err(err(format!("refused the connection: {reason}")));
            }
            Ok((other, _)) => return Err(err(format!("handshake: unexpected {other:?}"))),
            Err(e) => return Err(err(format!("handshake: {e}"))),
        }
        let _ = stream.set_read_timeout(None);
        let conn = Conn::new(to, stream).map_err(|e| err(e.to_string()))?;
        let (agent, c) = (self.clone(), conn.clone());
        self.spawn_thread(format!("tutti-rpc-c{to}"), move || {
            agent.client_reader(&c, reader)
        })
        .map_err(|e| err(format!("cannot start a reader thread: {e}")))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Reads the replies on a connection this worker opened.
    fn client_reader(self: &Arc<Self>, conn: &Arc<Conn>, mut r: BufReader<TcpStream>) {
        let reason = loop {
            match read_frame(&mut r, self.max_message) {
                Ok((Frame::Response { id, result }, body)) => {
                    self.stats.recv.fetch_add(1, Ordering::SeqCst);
                    self.on_response(conn.peer, id, result, body);
                }
                Ok((other, _)) => break format!("protocol error: unexpected {other:?}"),
                Err(ReadError::Closed) => break "closed by the peer".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        self.conn_lost(conn, &reason);
    }

    /// Fails every call pending on `conn` and forgets it.
    pub(crate) fn conn_lost(self: &Arc<Self>, conn: &Arc<Conn>, reason: &str) {
        let failed: Vec<Pending> = {
            let mut calls = lock(&self.calls);
            conn.closed.store(true, Ordering::SeqCst);
            let ids: Vec<u64> = calls
                .map
                .iter()
                .filter(|(_, p)| p.conn == Some(conn.id))
                .map(|(&id, _)| id)
                .collect();
            ids.into_iter().filter_map(|id| calls.take(id)).collect()
        };
        conn.close();
        {
            let mut slot = lock(&self.peers[conn.peer]);
            if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
                *slot = None;
            }
        }
        let peer = conn.peer;
        let stopped = self.is_stopped();
        let left = self.left[peer].load(Ordering::SeqCst);
        if !failed.is_empty() && !stopped {
            tracing::warn!(
                peer = %self.label(peer),
                reason,
                calls = failed.len(),
                "connection lost with calls pending"
            );
        }
        for p in failed {
            let what = p.what;
            let error = if stopped {
                Error::ShutDown {
                    what,
                    worker: self.label(self.me),
                }
            } else if left {
                Error::WorkerShutDown {
                    what,
                    to: self.label(peer),
                }
            } else {
                Error::ConnectionLost {
                    what,
                    to: self.label(peer),
                    reason: reason.to_string(),
                }
            };
            (p.done)(Err(Failure {
                error,
                maybe_delivered: true,
            }));
        }
    }

    /// Accepts connections until the agent stops.
    pub(crate) fn listen(self: &Arc<Self>, listener: TcpListener) {
        for stream in listener.incoming() {
            if self.is_stopped() {
                return;
            }
            match stream {
                Ok(s) => {
                    let agent = self.clone();
                    if let Err(e) =
                        self.spawn_thread("tutti-rpc-s".into(), move || agent.serve_conn(s))
                    {
                        tracing::warn!("cannot start a connection thread: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Serves one incoming connection: handshake, then requests until it closes.
    fn serve_conn(self: &Arc<Self>, s: TcpStream) {
        if self.is_stopped() {
            return;
        }
        tune(&s);
        let _ = s.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        let Ok(rs) = s.try_clone() else { return };
        let mut r = BufReader::new(rs);
        let peer_addr = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let from = match read_frame(&mut r, 0) {
            Ok((
                Frame::Hello {
                    version,
                    from,
                    secret,
                },
                _,
            )) => {
                let reject = if version != VERSION {
                    Some(format!(
                        "protocol version {version}, this worker speaks {VERSION}"
                    ))
                } else if from as usize >= self.workers.len() {
                    Some(format!(
                        "rank {from} is not in this job of {} workers",
                        self.workers.len()
                    ))
                } else if secret != self.my_secret {
                    Some("wrong secret (not a worker of this job)".to_string())
                } else {
                    None
                };
                if let Some(reason) = reject {
                    tracing::warn!(%peer_addr, %reason, "refused an RPC connection");
                    let _ =
                        write_frame(&mut &s, &encode_header(&Frame::HelloReject { reason }), &[]);
                    return;
                }
                from as usize
            }
            Ok((other, _)) => {
                tracing::warn!(%peer_addr, "RPC connection without a handshake: {other:?}");
                return;
            }
            Err(e) => {
                tracing::debug!(%peer_addr, "RPC handshake failed: {e}");
                return;
            }
        };
        let _ = s.set_read_timeout(None);
        let Ok(conn) = Conn::new(from, s) else { return };
        if conn.write(&encode_header(&Frame::HelloOk), &[]).is_err() {
            return;
        }
        lock(&self.server_conns).insert(conn.id, conn.clone());
        if self.is_stopped() {
            conn.close();
        }
        loop {
            match read_frame(&mut r, self.max_message) {
                Ok((Frame::Request { id, kind, forks }, body)) => {
                    self.stats.recv.fetch_add(1, Ordering::SeqCst);
                    self.on_request(
                        super::serve::Source::Remote(conn.clone()),
                        from,
                        id,
                        kind,
                        forks,
                        body,
                    );
                }
                Ok((other, _)) => {
                    tracing::warn!(peer = %self.label(from), "RPC protocol error: unexpected {other:?}; closing");
                    break;
                }
                Err(ReadError::Closed) => break,
                Err(e) => {
                    if !self.is_stopped() {
                        tracing::debug!(peer = %self.label(from), "RPC connection ended: {e}");
                    }
                    break;
                }
            }
        }
        lock(&self.server_conns).remove(&conn.id);
        conn.close();
    }
}
