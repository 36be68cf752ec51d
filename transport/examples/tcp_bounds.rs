//! What loopback TCP itself allows on this machine, without tutti: the bounds that
//! bench/RESULTS.md quotes next to tutti's TCP figures.
//!
//! ```text
//! cargo run --release -p tutti-transport --example tcp_bounds -- [--cc NAME] [--buf BYTES] MODE SIZE N
//!   pingpong SIZE ITERS   half round trip, both sides busy-polling non-blocking recv
//!   pingpong-block SIZE ITERS   the same with blocking recv (the waiter sleeps)
//!   stream SIZE SECONDS   one way, iperf style: one process writes SIZE-byte
//!                         messages, the other reads them
//!   stream-zc SIZE SECONDS   the same with MSG_ZEROCOPY sends
//!   stream-splice SIZE SECONDS   the same with vmsplice + splice (the kernel sends
//!                         from the writer's pages; it must not modify them until the
//!                         reader has them)
//!   exchange SIZE SECONDS  both ways at once (what a 2-rank all_reduce moves):
//!                         each side has a writer thread sending SIZE-byte messages
//!                         and a reader thread receiving them
//!   exchange-splice SIZE SECONDS   the same, sending with vmsplice + splice
//!   exchange-poll SIZE SECONDS   the same with one thread per side, non-blocking,
//!                         writing and reading whichever the socket allows
//!                         (tutti's shape: the rank's thread does all the work)
//!   ring SIZE SECONDS      RANKS processes (`--ranks`, default 4) in a ring: each
//!                         sends SIZE-byte messages to the next (a writer thread)
//!                         while it receives from the previous one; GB/s sent per
//!                         process (what a ring all_reduce's busbw can reach)
//!   ring-poll SIZE SECONDS   the same with one thread per process, as exchange-poll
//!   allreduce SIZE SECONDS   RANKS processes (`--ranks`), fully connected, run a
//!                         float32 sum all_reduce in one hop, lock-step, as plainly as
//!                         sockets allow: each sends its SIZE-byte buffer to every
//!                         other while reading theirs (one thread, non-blocking,
//!                         yielding when idle if the processes outnumber the cores),
//!                         then sums the buffers in rank order; time per all_reduce
//!                         and busbw (`2 (n-1)/n SIZE / t`, nccl-tests' definition):
//!                         what tutti's direct all_reduce does, minus the library
//! ```
//!
//!   checksum SIZE SECONDS  no socket: CRC32C (the `crc32c` crate, SSE4.2) and CRC32
//!                         (`crc32fast`, the checksum TCP links used before) over a
//!                         SIZE-byte buffer, GB/s
//!
//! `--cc` sets the congestion control of both sockets (`TCP_CONGESTION`), `--buf`
//! their `SO_SNDBUF` and `SO_RCVBUF`. The two
//! sides are two processes (this program runs itself again), joined over 127.0.0.1.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

struct Args {
    cc: Option<String>,
    buf: Option<usize>,
    ranks: usize,
    mode: String,
    size: usize,
    n: f64,
}

fn parse() -> Args {
    let mut it = std::env::args().skip(1).peekable();
    let mut cc = None;
    let mut buf = None;
    let mut ranks = 4;
    loop {
        match it.peek().map(String::as_str) {
            Some("--cc") => {
                it.next();
                cc = it.next();
            }
            Some("--buf") => {
                it.next();
                buf = it.next().and_then(|s| parse_size(&s));
            }
            Some("--ranks") => {
                it.next();
                ranks = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            }
            _ => break,
        }
    }
    let usage = || -> ! {
        eprintln!(
            "usage: tcp_bounds [--cc NAME] [--buf BYTES] [--ranks N] pingpong|pingpong-block|stream|stream-zc|exchange|exchange-poll|ring|ring-poll SIZE N"
        );
        std::process::exit(2)
    };
    let mode = it.next().unwrap_or_else(|| usage());
    let size = it
        .next()
        .and_then(|s| parse_size(&s))
        .unwrap_or_else(|| usage());
    let n = it
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage());
    if ranks < 2 {
        usage();
    }
    Args {
        cc,
        buf,
        ranks,
        mode,
        size,
        n,
    }
}

fn parse_size(s: &str) -> Option<usize> {
    let (num, mul) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|v| v * mul)
}

