//! [`TcpStoreServer`]: the TCP store's server, one `mio` event-loop thread.
//!
//! It speaks two protocols on one port and tells them apart by a connection's first
//! five bytes (see [`c10d::detect`]): tutti's framed protocol, whose clients present
//! the job token, and c10d's TCPStore protocol (torch.distributed's clients), which
//! has no token and is accepted only as [`C10dAccess`] allows. Both reach the same
//! keys.
//!
//! Each connection has a read buffer, a write buffer and at most one parked wait
//! (clients send one request at a time). A `get`, `multi_get` or `wait` whose keys
//! are missing parks on the first missing key; the `set`/`add`/... that creates that
//! key moves it on to the next missing one, and the last one completes it, so a wait
//! on `n` keys costs O(n) in all. Deadlines (wait timeouts and the handshake timeout)
//! sit in a heap that bounds the poll timeout. A connection that breaks the protocol,
//! presents a wrong token or disappears mid-frame is closed alone; the loop serves
//! everyone else.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::auth::{resolve_token, tokens_equal};
use super::c10d::{self, Detected};
use super::protocol::{
    ErrorKind, MAX_FRAME, MAX_HELLO_FRAME, Request, Response, VERSION, decode_request,
    encode_response,
};
use crate::table::Table;
use crate::{Result, StoreError};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// The listen backlog asked for (the kernel caps it at `net.core.somaxconn`), so that
/// thousands of ranks connecting at once are queued rather than refused.
const LISTEN_BACKLOG: i32 = 8192;
/// A connection must complete its handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Stop serving a client's requests while this many reply bytes are unsent.
const WRITE_HIGH_WATER: usize = 4 << 20;
/// Requests served per connection before the loop turns to the others.
const REQUEST_BUDGET: usize = 64;
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 << 10;
/// After `accept` fails (out of file descriptors), retry after this long.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Which clients of c10d's TCPStore protocol (torch.distributed) a
/// [`TcpStoreServer`] accepts. They cannot present tutti's job token, so accepting
/// them lets anyone who reaches the port read and write the store, as with torch's
/// own TCPStore; tutti's protocol always requires the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum C10dAccess {
    /// Refuse them (the default of [`TcpStoreServer::bind`]).
    #[default]
    Deny,
    /// Accept them from loopback addresses only (this host).
    Loopback,
    /// Accept them from any address (the launcher's workers' store, so that torch
    /// workers on every node can reach it).
    Any,
}

impl C10dAccess {
    fn allows(self, peer: &SocketAddr) -> bool {
        match self {
            C10dAccess::Deny => false,
            C10dAccess::Loopback => peer.ip().is_loopback(),
            C10dAccess::Any => true,
        }
    }
}

impl std::str::FromStr for C10dAccess {
    type Err = StoreError;

    /// `deny`, `loopback` or `any`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "deny" | "no" | "off" => Ok(C10dAccess::Deny),
            "loopback" | "local" => Ok(C10dAccess::Loopback),
            "any" | "yes" | "on" => Ok(C10dAccess::Any),
            _ => Err(StoreError::InvalidArgument(format!(
                "c10d access {s:?} is not one of deny, loopback, any"
            ))),
        }
    }
}

impl std::fmt::Display for C10dAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            C10dAccess::Deny => "deny",
            C10dAccess::Loopback => "loopback",
            C10dAccess::Any => "any",
        })
    }
}

/// The TCP store's server. It runs on its own thread from [`bind`](Self::bind) until
/// it is dropped (or [`shutdown`](Self::shutdown)); dropping it closes every client's
/// connection.
///
/// Usually started for you by [`TcpStore`](crate::TcpStore) on the master
/// rank; a launcher can run one itself and hand its address to the workers.
#[derive(Debug)]
pub struct TcpStoreServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl TcpStoreServer {
    /// Listens on `addr` (port 0 picks a free port; see [`port`](Self::port)) and
    /// starts serving. Clients must present `token`, or, when `None`, the value of
    /// `TUTTI_JOB_TOKEN` (empty if unset).
    ///
    /// Raises this process's soft limit on open files to the hard limit, since every
    /// client holds a descriptor here.
    ///
    /// Clients of c10d's TCPStore protocol are refused; see
    /// [`bind_with_c10d`](Self::bind_with_c10d).
    pub fn bind(addr: impl ToSocketAddrs, token: Option<&str>) -> Result<Self> {
        Self::bind_with_c10d(addr, token, C10dAccess::Deny)
    }

