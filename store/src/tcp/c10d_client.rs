//! One blocking client connection in c10d's TCPStore protocol: how [`TcpStore`]
//! talks to a torch.distributed `TCPStore` server (see [`super::c10d`] for the wire
//! format). Connects with retry and backoff, then `VALIDATE` and `PING` as torch's
//! own client does.
//!
//! [`TcpStore`]: super::TcpStore

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::c10d::{self, Writer, query};
use super::client::{ATTEMPT_TIMEOUT, FIRST_BACKOFF, MAX_BACKOFF, jitter};
use crate::util::Deadline;
use crate::{Result, StoreError};

/// The largest reply value accepted (a value grown by `append` on a torch server
/// can exceed c10d's per-request payload limit).
const MAX_REPLY_VALUE: u64 = crate::MAX_VALUE_LEN as u64 * 2;

/// A validated c10d connection.
#[derive(Debug)]
pub(crate) struct C10dConnection {
    reader: BufReader<TcpStream>,
    peer: String,
    out: Vec<u8>,
    read_timeout: Option<Duration>,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitEnd {
    /// Every key exists.
    Done,
    /// The timeout expired and the server acknowledged the cancel.
    TimedOut,
}

/// Why an I/O on the connection failed.
#[derive(Debug)]
pub(crate) enum C10dError {
    Io(io::Error),
    Protocol(String),
}

impl From<io::Error> for C10dError {
    fn from(e: io::Error) -> Self {
        C10dError::Io(e)
    }
}

impl C10dConnection {
    /// Connects to `host:port`, sends `VALIDATE` and checks the `PING` echo,
    /// retrying with backoff until `timeout` (zero: forever).
    pub(crate) fn connect(host: &str, port: u16, timeout: Duration) -> Result<Self> {
        let peer = format!("{host}:{port}");
        let deadline = Deadline::after(timeout);
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let err = match Self::attempt(host, port, &peer, &deadline) {
                Ok(conn) => return Ok(conn),
                Err(C10dError::Protocol(m)) => {
                    return Err(StoreError::Protocol {
                        peer,
                        message: format!("c10d handshake: {m}"),
                    });
                }
                Err(C10dError::Io(e)) => e,
            };
            if deadline.expired() {
                return Err(StoreError::Io {
                    context: format!(
                        "connecting to c10d TCPStore server {peer}: gave up after {:?} and {attempts} attempts",
                        deadline.elapsed()
                    ),
                    source: err,
                });
            }
            tracing::trace!(%peer, "c10d store client: connect attempt failed, retrying: {err}");
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
        deadline: &Deadline,
    ) -> std::result::Result<Self, C10dError> {
        let limit = deadline.remaining().map_or(ATTEMPT_TIMEOUT, |left| {
            left.clamp(Duration::from_millis(1), ATTEMPT_TIMEOUT)
        });
        let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
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
        let stream = stream.ok_or(last)?;
        stream.set_nodelay(true)?;
        let mut conn = Self {
            reader: BufReader::new(stream),
            peer: peer.to_string(),
            out: Vec::new(),
            read_timeout: None,
        };
        let nonce = std::process::id();
        conn.request(|w| {
            w.u8(query::VALIDATE).u32(c10d::VALIDATE_MAGIC);
            w.u8(query::PING).u32(nonce);
        })?;
        let echo = conn.read_u32(Some(limit))?;
        if echo != nonce {
            return Err(C10dError::Protocol(format!(
                "PING returned {echo}, expected {nonce}: not a c10d TCPStore server?"
            )));
        }
        Ok(conn)
    }

    /// The server's address as given.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Builds one request (or several) with `build` and sends it.
    pub(crate) fn request(&mut self, build: impl FnOnce(&mut Writer<'_>)) -> io::Result<()> {
        self.out.clear();
        build(&mut Writer(&mut self.out));
        let result = self.reader.get_mut().write_all(&self.out);
        if self.out.capacity() > 1 << 20 {
            self.out = Vec::new();
        }
        result
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.read_timeout != timeout {
            self.reader.get_ref().set_read_timeout(timeout)?;
            self.read_timeout = timeout;
        }
        Ok(())
    }

    fn read_array<const N: usize>(&mut self, timeout: Option<Duration>) -> io::Result<[u8; N]> {
        self.set_timeout(timeout)?;
        let mut b = [0u8; N];
        self.reader.read_exact(&mut b)?;
        Ok(b)
    }

    pub(crate) fn read_u8(&mut self, timeout: Option<Duration>) -> io::Result<u8> {
        Ok(self.read_array::<1>(timeout)?[0])
    }

    pub(crate) fn read_u32(&mut self, timeout: Option<Duration>) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.read_array(timeout)?))
    }

    pub(crate) fn read_i64(&mut self, timeout: Option<Duration>) -> io::Result<i64> {
        Ok(i64::from_le_bytes(self.read_array(timeout)?))
    }

    /// A byte vector: `len:u64` and the bytes.
    pub(crate) fn read_bytes(
        &mut self,
        timeout: Option<Duration>,
    ) -> std::result::Result<Vec<u8>, C10dError> {
        let len = u64::from_le_bytes(self.read_array(timeout)?);
        if len > MAX_REPLY_VALUE {
            return Err(C10dError::Protocol(format!(
                "reply value of {len} bytes (limit {MAX_REPLY_VALUE})"
            )));
        }
        let mut v = vec![0u8; len as usize];
        self.reader.read_exact(&mut v)?;
        Ok(v)
    }

    /// c10d's wait: `WAIT` for `keys`; if no `STOP_WAITING` arrives within `timeout`
    /// (`None`: forever), `CANCEL_WAIT` and read the acknowledgement (after a
    /// `STOP_WAITING` that crossed the cancel, if any).
    pub(crate) fn wait(
        &mut self,
        keys: &[String],
        timeout: Option<Duration>,
        reply_timeout: Option<Duration>,
    ) -> std::result::Result<WaitEnd, C10dError> {
        self.request(|w| {
            w.u8(query::WAIT).keys(keys);
        })?;
        match self.read_u8(timeout) {
            Ok(c10d::STOP_WAITING) => return Ok(WaitEnd::Done),
            Ok(other) => {
                return Err(C10dError::Protocol(format!(
                    "WAIT answered {other}, expected STOP_WAITING"
                )));
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e.into()),
        }
        self.request(|w| {
            w.u8(query::CANCEL_WAIT);
        })?;
        let mut reply = self.read_u8(reply_timeout)?;
        if reply == c10d::STOP_WAITING {
            reply = self.read_u8(reply_timeout)?;
        }
        if reply != c10d::WAIT_CANCELED {
            return Err(C10dError::Protocol(format!(
                "CANCEL_WAIT answered {reply}, expected WAIT_CANCELED"
            )));
        }
        Ok(WaitEnd::TimedOut)
    }
}

/// Whether a read failed because its timeout expired.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