fn setup(s: &TcpStream, cc: &Option<String>, buf: Option<usize>) {
    s.set_nodelay(true).unwrap();
    if let Some(b) = buf {
        let sock = socket2::SockRef::from(s);
        sock.set_send_buffer_size(b).unwrap();
        sock.set_recv_buffer_size(b).unwrap();
    }
    if let Some(cc) = cc {
        let fd = s.as_raw_fd();
        // SAFETY: fd is an open TCP socket; the option value is a valid byte buffer
        // of the given length.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_CONGESTION,
                cc.as_ptr().cast(),
                cc.len() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "TCP_CONGESTION={cc}: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn main() {
    let a = parse();
    if a.mode == "checksum" {
        return checksum_speed(&a);
    }
    if a.mode == "ring" || a.mode == "ring-poll" {
        return ring(&a);
    }
    if a.mode == "allreduce" {
        return allreduce(&a);
    }
    let role_peer = std::env::var("TCP_BOUNDS_PORT").ok();
    let (s, leader) = match role_peer {
        Some(port) => {
            let s = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
            (s, false)
        }
        None => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            let child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(std::env::args().skip(1))
                .env("TCP_BOUNDS_PORT", port.to_string())
                .spawn()
                .unwrap();
            let (s, _) = l.accept().unwrap();
            std::mem::forget(child);
            (s, true)
        }
    };
    setup(&s, &a.cc, a.buf);
    match a.mode.as_str() {
        "pingpong" | "pingpong-block" => pingpong(s, leader, &a),
        "stream" | "stream-zc" | "stream-splice" => stream(s, leader, &a),
        "exchange" | "exchange-splice" | "exchange-poll" => exchange(s, leader, &a),
        m => panic!("unknown mode {m}"),
    }
}

