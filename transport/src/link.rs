//! The link abstraction: an ordered, reliable channel between two ranks, split into a
//! sending half and a receiving half so that an algorithm can receive from one
//! neighbour while sending to another (or to the same one, in a ring of two).
//!
//! Both halves work in *messages* of at most [`SendHalf::max_message`] bytes. A
//! sender reserves space in the link's own buffer ([`SendHalf::reserve`]), fills it
//! and publishes it ([`SendHalf::commit`]); a receiver borrows the next message in
//! place ([`RecvHalf::next`]) and releases it when done ([`RecvHalf::release`]). So
//! the fused primitives in [`crate::ops`] reduce straight out of the peer's buffer
//! and into the next peer's buffer, with no extra copy. Buffering is bounded: a
//! sender blocks in `reserve` until the receiver has released enough messages.
//!
//! Every blocking call takes a [`Deadline`]; a peer that dies or a deadline that
//! passes is an error naming the peer, never a hang.

use crate::{Deadline, Result};

/// A message borrowed from a link by [`RecvHalf::next`].
pub enum Message<'a> {
    /// The payload, in the link's receive buffer.
    Bytes(&'a [u8]),
    /// A large payload left in the sender's memory, to be read with a single copy
    /// (shared-memory links: `process_vm_readv`).
    Remote(&'a dyn RemoteRead),
}

impl Message<'_> {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Message::Bytes(b) => b.len(),
            Message::Remote(r) => r.len(),
        }
    }

    /// True for an empty message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A payload that stays in the sender's memory until the receiver has read it.
pub trait RemoteRead {
    /// Payload length in bytes.
    fn len(&self) -> usize;
    /// True for an empty payload.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `out.len()` bytes starting at `offset` of the payload into `out`.
    fn read(&self, offset: usize, out: &mut [u8]) -> Result<()>;
}

/// The sending half of a link.
pub trait SendHalf: Send {
    /// The peer, for error messages (`rank 3 (pid 1234 on host-a)`).
    fn peer(&self) -> &str;

    /// The largest message this link carries.
    fn max_message(&self) -> usize;

    /// Waits for room for a message of `len` bytes (`len <= max_message()`) and
    /// returns the space to fill. The message is sent by [`commit`](Self::commit);
    /// a second `reserve` without a commit returns the same space.
    fn reserve(&mut self, len: usize, deadline: Deadline) -> Result<&mut [u8]>;

    /// Publishes the message last reserved.
    fn commit(&mut self) -> Result<()>;

    /// Sends `data` as one message that the receiver may read straight from this
    /// process's memory (single copy), if the link supports it; returns `false`
    /// (having sent nothing) when it does not, and the caller sends in pieces.
    /// When it returns `true` the message has been read by the peer.
    fn send_single_copy(&mut self, data: &[u8], deadline: Deadline) -> Result<bool> {
        let _ = (data, deadline);
        Ok(false)
    }

    /// Sends one message made of `head` then `body` (together at most
    /// [`max_message`](Self::max_message) bytes), as [`reserve`](Self::reserve),
    /// filling and [`commit`](Self::commit) would. Links that can write both parts
    /// straight from the caller's memory do so; the default copies them into the
    /// link's buffer.
    fn send_parts(&mut self, head: &[u8], body: &[u8], deadline: Deadline) -> Result<()> {
        send_parts_copied(self, head, body, deadline)
    }

    /// The size from which [`send_single_copy`](Self::send_single_copy) is worth it,
    /// `None` when the link has no single-copy path.
    fn single_copy_threshold(&self) -> Option<usize> {
        None
    }

    /// How many messages of up to [`max_message`](Self::max_message) bytes the link
    /// holds before a sender waits, counting only buffering that fills while the
    /// receiving rank is itself blocked sending (schedules that send ahead stay
    /// deadlock-free within it). Default 1: nothing beyond the message in hand.
    fn depth(&self) -> usize {
        1
    }

    /// Waits until every committed message has left this side's buffers (for
    /// links with background senders), so that an error surfaces here.
    fn flush(&mut self, deadline: Deadline) -> Result<()> {
        let _ = deadline;
        Ok(())
    }

    /// Fault-injection hook (see [`crate::faulty`]): arranges `fault` below the
    /// link's integrity check. Returns `false` when this link cannot do it.
    fn inject(&mut self, fault: Injected) -> bool {
        let _ = fault;
        false
    }
}

/// Faults a link can inject below its own framing (used by [`crate::faulty`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injected {
    /// Flip a byte of the next committed message after its checksum is computed,
    /// so that the receiver's integrity check must catch it.
    CorruptNext,
    /// Consume the next message's sequence number without sending it, so that the
    /// receiver sees a gap.
    DropNext,
    /// Cut the connection: the peer sees it closed.
    Cut,
}

/// [`SendHalf::send_parts`] through the link's buffer: `head` and `body` copied into
/// one reserved message, then committed.
pub fn send_parts_copied<S: SendHalf + ?Sized>(
    tx: &mut S,
    head: &[u8],
    body: &[u8],
    deadline: Deadline,
) -> Result<()> {
    let buf = tx.reserve(head.len() + body.len(), deadline)?;
    let (h, b) = buf.split_at_mut(head.len());
    h.copy_from_slice(head);
    crate::copy::copy_slice(b, body);
    tx.commit()
}

/// The receiving half of a link.
pub trait RecvHalf: Send {
    /// The peer, for error messages.
    fn peer(&self) -> &str;

    /// The largest message this link carries.
    fn max_message(&self) -> usize;

    /// Waits for the next message and borrows it in place. Calling `next` again
    /// before [`release`](Self::release) returns the same message.
    fn next(&mut self, deadline: Deadline) -> Result<Message<'_>>;

    /// Releases the message returned by `next`, making its buffer space free for
    /// the sender.
    fn release(&mut self) -> Result<()>;
}

/// A bidirectional link: both halves to one peer.
pub struct Link {
    /// Sends to the peer.
    pub tx: Box<dyn SendHalf>,
    /// Receives from the peer.
    pub rx: Box<dyn RecvHalf>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.peer())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// The peer's description.
    pub fn peer(&self) -> &str {
        self.tx.peer()
    }
}

/// The links of one rank to any peer, as the collective schedules use them: the send
/// half to one rank and the receive half from another (possibly the same) at once.
pub trait Links {
    /// The send half towards `to` and the receive half from `from`.
    fn pair(&mut self, to: usize, from: usize) -> Result<(&mut dyn SendHalf, &mut dyn RecvHalf)>;
}

/// A rank's links indexed by peer rank (`None` for itself and for peers it has no
/// link to): the table the collective schedules run over.
impl Links for Vec<Option<Link>> {
    fn pair(&mut self, to: usize, from: usize) -> Result<(&mut dyn SendHalf, &mut dyn RecvHalf)> {
        let missing =
            |p: usize| crate::TransportError::InvalidArgument(format!("no link to rank {p}"));
        if to == from {
            let l = self
                .get_mut(to)
                .and_then(Option::as_mut)
                .ok_or_else(|| missing(to))?;
            return Ok((&mut *l.tx, &mut *l.rx));
        }
        let [a, b] = self.get_disjoint_mut([to, from]).map_err(|_| missing(to))?;
        let a = a.as_mut().ok_or_else(|| missing(to))?;
        let b = b.as_mut().ok_or_else(|| missing(from))?;
        Ok((&mut *a.tx, &mut *b.rx))
    }
}
