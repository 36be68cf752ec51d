//! The sending half: frames written by the calling thread with one `sendmsg`
//! (header and payload), from the link's buffer or, for large messages, straight
//! from the caller's memory.

use std::io::IoSlice;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use socket2::Socket;

use super::frame::{FLAG_CRC, FLAG_PAD, HEADER_LEN, Header, PAD_LEN, checksum_parts, wants_pad};
use super::inbound::gone_or_io;
use super::progress::{Engine, Phase, Waiting};
use crate::link::{Injected, SendHalf};
use crate::{Deadline, Result, TransportError};

/// From this size `ops::send` hands the caller's buffer to
/// [`SendHalf::send_single_copy`], which writes it without copying it into the
/// link's buffer first.
pub(crate) const DIRECT_SEND_BYTES: usize = 64 << 10;

pub(crate) struct TcpSend {
    pub socks: Vec<Socket>,
    pub engine: Arc<Engine>,
    pub peer: Arc<str>,
    pub seq: u64,
    pub buf: Vec<u8>,
    pub reserved: Option<(usize, Deadline)>,
    pub checksum: bool,
    pub corrupt_next: bool,
    pub drop_next: bool,
    /// Frames the peer's receiving side holds (its slots, filled whenever that
    /// rank waits, sending included).
    pub depth: usize,
}

impl TcpSend {
    /// The header of the next frame, whose payload is `head` then `body` (`head`
    /// empty for a payload of one part); the pad is judged by `body`.
    fn header(&self, head: &[u8], body: &[u8]) -> Header {
        let crc = if self.checksum { FLAG_CRC } else { 0 };
        let pad = if wants_pad(body, HEADER_LEN + head.len()) {
            FLAG_PAD
        } else {
            0
        };
        Header {
            flags: crc | pad,
            seq: self.seq,
            len: (head.len() + body.len()) as u32,
            crc: if self.checksum {
                checksum_parts(head, body)
            } else {
                0
            },
        }
    }

    /// Writes the next frame, of `head` then `body`, straight from their memory.
    fn send_next(&mut self, head: &[u8], body: &[u8], deadline: Deadline) -> Result<()> {
        let header = self.header(head, body);
        let seq = self.seq;
        self.seq += 1;
        Self::send_frame(
            &self.socks,
            &self.engine,
            &self.peer,
            seq,
            &header,
            [head, body],
            deadline,
        )
    }

    /// Writes one frame whose payload is `parts` one after the other (at most
    /// `max_message` bytes).
    fn send_frame(
        socks: &[Socket],
        engine: &Engine,
        peer: &str,
        seq: u64,
        head: &Header,
        parts: [&[u8]; 2],
        deadline: Deadline,
    ) -> Result<()> {
        let sock = &socks[(seq % socks.len() as u64) as usize];
        let pad: &[u8] = if head.flags & FLAG_PAD != 0 {
            &[0; PAD_LEN]
        } else {
            &[]
        };
        let head = head.encode();
        write_all(
            sock,
            engine,
            peer,
            [&head[..], pad, parts[0], parts[1]],
            deadline,
        )
    }
}

/// Writes every part, waiting (and draining this endpoint's incoming sockets) while
/// the socket buffer is full.
fn write_all<const N: usize>(
    sock: &Socket,
    engine: &Engine,
    peer: &str,
    mut parts: [&[u8]; N],
    deadline: Deadline,
) -> Result<()> {
    let mut left: usize = parts.iter().map(|p| p.len()).sum();
    let mut wait: Option<Waiting> = None;
    while left > 0 {
        let iov = parts.map(IoSlice::new);
        match sock.send_vectored_with_flags(&iov, libc::MSG_NOSIGNAL) {
            Ok(n) => {
                left -= n;
                advance(&mut parts, n);
                wait = None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                engine.check(peer, "send (socket buffer full)", deadline)?;
                // The peers may be blocked sending to this rank: read what they sent
                // while waiting for room.
                let fd = sock.as_raw_fd();
                match wait
                    .get_or_insert_with(|| Waiting::new(engine.budget))
                    .phase()
                {
                    // Readiness first (poll takes no socket lock): retry the send
                    // or drain only when there is something to do.
                    Phase::Spin => {
                        if engine.poll(fd, libc::POLLOUT, 0, false) {
                            engine.sweep();
                        }
                    }
                    Phase::Yield => {
                        engine.sweep();
                        std::thread::yield_now();
                    }
                    Phase::Sleep => engine.sleep(fd, libc::POLLOUT, deadline),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(gone_or_io(peer, "send", e)),
        }
    }
    Ok(())
}

/// Drops the first `n` bytes of a multi-part iovec.
fn advance<const N: usize>(parts: &mut [&[u8]; N], mut n: usize) {
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

    fn depth(&self) -> usize {
        self.depth
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
        let head = self.header(&[], &self.buf[..len]);
        if std::mem::take(&mut self.corrupt_next) && len > 0 {
            self.buf[0] ^= 0x5a;
        }
        let seq = self.seq;
        self.seq += 1;
        if std::mem::take(&mut self.drop_next) {
            return Ok(());
        }
        Self::send_frame(
            &self.socks,
            &self.engine,
            &self.peer,
            seq,
            &head,
            [&self.buf[..len], &[]],
            deadline,
        )
    }

    /// Both parts go out straight from the caller's memory in one frame (the
    /// receiver sees one message, as if they had been copied in), unless a fault is
    /// armed for the next frame (the link's buffer path applies it).
    fn send_parts(&mut self, head: &[u8], body: &[u8], deadline: Deadline) -> Result<()> {
        if self.corrupt_next || self.drop_next || head.len() + body.len() > self.buf.len() {
            return crate::link::send_parts_copied(self, head, body, deadline);
        }
        self.send_next(head, body, deadline)
    }

    /// Large messages go out straight from the caller's memory, in frames of at
    /// most `max_message` bytes (the receiver handles any message sizes that add up
    /// to the transfer). Returns once the kernel holds every byte.
    fn send_single_copy(&mut self, data: &[u8], deadline: Deadline) -> Result<bool> {
        for piece in data.chunks(self.buf.len().max(1)) {
            self.send_next(&[], piece, deadline)?;
        }
        Ok(true)
    }

    fn single_copy_threshold(&self) -> Option<usize> {
        Some(DIRECT_SEND_BYTES)
    }

    fn inject(&mut self, fault: Injected) -> bool {
        match fault {
            // Without a checksum nothing would catch it: say so rather than
            // deliver silently wrong bytes.
            Injected::CorruptNext if !self.checksum => return false,
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

#[cfg(test)]
mod tests {
    use super::advance;

    #[test]
    fn advance_walks_across_both_parts() {
        let (a, b) = ([1u8, 2, 3], [4u8, 5]);
        let mut p = [&a[..], &b[..]];
        advance(&mut p, 2);
        assert_eq!(p, [&[3u8][..], &[4, 5][..]]);
        advance(&mut p, 2);
        assert_eq!(p, [&[][..], &[5u8][..]]);
    }
}