/// Reads exactly `buf.len()` bytes, spinning on a non-blocking socket or blocking.
fn read_exact(s: &mut TcpStream, buf: &mut [u8]) {
    let mut off = 0;
    while off < buf.len() {
        match s.read(&mut buf[off..]) {
            Ok(0) => panic!("peer closed"),
            Ok(n) => off += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn write_exact(s: &mut TcpStream, buf: &[u8]) {
    let mut off = 0;
    while off < buf.len() {
        match s.write(&buf[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => panic!("write: {e}"),
        }
    }
}

fn pingpong(mut s: TcpStream, leader: bool, a: &Args) {
    s.set_nonblocking(a.mode == "pingpong").unwrap();
    let iters = a.n as usize;
    let mut buf = vec![1u8; a.size];
    let warm = iters / 10;
    let mut start = Instant::now();
    for i in 0..iters + warm {
        if i == warm {
            start = Instant::now();
        }
        if leader {
            write_exact(&mut s, &buf);
            read_exact(&mut s, &mut buf);
        } else {
            read_exact(&mut s, &mut buf);
            write_exact(&mut s, &buf);
        }
    }
    if leader {
        let half = start.elapsed().as_secs_f64() * 1e6 / iters as f64 / 2.0;
        println!(
            "{} {} B: half round trip {half:.2} us ({iters} round trips)",
            a.mode, a.size
        );
    }
}

/// Sends with MSG_ZEROCOPY and reaps the completions from the error queue.
struct ZeroCopy {
    pending: u64,
    copied: u64,
}

impl ZeroCopy {
    fn enable(s: &TcpStream) -> ZeroCopy {
        let one: libc::c_int = 1;
        // SAFETY: valid socket and option buffer.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ZEROCOPY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_ZEROCOPY: {}", std::io::Error::last_os_error());
        ZeroCopy {
            pending: 0,
            copied: 0,
        }
    }

    fn send(&mut self, s: &TcpStream, buf: &[u8]) -> Option<usize> {
        // SAFETY: buf is valid for reads of buf.len() bytes; the caller keeps it
        // unmodified until the completions are reaped (the benchmark never writes it).
        let n = unsafe {
            libc::send(
                s.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_ZEROCOPY | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS) {
                self.reap(s);
                return None;
            }
            panic!("send zerocopy: {e}");
        }
        self.pending += 1;
        if self.pending > 64 {
            self.reap(s);
        }
        Some(n as usize)
    }

    fn reap(&mut self, s: &TcpStream) {
        loop {
            let mut control = [0u64; 16];
            // SAFETY: a zeroed msghdr is valid; it points at `control`, which lives
            // across the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            // SAFETY: msg is a valid msghdr for recvmsg.
            let rc = unsafe {
                libc::recvmsg(
                    s.as_raw_fd(),
                    &mut msg,
                    libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
                )
            };
            if rc < 0 {
                return;
            }
            // SAFETY: the kernel filled `control` with cmsgs described by msg.
            let cm = unsafe { libc::CMSG_FIRSTHDR(&msg) };
            if cm.is_null() {
                return;
            }
            // SAFETY: for IP_RECVERR the data is a sock_extended_err.
            let ee = unsafe { &*(libc::CMSG_DATA(cm) as *const libc::sock_extended_err) };
            let n = u64::from(ee.ee_data.wrapping_sub(ee.ee_info)) + 1;
            self.pending = self.pending.saturating_sub(n);
            if ee.ee_code & 1 != 0 {
                // SO_EE_CODE_ZEROCOPY_COPIED: the kernel copied after all.
                self.copied += n;
            }
        }
    }
}

/// A pipe to move user pages into a socket without copying them.
struct Splicer {
    r: libc::c_int,
    w: libc::c_int,
}

impl Splicer {
    fn new() -> Splicer {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: plain fcntl on our pipe; 1 MiB is the default pipe-max-size.
        unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1 << 20) };
        Splicer {
            r: fds[0],
            w: fds[1],
        }
    }

    fn send(&self, s: &TcpStream, buf: &[u8]) {
        let mut off = 0;
        while off < buf.len() {
            let iov = libc::iovec {
                iov_base: buf[off..].as_ptr() as *mut libc::c_void,
                iov_len: buf.len() - off,
            };
            // SAFETY: iov describes live memory that is not modified while the
            // kernel holds its pages (the benchmark never writes `buf`).
            let n = unsafe { libc::vmsplice(self.w, &iov, 1, 0) };
            assert!(n > 0, "vmsplice: {}", std::io::Error::last_os_error());
            let mut left = n as usize;
            while left > 0 {
                // SAFETY: splice between two descriptors we own.
                let m = unsafe {
                    libc::splice(
                        self.r,
                        std::ptr::null_mut(),
                        s.as_raw_fd(),
                        std::ptr::null_mut(),
                        left,
                        libc::SPLICE_F_MORE,
                    )
                };
                assert!(m > 0, "splice: {}", std::io::Error::last_os_error());
                left -= m as usize;
            }
            off += n as usize;
        }
    }
}

fn stream(mut s: TcpStream, leader: bool, a: &Args) {
    let mut buf = vec![7u8; a.size];
    let secs = Duration::from_secs_f64(a.n);
    if leader {
        let mut zc = (a.mode == "stream-zc").then(|| ZeroCopy::enable(&s));
        let splicer = (a.mode == "stream-splice").then(Splicer::new);
        if zc.is_some() {
            s.set_nonblocking(true).unwrap();
        }
        let start = Instant::now();
        let mut bytes = 0u64;
        while start.elapsed() < secs {
            match &mut zc {
                Some(z) => {
                    let mut off = 0;
                    while off < buf.len() {
                        if let Some(n) = z.send(&s, &buf[off..]) {
                            off += n;
                        }
                    }
                }
                None => match &splicer {
                    Some(p) => p.send(&s, &buf),
                    None => write_exact(&mut s, &buf),
                },
            }
            bytes += buf.len() as u64;
        }
        let t = start.elapsed().as_secs_f64();
        let copied = zc.as_ref().map_or(String::new(), |z| {
            format!(", zerocopy completions reporting a copy: {}", z.copied)
        });
        println!(
            "{} {} B messages: {:.2} GB/s one way ({bytes} B in {t:.2} s{copied})",
            a.mode,
            a.size,
            bytes as f64 / t / 1e9
        );
        s.set_nonblocking(false).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut end = [0u8; 1];
        let _ = s.read(&mut end);
    } else {
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

fn exchange(s: TcpStream, leader: bool, a: &Args) {
    // Fixed volume per side, long enough for about N seconds at a few GB/s.
    let total = ((a.n * 2e9) as u64).next_multiple_of(a.size as u64);
    let size = a.size;
    let start = Instant::now();
    if a.mode == "exchange-poll" {
        write_read_polling(s.try_clone().unwrap(), s, size, total);
        let t = start.elapsed().as_secs_f64();
        if leader {
            println!(
                "exchange-poll {} B messages: {:.2} GB/s each way at once ({total} B each way in {t:.2} s; one thread per side, non-blocking sends and receives interleaved)",
                a.size,
                total as f64 / t / 1e9
            );
        }
        return;
    }
    let sent = if a.mode == "exchange-splice" {
        let w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let out = vec![3u8; size];
            let p = Splicer::new();
            let mut sent = 0;
            while sent < total {
                p.send(&w, &out);
                sent += size as u64;
            }
        })
    } else {
        spawn_writer(s.try_clone().unwrap(), size, total)
    };
    read_total(s, size, total);
    sent.join().unwrap();
    let t = start.elapsed().as_secs_f64();
    if leader {
        println!(
            "{} {} B messages: {:.2} GB/s each way at once ({total} B each way in {t:.2} s; a writer and a reader thread per side)",
            a.mode,
            a.size,
            total as f64 / t / 1e9
        );
    }
}

/// `ring`: process `i` of `ranks` listens on port `i` of a list the first process
/// picked, connects to the next process and accepts the previous one; then it sends
/// a fixed volume to the next while receiving the same from the previous.
fn ring(a: &Args) {
    let (me, ports) = processes(a, "TCP_BOUNDS_RING");
    let n = ports.len();
    let l = TcpListener::bind(("127.0.0.1", ports[me])).unwrap();
    let next = ports[(me + 1) % n];
    let deadline = Instant::now() + Duration::from_secs(10);
    let w = loop {
        match TcpStream::connect(("127.0.0.1", next)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("connecting to the next process: {e}"),
        }
    };
    let (r, _) = l.accept().unwrap();
    setup(&w, &a.cc, a.buf);
    setup(&r, &a.cc, a.buf);
    let total = ((a.n * 2e9) as u64).next_multiple_of(a.size as u64);
    let start = Instant::now();
    let how = if a.mode == "ring-poll" {
        write_read_polling(w, r, a.size, total);
        "one thread per process, non-blocking sends and receives interleaved"
    } else {
        let sent = spawn_writer(w, a.size, total);
        read_total(r, a.size, total);
        sent.join().unwrap();
        "a writer and a reader thread per process"
    };
    let t = start.elapsed().as_secs_f64();
    if me == 0 {
        println!(
            "{} {} B messages: {:.2} GB/s sent per process ({n} processes, {total} B each in {t:.2} s; {how})",
            a.mode,
            a.size,
            total as f64 / t / 1e9
        );
    }
}

/// The processes of a multi-process mode: this one's index and every process's
/// port (the first process picks free ports and starts the others).
fn processes(a: &Args, var: &str) -> (usize, Vec<u16>) {
    if let Ok(v) = std::env::var(var) {
        let mut f = v.split(',').map(|x| x.parse::<u16>().unwrap());
        let me = f.next().unwrap() as usize;
        return (me, f.collect());
    }
    let ports: Vec<u16> = (0..a.ranks)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let list = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    for i in 1..a.ranks {
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .env(var, format!("{i},{list}"))
            .spawn()
            .unwrap();
        std::mem::forget(child);
    }
    (0, ports)
}

/// `allreduce`: a full mesh (the lower process of each pair connects, saying who
/// it is in one byte), then lock-step one-hop all_reduces for `a.n` seconds.
fn allreduce(a: &Args) {
    let (me, ports) = processes(a, "TCP_BOUNDS_MESH");
    let n = ports.len();
    let l = TcpListener::bind(("127.0.0.1", ports[me])).unwrap();
    let mut peers: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    for (p, port) in ports.iter().enumerate().skip(me + 1) {
        let mut s = loop {
            match TcpStream::connect(("127.0.0.1", *port)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => panic!("connecting to process {p}: {e}"),
            }
        };
        s.write_all(&[me as u8]).unwrap();
        peers[p] = Some(s);
    }
    for _ in 0..me {
        let (mut s, _) = l.accept().unwrap();
        let mut who = [0u8];
        s.read_exact(&mut who).unwrap();
        peers[who[0] as usize] = Some(s);
    }
    for s in peers.iter().flatten() {
        setup(s, &a.cc, a.buf);
        s.set_nonblocking(true).unwrap();
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let yield_idle = n > cores;
    let elems = a.size / 4;
    let mine = vec![(me + 1) as f32; elems];
    let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| vec![0u8; elems * 4]).collect();
    let mut out = vec![0f32; elems];
    let bytes: &[u8] = bytemuck_bytes(&mine);
    let one = |peers: &mut Vec<Option<TcpStream>>, bufs: &mut Vec<Vec<u8>>, out: &mut [f32]| {
        let (mut sent, mut got) = (vec![0usize; n], vec![0usize; n]);
        let mut left = 2 * (n - 1);
        while left > 0 {
            let mut moved = false;
            for (p, s) in peers.iter_mut().enumerate() {
                let Some(s) = s else { continue };
                if sent[p] < bytes.len() {
                    match s.write(&bytes[sent[p]..]) {
                        Ok(k) => {
                            sent[p] += k;
                            moved = true;
                            left -= usize::from(sent[p] == bytes.len());
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => panic!("write: {e}"),
                    }
                }
                if got[p] < bytes.len() {
                    match s.read(&mut bufs[p][got[p]..]) {
                        Ok(0) => panic!("peer closed"),
                        Ok(k) => {
                            got[p] += k;
                            moved = true;
                            left -= usize::from(got[p] == bytes.len());
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => panic!("read: {e}"),
                    }
                }
            }
            if !moved {
                if yield_idle {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        // Rank order: x0 + x1 + ... (this process's own buffer at its place).
        for (p, b) in bufs.iter().enumerate() {
            let src: &[u8] = if p == me { bytes } else { b };
            for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                *o = if p == 0 { v } else { *o + v };
            }
        }
    };
    for _ in 0..20 {
        one(&mut peers, &mut bufs, &mut out);
    }
    // Everyone runs the same number of operations: process 0 decides it from a
    // timed warm-up and tells the others.
    let t0 = Instant::now();
    for _ in 0..20 {
        one(&mut peers, &mut bufs, &mut out);
    }
    let per = t0.elapsed().as_secs_f64() / 20.0;
    let mut count = (((a.n / per) as u64).max(10)).to_le_bytes();
    if me == 0 {
        for s in peers.iter_mut().flatten() {
            write_exact(s, &count);
        }
    } else {
        read_exact(peers[0].as_mut().unwrap(), &mut count);
    }
    let iters = u64::from_le_bytes(count);
    let want = (n * (n + 1) / 2) as f32;
    assert!(out.iter().all(|&v| v == want), "wrong sum");
    let start = Instant::now();
    for _ in 0..iters {
        one(&mut peers, &mut bufs, &mut out);
    }
    let t = start.elapsed().as_secs_f64() / iters as f64;
    assert!(out.iter().all(|&v| v == want), "wrong sum");
    if me == 0 {
        println!(
            "allreduce {} B, {n} processes: {:.2} us per all_reduce, busbw {:.2} GB/s ({iters} lock-step one-hop all_reduces; plain sockets, no library)",
            a.size,
            t * 1e6,
            2.0 * (n - 1) as f64 / n as f64 * a.size as f64 / t / 1e9
        );
    }
}

fn bytemuck_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte pattern may be read as u8; the slice
    // covers exactly the vector's initialised elements.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

/// `ring-poll`: one thread writes `total` bytes to `w` and reads as many from `r`,
/// both non-blocking, taking whichever socket can move bytes (tutti's shape: the
/// rank's own thread does all the socket work).
fn write_read_polling(mut w: TcpStream, mut r: TcpStream, size: usize, total: u64) {
    w.set_nonblocking(true).unwrap();
    r.set_nonblocking(true).unwrap();
    let out = vec![3u8; size];
    let mut inb = vec![0u8; size];
    let (mut sent, mut got) = (0u64, 0u64);
    while sent < total || got < total {
        let mut moved = false;
        if sent < total {
            let off = (sent % size as u64) as usize;
            match w.write(&out[off..]) {
                Ok(n) => {
                    sent += n as u64;
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        if got < total {
            match r.read(&mut inb) {
                Ok(0) => panic!("peer closed"),
                Ok(n) => {
                    got += n as u64;
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        if !moved {
            std::hint::spin_loop();
        }
    }
}

/// A thread writing `total` bytes to `w` in `size`-byte messages.
fn spawn_writer(mut w: TcpStream, size: usize, total: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let out = vec![3u8; size];
        let mut sent = 0;
        while sent < total {
            write_exact(&mut w, &out);
            sent += size as u64;
        }
    })
}

/// Reads `total` bytes from `r`, `size` bytes at most per read.
fn read_total(mut r: TcpStream, size: usize, total: u64) {
    let mut inb = vec![0u8; size];
    let mut got = 0u64;
    while got < total {
        let n = r.read(&mut inb).unwrap();
        assert!(n > 0, "peer closed");
        got += n as u64;
    }
}

fn checksum_speed(a: &Args) {
    let buf: Vec<u8> = (0..a.size).map(|i| (i * 7 + 3) as u8).collect();
    let secs = Duration::from_secs_f64(a.n);
    for (name, f) in [
        ("crc32c", crc32c::crc32c as fn(&[u8]) -> u32),
        ("crc32fast", crc32fast::hash as fn(&[u8]) -> u32),
    ] {
        let start = Instant::now();
        let (mut bytes, mut acc) = (0u64, 0u32);
        while start.elapsed() < secs {
            acc ^= f(std::hint::black_box(&buf));
            bytes += buf.len() as u64;
        }
        println!(
            "checksum {} B {name}: {:.2} GB/s (xor {acc:08x})",
            a.size,
            bytes as f64 / start.elapsed().as_secs_f64() / 1e9
        );
    }
}