    /// As [`bind`](Self::bind), and also serves clients of c10d's TCPStore protocol
    /// (torch.distributed's `TCPStore`) as `c10d` allows. Each refused connection is
    /// logged (warning) with the peer's address.
    pub fn bind_with_c10d(
        addr: impl ToSocketAddrs,
        token: Option<&str>,
        c10d: C10dAccess,
    ) -> Result<Self> {
        let token = resolve_token(token)?;
        if let Err(e) = super::raise_fd_limit() {
            tracing::debug!("store server: could not raise the open-file limit: {e}");
        }
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| StoreError::Io {
                context: "store server: resolving the listen address".into(),
                source: e,
            })?
            .collect();
        let mut last_err = io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on");
        let mut listener = None;
        for a in &addrs {
            match listen(*a) {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        let Some(mut listener) = listener else {
            return Err(StoreError::Io {
                context: format!("store server: listening on {addrs:?}"),
                source: last_err,
            });
        };
        let io_err = |context: &str| {
            let context = context.to_string();
            move |source| StoreError::Io {
                context: format!("store server: {context}"),
                source,
            }
        };
        let addr = listener.local_addr().map_err(io_err("local address"))?;
        let poll = Poll::new().map_err(io_err("creating the poller"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_err("registering"))?;
        let waker =
            Arc::new(Waker::new(poll.registry(), WAKER).map_err(io_err("creating the waker"))?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut event_loop = EventLoop::new(poll, listener, token, c10d, Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("tutti-store-server".into())
            .spawn(move || event_loop.run())
            .map_err(io_err("spawning the server thread"))?;
        tracing::info!(%addr, c10d = %c10d, "store server listening");
        Ok(Self {
            addr,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops the server and waits for its thread; clients see their connection close.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            tracing::warn!("store server: waking the event loop to stop it: {e}");
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("store server thread panicked");
        }
    }
}

impl Drop for TcpStoreServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// What a parked request answers once its keys exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParkKind {
    Get,
    MultiGet,
    Wait,
    /// c10d's `WAIT`: answered by `STOP_WAITING`; no server-side deadline (the client
    /// sends `CANCEL_WAIT` when its own timeout expires).
    C10dWait,
    /// c10d's `BARRIER` on its only key: answered by `STOP_WAITING` when the key is
    /// next written (the last arrival, or any set/add/append of it, as in c10d).
    C10dBarrier,
}

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    /// Not known until its first five bytes arrive.
    Detect,
    Tutti,
    C10d,
}

#[derive(Debug)]
struct Parked {
    kind: ParkKind,
    keys: Vec<String>,
    /// Keys before this index existed when last looked at.
    cursor: usize,
    serial: u64,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Identifies this connection in the deadline heap (slots are reused).
    serial: u64,
    /// Past the handshake (tutti: hello with the right token; c10d: `VALIDATE`).
    authed: bool,
    proto: Proto,
    /// c10d: the bytes the request at the front of `rbuf` needs, once known.
    need: usize,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    parked: Option<Parked>,
    /// Close once the write buffer is flushed (after an error reply).
    closing: bool,
}

impl Conn {
    fn reply(&mut self, resp: &Response<'_>) {
        encode_response(&mut self.wbuf, resp);
    }

    fn fail(&mut self, kind: ErrorKind, message: &str) {
        self.reply(&Response::Error { kind, message });
        self.closing = true;
    }

    /// Writes buffered replies until done or the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.wbuf.capacity() > READ_CHUNK * 16 {
            self.wbuf = Vec::new();
        }
        Ok(())
    }

    fn pending_write(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Reads once into `rbuf`.
    fn read_some(&mut self, scratch: &mut [u8]) -> ReadOutcome {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return ReadOutcome::Eof,
                Ok(n) => {
                    self.rbuf.extend_from_slice(&scratch[..n]);
                    return ReadOutcome::Data;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return ReadOutcome::Err(e),
            }
        }
    }

    fn consume(&mut self, used: usize) {
        self.rpos += used;
        if self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
            if self.rbuf.capacity() > READ_CHUNK * 16 {
                self.rbuf = Vec::new();
            }
        } else if self.rpos > READ_CHUNK && self.rpos * 2 > self.rbuf.len() {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
    }
}

/// What one step of a c10d connection did.
enum Step {
    /// Served a request.
    Served,
    /// Read more bytes.
    Read,
    /// Nothing more to do now (would block, parked, or closed).
    Stop,
}

enum ReadOutcome {
    Data,
    WouldBlock,
    Eof,
    Err(io::Error),
}

/// Why a connection was closed (for the log).
enum Close {
    /// Normal end, or after an error reply was sent.
    Done,
    Eof {
        partial: usize,
    },
    Io(io::Error),
    Protocol(String),
    /// Refused before or at the handshake (access policy, wrong magic, not a
    /// protocol this server speaks).
    Refused(String),
    HandshakeTimeout,
}

struct EventLoop {
    poll: Poll,
    listener: TcpListener,
    token: Vec<u8>,
    c10d: C10dAccess,
    stop: Arc<AtomicBool>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    parked_count: usize,
    table: Table,
    /// Key -> (connection, park serial) of the waits parked on it.
    waiters: HashMap<String, Vec<(usize, u64)>>,
    /// (deadline, connection, serial): park timeouts and handshake timeouts.
    deadlines: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_serial: u64,
    /// Connections to drive now (their wait completed).
    ready: Vec<usize>,
    /// Connections to drive on the next turn (they used up their budget).
    deferred: Vec<usize>,
    accept_retry_at: Option<Instant>,
    scratch: Box<[u8]>,
}

impl EventLoop {
    fn new(
        poll: Poll,
        listener: TcpListener,
        token: Vec<u8>,
        c10d: C10dAccess,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            poll,
            listener,
            token,
            c10d,
            stop,
            conns: Vec::new(),
            free: Vec::new(),
            parked_count: 0,
            table: Table::new(),
            waiters: HashMap::new(),
            deadlines: BinaryHeap::new(),
            next_serial: 0,
            ready: Vec::new(),
            deferred: Vec::new(),
            accept_retry_at: None,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("store server: poll failed, stopping: {e}");
                return;
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            self.ready.append(&mut self.deferred);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => self.drive(t - FIRST_CONN),
                }
            }
            self.expire_deadlines();
            if self.accept_retry_at.is_some_and(|t| Instant::now() >= t) {
                self.accept_retry_at = None;
                self.accept();
            }
            while let Some(id) = self.ready.pop() {
                self.drive(id);
            }
        }
        tracing::info!(
            clients = self.conns.len() - self.free.len(),
            "store server stopped"
        );
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.deferred.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let next = self.deadlines.peek().map(|Reverse((t, _, _))| *t);
        let next = match (next, self.accept_retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Round up to a whole millisecond so the poll does not wake just before.
        next.map(|t| t.saturating_duration_since(now) + Duration::from_micros(999))
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.add_conn(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Typically EMFILE: leave the client in the backlog and retry soon.
                    tracing::warn!(
                        "store server: accept failed (retrying in {ACCEPT_RETRY:?}): {e}"
                    );
                    self.accept_retry_at = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "store server: TCP_NODELAY: {e}");
        }
        let id = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(id + FIRST_CONN), interest)
        {
            tracing::warn!(%peer, "store server: registering a connection: {e}");
            self.free.push(id);
            return;
        }
        let serial = self.serial();
        self.deadlines
            .push(Reverse((Instant::now() + HANDSHAKE_TIMEOUT, id, serial)));
        self.conns[id] = Some(Conn {
            stream,
            peer,
            serial,
            authed: false,
            proto: Proto::Detect,
            need: 0,
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            wpos: 0,
            parked: None,
            closing: false,
        });
        tracing::trace!(%peer, id, "store server: accepted");
        // The socket may already hold the hello.
        self.ready.push(id);
    }

    fn conn(&mut self, id: usize) -> Option<&mut Conn> {
        self.conns.get_mut(id).and_then(Option::as_mut)
    }

    /// Makes all the progress a connection allows: flush replies, read, decode and
    /// serve requests, until the socket would block, the connection is parked or
    /// closed, or its budget is spent.
    fn drive(&mut self, id: usize) {
        let mut served = 0;
        loop {
            let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) else {
                return;
            };
            if let Err(e) = conn.flush() {
                return self.close(id, Close::Io(e));
            }
            if conn.closing {
                if conn.pending_write() == 0 {
                    self.close(id, Close::Done);
                }
                return;
            }
            if conn.pending_write() > WRITE_HIGH_WATER {
                return;
            }
            if conn.proto == Proto::Detect {
                match c10d::detect(&conn.rbuf[conn.rpos..], MAX_HELLO_FRAME) {
                    Detected::Unknown => match conn.read_some(&mut self.scratch) {
                        ReadOutcome::Data => continue,
                        ReadOutcome::WouldBlock => return,
                        ReadOutcome::Eof => {
                            let partial = conn.rbuf.len() - conn.rpos;
                            return self.close(id, Close::Eof { partial });
                        }
                        ReadOutcome::Err(e) => return self.close(id, Close::Io(e)),
                    },
                    Detected::Tutti => conn.proto = Proto::Tutti,
                    Detected::C10d if self.c10d.allows(&conn.peer) => {
                        conn.proto = Proto::C10d;
                    }
                    Detected::C10d => {
                        let why = format!(
                            "a c10d (torch.distributed TCPStore) client, and this server's c10d access is {}",
                            self.c10d
                        );
                        return self.close(id, Close::Refused(why));
                    }
                    Detected::C10dBadMagic(magic) => {
                        let got = match magic {
                            Some(m) => format!("{m:#010x}"),
                            None => format!("{:02x?}", &conn.rbuf[conn.rpos + 1..]),
                        };
                        let why = format!(
                            "c10d VALIDATE with the wrong magic {got} (expected {:#010x})",
                            c10d::VALIDATE_MAGIC
                        );
                        return self.close(id, Close::Refused(why));
                    }
                    Detected::Garbage => {
                        let end = conn.rbuf.len().min(conn.rpos + 5);
                        let head = &conn.rbuf[conn.rpos..end];
                        let hint = if head[0] <= c10d::query::BARRIER {
                            " (a c10d client must start with VALIDATE)"
                        } else {
                            ""
                        };
                        let why = format!(
                            "first bytes {head:02x?} are neither tutti's store protocol nor c10d's TCPStore protocol{hint}"
                        );
                        return self.close(id, Close::Refused(why));
                    }
                }
            }
            if conn.proto == Proto::C10d {
                if served >= REQUEST_BUDGET {
                    self.deferred.push(id);
                    return;
                }
                match self.step_c10d(id) {
                    Step::Served => served += 1,
                    Step::Read => {}
                    Step::Stop => return,
                }
                continue;
            }
            if conn.parked.is_some() {
                // A parked client only waits: bytes now break the protocol.
                match conn.read_some(&mut self.scratch) {
                    ReadOutcome::WouldBlock => return,
                    ReadOutcome::Data => {
                        return self.close(
                            id,
                            Close::Protocol("sent a request while its wait was pending".into()),
                        );
                    }
                    ReadOutcome::Eof => return self.close(id, Close::Eof { partial: 0 }),
                    ReadOutcome::Err(e) => return self.close(id, Close::Io(e)),
                }
            }
            if served >= REQUEST_BUDGET {
                self.deferred.push(id);
                return;
            }
            let max = if conn.authed {
                MAX_FRAME
            } else {
                MAX_HELLO_FRAME
            };
            let rbuf = std::mem::take(&mut conn.rbuf);
            let decoded = decode_request(&rbuf[conn.rpos..], max);
            match decoded {
                Ok(Some((req, used))) => {
                    self.handle(id, req);
                    if let Some(conn) = self.conn(id) {
                        conn.rbuf = rbuf;
                        conn.consume(used);
                    }
                    served += 1;
                }
                Ok(None) => {
                    conn.rbuf = rbuf;
                    match conn.read_some(&mut self.scratch) {
                        ReadOutcome::Data => {}
                        ReadOutcome::WouldBlock => return,
                        ReadOutcome::Eof => {
                            let partial = conn.rbuf.len() - conn.rpos;
                            return self.close(id, Close::Eof { partial });
                        }
                        ReadOutcome::Err(e) => return self.close(id, Close::Io(e)),
                    }
                }
                Err(e) => {
                    conn.rbuf = rbuf;
                    // Best effort: tell the client why, then close.
                    conn.reply(&Response::Error {
                        kind: ErrorKind::Protocol,
                        message: &e.0,
                    });
                    let _ = conn.flush();
                    return self.close(id, Close::Protocol(e.0));
                }
            }
        }
    }

    /// One step of a c10d connection: serve the request at the front of its buffer,
    /// or read more bytes.
    fn step_c10d(&mut self, id: usize) -> Step {
        let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return Step::Stop;
        };
        let avail = conn.rbuf.len() - conn.rpos;
        if avail > 0 && avail >= conn.need {
            let rbuf = std::mem::take(&mut conn.rbuf);
            match c10d::decode_request(&rbuf[conn.rpos..]) {
                Ok(c10d::Decoded::Request(req, used)) => {
                    conn.need = 0;
                    self.handle_c10d(id, req);
                    if let Some(conn) = self.conn(id) {
                        conn.rbuf = rbuf;
                        conn.consume(used);
                    }
                    return Step::Served;
                }
                Ok(c10d::Decoded::Incomplete(need)) => {
                    conn.rbuf = rbuf;
                    conn.need = need;
                }
                Err(e) => {
                    conn.rbuf = rbuf;
                    self.close(id, Close::Protocol(format!("c10d client: {}", e.0)));
                    return Step::Stop;
                }
            }
        }
        let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return Step::Stop;
        };
        match conn.read_some(&mut self.scratch) {
            ReadOutcome::Data => Step::Read,
            ReadOutcome::WouldBlock => Step::Stop,
            ReadOutcome::Eof => {
                let partial = conn.rbuf.len() - conn.rpos;
                self.close(id, Close::Eof { partial });
                Step::Stop
            }
            ReadOutcome::Err(e) => {
                self.close(id, Close::Io(e));
                Step::Stop
            }
        }
    }

    /// Serves one c10d request with c10d's semantics (see [`c10d::Request`] for each
    /// reply). Requests c10d's server fails on (an `ADD` to a value that is not a
    /// number, an `APPEND` past the size limit) close the connection, as there.
    fn handle_c10d(&mut self, id: usize, req: c10d::Request<'_>) {
        use c10d::{Request as Q, Writer};
        let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if !conn.authed {
            match req {
                Q::Validate { magic } if magic == c10d::VALIDATE_MAGIC => {
                    conn.authed = true;
                    tracing::debug!(peer = %conn.peer, "store server: c10d client validated");
                }
                _ => {
                    let why = "c10d client: the first request must be VALIDATE".to_string();
                    self.close(id, Close::Refused(why));
                }
            }
            return;
        }
        if conn.parked.is_some() {
            if req != Q::CancelWait {
                let why = format!("c10d client sent {req:?} while its wait was pending");
                return self.close(id, Close::Protocol(why));
            }
            if let Some(p) = conn.parked.take() {
                self.parked_count -= 1;
                self.unregister(&p, id);
            }
            if let Some(conn) = self.conn(id) {
                Writer(&mut conn.wbuf).u8(c10d::WAIT_CANCELED);
            }
            return;
        }
        let w = &mut conn.wbuf;
        match req {
            Q::Validate { .. } => {
                self.close(id, Close::Protocol("c10d client: second VALIDATE".into()));
            }
            Q::Ping { nonce } => {
                Writer(w).u32(nonce);
            }
            Q::Set { key, value } => {
                self.table.set(key, value.to_vec());
                self.wake(key);
            }
            Q::CompareSet {
                key,
                expected,
                desired,
            } => {
                let (v, changed) = self.table.compare_set(key, expected, desired);
                Writer(w).bytes(&v);
                if changed {
                    self.wake(key);
                }
            }
            Q::Get { key } => {
                Writer(w).bytes(self.table.get(key).map_or(&[][..], Vec::as_slice));
            }
            Q::Add { key, delta } => match self.table.add(key, delta) {
                Ok(v) => {
                    Writer(w).i64(v);
                    self.wake(key);
                }
                Err(m) => {
                    let why = format!("c10d client: ADD {delta} to key {key:?}: {m}");
                    self.close(id, Close::Protocol(why));
                }
            },
            Q::Check { keys } => {
                let all = keys.iter().all(|k| self.table.exists(k));
                Writer(w).u8(if all {
                    c10d::CHECK_READY
                } else {
                    c10d::CHECK_NOT_READY
                });
            }
            Q::Wait { keys } => {
                if keys.iter().all(|k| self.table.exists(k)) {
                    Writer(w).u8(c10d::STOP_WAITING);
                } else {
                    self.park(id, ParkKind::C10dWait, &keys, 0);
                }
            }
            Q::GetNumKeys => {
                Writer(w).i64(self.table.len() as i64);
            }
            Q::DeleteKey { key } => {
                let existed = self.table.delete(key);
                Writer(w).i64(i64::from(existed));
            }
            Q::Append { key, value } => match self.table.append(key, value) {
                Ok(()) => self.wake(key),
                Err(m) => {
                    let why = format!("c10d client: APPEND to key {key:?}: {m}");
                    self.close(id, Close::Protocol(why));
                }
            },
            Q::MultiGet { keys } => {
                for k in &keys {
                    Writer(w).bytes(self.table.get(k).map_or(&[][..], Vec::as_slice));
                }
            }
            Q::MultiSet { pairs } => {
                for (k, v) in &pairs {
                    self.table.set(k, v.to_vec());
                }
                for (k, _) in &pairs {
                    self.wake(k);
                }
            }
            Q::CancelWait => {
                // Nothing parked: the wait completed before the cancel arrived.
                Writer(w).u8(c10d::WAIT_CANCELED);
            }
            Q::QueuePush { key, value } => {
                self.table.queue_push(key, value.to_vec());
                self.wake_one(key);
            }
            Q::QueuePop { key } => {
                let (len, value) = self.table.queue_pop(key);
                Writer(w).i64(len as i64);
                if let Some(v) = value {
                    Writer(w).bytes(&v);
                }
            }
            Q::QueueLen { key } => {
                Writer(w).i64(self.table.queue_len(key) as i64);
            }
            Q::ListKeys => {
                let mut out = Writer(w);
                out.i64(self.table.len() as i64);
                for k in self.table.keys() {
                    out.bytes(k.as_bytes());
                }
            }
            Q::Barrier { key, world_size } => self.barrier_c10d(id, key, world_size),
        }
    }

    /// c10d's `BARRIER`: adds 1 to the counter at `key`; the arrival that brings it to
    /// `world_size` releases everyone, the others park until then.
    fn barrier_c10d(&mut self, id: usize, key: &str, world_size: i64) {
        let count = match self.table.add(key, 1) {
            Ok(c) => c,
            Err(m) => {
                let why = format!("c10d client: BARRIER on key {key:?}: {m}");
                return self.close(id, Close::Protocol(why));
            }
        };
        if count >= world_size {
            self.wake(key);
            if let Some(conn) = self.conn(id) {
                c10d::Writer(&mut conn.wbuf).u8(c10d::STOP_WAITING);
            }
            return;
        }
        let serial = self.serial();
        let Some(conn) = self.conn(id) else { return };
        conn.parked = Some(Parked {
            kind: ParkKind::C10dBarrier,
            keys: vec![key.to_string()],
            cursor: 0,
            serial,
        });
        self.parked_count += 1;
        self.waiters
            .entry(key.to_string())
            .or_default()
            .push((id, serial));
    }

    fn handle(&mut self, id: usize, req: Request<'_>) {
        let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if !conn.authed {
            match req {
                Request::Hello { version, token } => {
                    if version != VERSION {
                        tracing::warn!(peer = %conn.peer, version, "store server: refused a client speaking another protocol version");
                        conn.fail(
                            ErrorKind::Version,
                            &format!("the server speaks store protocol version {VERSION}, the client {version}"),
                        );
                    } else if !tokens_equal(token, &self.token) {
                        tracing::warn!(peer = %conn.peer, "store server: refused a client with a wrong job token");
                        conn.fail(ErrorKind::Auth, "wrong job token");
                    } else {
                        conn.authed = true;
                        conn.reply(&Response::HelloOk);
                        tracing::trace!(peer = %conn.peer, "store server: client authenticated");
                    }
                }
                _ => {
                    tracing::warn!(peer = %conn.peer, "store server: request before the handshake");
                    conn.fail(ErrorKind::Protocol, "the first frame must be a hello");
                }
            }
            return;
        }
        match req {
            Request::Hello { .. } => {
                tracing::warn!(peer = %conn.peer, "store server: second hello");
                conn.fail(ErrorKind::Protocol, "duplicate hello");
            }
            Request::Set { key, value } => {
                self.table.set(key, value.to_vec());
                conn.reply(&Response::Ok);
                self.wake(key);
            }
            Request::Get { key, timeout_ms } => match self.table.get(key) {
                Some(v) => conn.reply(&Response::Value(v)),
                None => self.park(id, ParkKind::Get, &[key], timeout_ms),
            },
            Request::Add { key, delta } => match self.table.add(key, delta) {
                Ok(v) => {
                    conn.reply(&Response::Integer(v));
                    self.wake(key);
                }
                Err(m) => conn.reply(&Response::Error {
                    kind: ErrorKind::Request,
                    message: &m,
                }),
            },
            Request::CompareSet {
                key,
                expected,
                desired,
            } => {
                let (v, changed) = self.table.compare_set(key, expected, desired);
                conn.reply(&Response::Value(&v));
                if changed {
                    self.wake(key);
                }
            }
            Request::Check { keys } => {
                let all = keys.iter().all(|k| self.table.contains(k));
                conn.reply(&Response::Bool(all));
            }
            Request::Wait { keys, timeout_ms } => {
                if keys.iter().all(|k| self.table.contains(k)) {
                    conn.reply(&Response::Ok);
                } else {
                    self.park(id, ParkKind::Wait, &keys, timeout_ms);
                }
            }
            Request::MultiGet { keys, timeout_ms } => {
                if keys.iter().all(|k| self.table.contains(k)) {
                    reply_values(conn, &self.table, &keys);
                } else {
                    self.park(id, ParkKind::MultiGet, &keys, timeout_ms);
                }
            }
            Request::MultiSet { pairs } => {
                for (k, v) in &pairs {
                    self.table.set(k, v.to_vec());
                }
                conn.reply(&Response::Ok);
                for (k, _) in &pairs {
                    self.wake(k);
                }
            }
            Request::Append { key, value } => match self.table.append(key, value) {
                Ok(()) => {
                    conn.reply(&Response::Ok);
                    self.wake(key);
                }
                Err(m) => conn.reply(&Response::Error {
                    kind: ErrorKind::Request,
                    message: &m,
                }),
            },
            Request::DeleteKey { key } => {
                let existed = self.table.delete(key);
                conn.reply(&Response::Bool(existed));
            }
            Request::NumKeys => {
                let n = self.table.len() as u64;
                conn.reply(&Response::Count(n));
            }
        }
    }

    fn park(&mut self, id: usize, kind: ParkKind, keys: &[&str], timeout_ms: u64) {
        let serial = self.serial();
        let Some(conn) = self.conn(id) else { return };
        conn.parked = Some(Parked {
            kind,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            cursor: 0,
            serial,
        });
        self.parked_count += 1;
        if timeout_ms > 0 {
            let deadline = Instant::now()
                .checked_add(Duration::from_millis(timeout_ms))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365));
            self.deadlines.push(Reverse((deadline, id, serial)));
        }
        self.advance(id);
    }

    /// Moves a parked wait past the keys that exist; registers it on the next missing
    /// key, or completes it.
    fn advance(&mut self, id: usize) {
        let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let Some(p) = conn.parked.as_mut() else {
            return;
        };
        // c10d's waits also end when a queue of that name holds a value.
        let table = &self.table;
        let exists = |k: &str| {
            if p.kind == ParkKind::C10dWait {
                table.exists(k)
            } else {
                table.contains(k)
            }
        };
        while p.cursor < p.keys.len() && exists(&p.keys[p.cursor]) {
            p.cursor += 1;
        }
        if p.cursor == p.keys.len() {
            // A key seen earlier may have been deleted since: check them all once.
            if let Some(i) = p.keys.iter().position(|k| !exists(k)) {
                p.cursor = i;
            }
        }
        if p.cursor < p.keys.len() {
            self.waiters
                .entry(p.keys[p.cursor].clone())
                .or_default()
                .push((id, p.serial));
            return;
        }
        let Some(p) = conn.parked.take() else { return };
        self.parked_count -= 1;
        match p.kind {
            ParkKind::Get => match self.table.get(&p.keys[0]) {
                Some(v) => conn.reply(&Response::Value(v)),
                None => conn.reply(&Response::Value(&[])),
            },
            ParkKind::MultiGet => {
                let keys: Vec<&str> = p.keys.iter().map(String::as_str).collect();
                reply_values(conn, &self.table, &keys);
            }
            ParkKind::Wait => conn.reply(&Response::Ok),
            ParkKind::C10dWait | ParkKind::C10dBarrier => {
                c10d::Writer(&mut conn.wbuf).u8(c10d::STOP_WAITING);
            }
        }
        self.ready.push(id);
    }

    /// Whether connection `id` is still parked with `serial`.
    fn parked_with(&self, id: usize, serial: u64) -> Option<ParkKind> {
        self.conns
            .get(id)
            .and_then(Option::as_ref)
            .and_then(|c| c.parked.as_ref())
            .filter(|p| p.serial == serial)
            .map(|p| p.kind)
    }

    /// Moves on one parked wait: a c10d barrier completes (its key was written),
    /// any other wait looks at its keys again.
    fn nudge(&mut self, id: usize, kind: ParkKind) {
        if kind != ParkKind::C10dBarrier {
            return self.advance(id);
        }
        let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if conn.parked.take().is_some() {
            self.parked_count -= 1;
            c10d::Writer(&mut conn.wbuf).u8(c10d::STOP_WAITING);
            self.ready.push(id);
        }
    }

    /// A value was pushed to the queue `key`: moves on the first wait parked on it
    /// that it completes (c10d wakes one waiter per pushed value).
    fn wake_one(&mut self, key: &str) {
        let Some(list) = self.waiters.remove(key) else {
            return;
        };
        let mut rest = list.into_iter();
        for (id, serial) in rest.by_ref() {
            let Some(kind) = self.parked_with(id, serial) else {
                continue;
            };
            self.nudge(id, kind);
            if self.parked_with(id, serial).is_none() {
                break;
            }
        }
        let rest: Vec<_> = rest.collect();
        if !rest.is_empty() {
            let list = self.waiters.entry(key.to_string()).or_default();
            let newer = std::mem::replace(list, rest);
            list.extend(newer);
        }
    }

    /// Moves on the waits parked on `key` (which now exists).
    fn wake(&mut self, key: &str) {
        let Some(list) = self.waiters.remove(key) else {
            return;
        };
        for (id, serial) in list {
            if let Some(kind) = self.parked_with(id, serial) {
                self.nudge(id, kind);
            }
        }
    }

    fn unregister(&mut self, p: &Parked, id: usize) {
        let Some(key) = p.keys.get(p.cursor) else {
            return;
        };
        if let Some(list) = self.waiters.get_mut(key) {
            list.retain(|&(i, s)| !(i == id && s == p.serial));
            if list.is_empty() {
                self.waiters.remove(key);
            }
        }
    }

    fn expire_deadlines(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((t, id, serial))) = self.deadlines.peek() {
            if t > now {
                break;
            }
            self.deadlines.pop();
            let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) else {
                continue;
            };
            if !conn.authed && conn.serial == serial {
                self.close(id, Close::HandshakeTimeout);
                continue;
            }
            if conn.parked.as_ref().is_none_or(|p| p.serial != serial) {
                continue;
            }
            let Some(p) = conn.parked.take() else {
                continue;
            };
            self.parked_count -= 1;
            let mut missing: Vec<&str> = p
                .keys
                .iter()
                .map(String::as_str)
                .filter(|k| !self.table.contains(k))
                .collect();
            missing.dedup();
            conn.reply(&Response::TimedOut { missing });
            self.unregister(&p, id);
            self.ready.push(id);
        }
        // Completed waits leave stale entries behind: drop them when they dominate.
        if self.deadlines.len() > 2 * (self.parked_count + self.conns.len()) + 1024 {
            let conns = &self.conns;
            self.deadlines.retain(|Reverse((_, id, serial))| {
                conns.get(*id).and_then(Option::as_ref).is_some_and(|c| {
                    (!c.authed && c.serial == *serial)
                        || c.parked.as_ref().is_some_and(|p| p.serial == *serial)
                })
            });
        }
    }

    fn close(&mut self, id: usize, why: Close) {
        let Some(mut conn) = self.conns.get_mut(id).and_then(Option::take) else {
            return;
        };
        if let Some(p) = conn.parked.take() {
            self.parked_count -= 1;
            self.unregister(&p, id);
        }
        let peer = conn.peer;
        match why {
            Close::Done => tracing::trace!(%peer, "store server: connection closed"),
            Close::Eof { partial: 0 } => {
                tracing::trace!(%peer, "store server: client disconnected")
            }
            Close::Eof { partial } => {
                tracing::warn!(%peer, partial, "store server: client disconnected in the middle of a frame")
            }
            Close::Io(e) => tracing::debug!(%peer, "store server: connection error: {e}"),
            Close::Protocol(m) => {
                tracing::warn!(%peer, "store server: protocol error, closing the connection: {m}")
            }
            Close::Refused(m) => {
                tracing::warn!(%peer, "store server: refused a connection: {m}")
            }
            Close::HandshakeTimeout => {
                tracing::warn!(%peer, "store server: no handshake within {HANDSHAKE_TIMEOUT:?}, closing")
            }
        }
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            tracing::debug!(%peer, "store server: deregistering: {e}");
        }
        self.free.push(id);
    }
}

fn reply_values(conn: &mut Conn, table: &Table, keys: &[&str]) {
    for k in keys {
        conn.reply(&Response::Value(
            table.get(k).map_or(&[][..], Vec::as_slice),
        ));
    }
}
