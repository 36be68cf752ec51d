//! One blocking client connection to a [`TcpStoreServer`](super::TcpStoreServer):
//! connect with retry and backoff, handshake, request/reply.

use std::hash::BuildHasher;
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::protocol::{
    ErrorKind, LEN_PREFIX, MAX_FRAME, Request, Response, VERSION, encode_request, parse_response,
};
use crate::util::Deadline;
use crate::{Result, StoreError};

/// The longest single connect attempt or handshake before retrying.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(10);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A connected, authenticated client socket.
#[derive(Debug)]
pub(crate) struct Connection {
    reader: BufReader<TcpStream>,
    peer: String,
    out: Vec<u8>,
    body: Vec<u8>,
    /// The read timeout currently set on the socket.
    read_timeout: Option<Duration>,
}

/// Why one connect attempt failed.
enum AttemptError {
    /// Worth another try (refused, reset, server busy).
    Retry(io::Error),
    /// Final (wrong token, other protocol version).
    Fatal(StoreError),
}

impl Connection {
    /// Connects to `host:port` and presents `token`, retrying with exponential backoff
    /// (and jitter, so thousands of ranks do not retry in lockstep) until `timeout`
    /// (zero: forever). A refused token fails at once.
    pub(crate) fn connect(host: &str, port: u16, token: &[u8], timeout: Duration) -> Result<Self> {
        let peer = format!("{host}:{port}");
        let deadline = Deadline::after(timeout);
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let err = match Self::attempt(host, port, &peer, token, &deadline) {
                Ok(conn) => {
                    if attempts > 1 {
                        tracing::debug!(%peer, attempts, "store client: connected");
                    }
                    return Ok(conn);
                }
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Retry(e)) => e,
            };
            if deadline.expired() {
                return Err(StoreError::Io {
                    context: format!(
                        "connecting to store server {peer}: gave up after {:?} and {attempts} attempts",
                        deadline.elapsed()
                    ),
                    source: err,
                });
            }
            tracing::trace!(%peer, "store client: connect attempt failed, retrying: {err}");
            let mut pause = jitter(backoff);
            if let Some(left) = deadline.remaining() {
                pause = pause.min(left);
            }
            std::thread::sleep(pause);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn attempt(
        host: &str,
        port: u16,
        peer: &str,
        token: &[u8],
        deadline: &Deadline,
    ) -> std::result::Result<Self, AttemptError> {
        let limit = deadline.remaining().map_or(ATTEMPT_TIMEOUT, |left| {
            left.clamp(Duration::from_millis(1), ATTEMPT_TIMEOUT)
        });
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(AttemptError::Retry)?
            .collect();
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} resolved to no address"),
        );
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, limit) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or(AttemptError::Retry(last))?;
        stream.set_nodelay(true).map_err(AttemptError::Retry)?;
        let mut conn = Self {
            reader: BufReader::new(stream),
            peer: peer.to_string(),
            out: Vec::new(),
            body: Vec::new(),
            read_timeout: None,
        };
        conn.send(&Request::Hello {
            version: VERSION,
            token,
        })
        .map_err(AttemptError::Retry)?;
        let reply = conn.read_reply(Some(limit)).map_err(|e| match e {
            ReadError::Io(e) => AttemptError::Retry(e),
            ReadError::Protocol(m) => AttemptError::Fatal(StoreError::Protocol {
                peer: peer.to_string(),
                message: m,
            }),
        })?;
        match parse_response(reply) {
            Ok(Response::HelloOk) => Ok(conn),
            Ok(Response::Error {
                kind: ErrorKind::Auth,
                message,
            }) => Err(AttemptError::Fatal(StoreError::Auth {
                addr: peer.to_string(),
                message: message.to_string(),
            })),
            Ok(Response::Error { message, .. }) => Err(AttemptError::Fatal(StoreError::Protocol {
                peer: peer.to_string(),
                message: format!("handshake refused: {message}"),
            })),
            Ok(other) => Err(AttemptError::Fatal(StoreError::Protocol {
                peer: peer.to_string(),
                message: format!("unexpected reply to the handshake: {other:?}"),
            })),
            Err(e) => Err(AttemptError::Fatal(StoreError::Protocol {
                peer: peer.to_string(),
                message: e.0,
            })),
        }
    }

    /// The server's address as given.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Sends one request frame.
    pub(crate) fn send(&mut self, req: &Request<'_>) -> io::Result<()> {
        self.out.clear();
        encode_request(&mut self.out, req);
        let result = self.reader.get_mut().write_all(&self.out);
        if self.out.capacity() > 1 << 20 {
            self.out = Vec::new();
        }
        result
    }

    /// Reads one reply frame's body, waiting up to `timeout` (`None`: forever).
    pub(crate) fn read_reply(
        &mut self,
        timeout: Option<Duration>,
    ) -> std::result::Result<&[u8], ReadError> {
        if self.read_timeout != timeout {
            self.reader
                .get_ref()
                .set_read_timeout(timeout)
                .map_err(ReadError::Io)?;
            self.read_timeout = timeout;
        }
        let mut len = [0u8; LEN_PREFIX];
        self.reader.read_exact(&mut len).map_err(ReadError::Io)?;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(ReadError::Protocol(format!(
                "reply frame of {len} bytes (limit {MAX_FRAME})"
            )));
        }
        if self.body.capacity() > 1 << 20 && len < 1 << 20 {
            self.body = Vec::new();
        }
        self.body.resize(len, 0);
        self.reader
            .read_exact(&mut self.body)
            .map_err(ReadError::Io)?;
        Ok(&self.body)
    }
}

/// A failure to read a reply.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    Protocol(String),
}

/// `d` scaled by a random factor in [0.5, 1.0).
pub(crate) fn jitter(d: Duration) -> Duration {
    let r = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    d.mul_f64(0.5 + (r % 1024) as f64 / 2048.0)
}
