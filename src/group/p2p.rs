//! Point-to-point messages through the group's progress engine
//! (`tutti_transport::p2p`): blocking and asynchronous sends and receives matched by
//! (peer, tag), receives from any source, and batches.
//!
//! Posted operations advance together: a send never blocks the receives behind it,
//! so isend/irecv posted in any order on the two sides never deadlock as long as every
//! send has a matching receive. A receive takes the first message from its source (or
//! from any rank) with its tag: messages with different tags may be received in any
//! order, messages between two ranks with equal tags in the order they were sent
//! (torch/Gloo semantics). Lengths must match: a mismatch fails the receive with
//! [`TransportError::Mismatch`], and a large send with it (a small send has
//! completed once buffered, before the receiver could refuse it).
//!
//! Point-to-point operations run beside the collectives (they do not wait for earlier
//! asynchronous collectives, and a collective does not wait for them), each with the
//! handle's timeout.

use std::sync::{Arc, Weak};

use tutti_transport::{Deadline, TransportError};

use super::scope::Post;
use super::work::{Driver, Work};
use super::{Inner, ProcessGroup};
use crate::{Element, Error, Result};

/// One operation of [`ProcessGroup::batch_isend_irecv`] (torch's `P2POp`).
#[derive(Debug)]
pub enum P2POp<T> {
    /// Send `buf` to `peer` with `tag`.
    Send {
        /// The data (handed back when the batch completes).
        buf: Vec<T>,
        /// The destination rank.
        peer: usize,
        /// The message tag.
        tag: u32,
    },
    /// Receive into `buf` from `peer` with `tag`.
    Recv {
        /// The buffer, of the message's length.
        buf: Vec<T>,
        /// The source rank.
        peer: usize,
        /// The message tag.
        tag: u32,
    },
}

/// A typed buffer as the engine's bytes.
struct Bytes<T>(Vec<T>);

impl<T: Element> AsRef<[u8]> for Bytes<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

impl<T: Element> AsMut<[u8]> for Bytes<T> {
    fn as_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.0)
    }
}

impl Driver for tutti_transport::p2p::Engine {
    fn drive(&self, done: &dyn Fn() -> bool, until: Option<std::time::Instant>) {
        tutti_transport::p2p::Engine::drive(self, done, until);
    }
}

/// What a point-to-point operation needs to report its failure.
#[derive(Clone)]
struct Reporter {
    inner: Weak<Inner>,
    op: &'static str,
    seq: u64,
    rank: usize,
}

impl Reporter {
    /// Turns a transport error into the group's error; a dead or broken peer also
    /// fails the group (a timeout or a length mismatch fails only the operation).
    fn error(&self, source: TransportError) -> Error {
        let fatal = matches!(
            source,
            TransportError::PeerGone { .. } | TransportError::Corrupt { .. }
        );
        let err = Error::Collective {
            op: self.op,
            seq: self.seq,
            rank: self.rank,
            source,
            missing_ranks: Vec::new(),
        };
        if fatal && let Some(inner) = self.inner.upgrade() {
            inner.fail(err.to_string());
        }
        err
    }
}

impl ProcessGroup {
    fn check_peer(&self, what: &str, peer: usize) -> Result<()> {
        if peer >= self.size() {
            return Err(Error::InvalidArgument(format!(
                "{what}: rank {peer} is outside the group of {} ranks",
                self.size()
            )));
        }
        if peer == self.rank() {
            return Err(Error::InvalidArgument(format!(
                "{what}: rank {peer} is this rank (send/recv to self is not supported)"
            )));
        }
        Ok(())
    }

    fn reporter(&self, op: &'static str) -> Result<Reporter> {
        self.inner.check_usable()?;
        Ok(Reporter {
            inner: Arc::downgrade(&self.inner),
            op,
            seq: self
                .inner
                .seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            rank: self.rank(),
        })
    }

    fn deadline(&self) -> Deadline {
        Deadline::after(self.timeout)
    }

    /// Sends `buf` to rank `dst`, to be received by a `recv` with the same `tag`.
    /// Returns once the data has left `buf` (small messages: buffered; large ones:
    /// taken by the receiver).
    pub fn send<T: Element>(&self, buf: &[T], dst: usize, tag: u32) -> Result<()> {
        self.check_peer("send", dst)?;
        let rep = self.reporter("send")?;
        self.inner
            .engine
            .send(dst, tag, bytemuck::cast_slice(buf), self.deadline())
            .map_err(|e| rep.error(e))
    }

    /// Receives into `buf` the next message from rank `src` with `tag`; it must have
    /// `buf`'s length.
    pub fn recv<T: Element>(&self, buf: &mut [T], src: usize, tag: u32) -> Result<()> {
        self.check_peer("recv", src)?;
        let rep = self.reporter("recv")?;
        self.inner
            .engine
            .recv(
                Some(src),
                tag,
                bytemuck::cast_slice_mut(buf),
                self.deadline(),
            )
            .map(|_| ())
            .map_err(|e| rep.error(e))
    }

    /// Sends `send` to `dst` and receives `recv` from `src` (same `tag`), the two in
    /// flight together: MPI's `Sendrecv`, nccl-tests' sendrecv (a send and a receive
    /// inside one group). A ring shift (`dst = rank + 1`, `src = rank - 1`) or a
    /// pairwise exchange of any size cannot deadlock.
    pub fn sendrecv<T: Element>(
        &self,
        send: &[T],
        dst: usize,
        recv: &mut [T],
        src: usize,
        tag: u32,
    ) -> Result<()> {
        self.check_peer("sendrecv (send)", dst)?;
        self.check_peer("sendrecv (recv)", src)?;
        let rep = self.reporter("sendrecv")?;
        self.inner
            .engine
            .sendrecv(
                dst,
                bytemuck::cast_slice(send),
                Some(src),
                bytemuck::cast_slice_mut(recv),
                tag,
                self.deadline(),
            )
            .map(|_| ())
            .map_err(|e| rep.error(e))
    }

    /// Receives into `buf` the next message with `tag` from any rank (torch's
    /// `src=None`); returns the sender's rank.
    pub fn recv_any<T: Element>(&self, buf: &mut [T], tag: u32) -> Result<usize> {
        let rep = self.reporter("recv")?;
        self.inner
            .engine
            .recv(None, tag, bytemuck::cast_slice_mut(buf), self.deadline())
            .map_err(|e| rep.error(e))
    }

    fn p2p_work<R: Send + 'static>(&self) -> (Work<R>, super::work::Completer<R>) {
        let driver: Arc<dyn Driver> = self.inner.engine.clone();
        Work::with_driver(Some(driver))
    }

    /// Posts `post` now, or at the end of the active group scope.
    fn post(&self, post: Post) {
        if let Some(deferred) = self.inner.defer_p2p(post) {
            self.inner.engine.batch(|b| deferred(b));
        }
    }

    /// Asynchronous [`send`](Self::send): `buf` comes back from [`Work::wait`].
    pub fn send_async<T: Element>(&self, buf: Vec<T>, dst: usize, tag: u32) -> Work<Vec<T>> {
        let rep = match self
            .check_peer("send", dst)
            .and_then(|()| self.reporter("send"))
        {
            Ok(r) => r,
            Err(e) => return Work::ready(Err(e)),
        };
        let (work, done) = self.p2p_work();
        let dl = self.deadline();
        self.post(Box::new(move |b| {
            b.send_owned(dst, tag, Bytes(buf), dl, move |r| {
                done.complete(r.map(|b| b.0).map_err(|e| rep.error(e)));
            });
        }));
        self.inner.register(&work);
        work
    }

    /// Asynchronous [`recv`](Self::recv): the filled `buf` comes back from
    /// [`Work::wait`].
    pub fn recv_async<T: Element>(&self, buf: Vec<T>, src: usize, tag: u32) -> Work<Vec<T>> {
        let rep = match self
            .check_peer("recv", src)
            .and_then(|()| self.reporter("recv"))
        {
            Ok(r) => r,
            Err(e) => return Work::ready(Err(e)),
        };
        let (work, done) = self.p2p_work();
        let dl = self.deadline();
        self.post(Box::new(move |b| {
            b.recv_owned(Some(src), tag, Bytes(buf), dl, move |r| {
                done.complete(r.map(|(b, _)| b.0).map_err(|e| rep.error(e)));
            });
        }));
        self.inner.register(&work);
        work
    }

    /// Asynchronous [`recv_any`](Self::recv_any): the filled `buf` and the sender's
    /// rank.
    pub fn recv_any_async<T: Element>(&self, buf: Vec<T>, tag: u32) -> Work<(Vec<T>, usize)> {
        let rep = match self.reporter("recv") {
            Ok(r) => r,
            Err(e) => return Work::ready(Err(e)),
        };
        let (work, done) = self.p2p_work();
        let dl = self.deadline();
        self.post(Box::new(move |b| {
            b.recv_owned(None, tag, Bytes(buf), dl, move |r| {
                done.complete(r.map(|(b, s)| (b.0, s)).map_err(|e| rep.error(e)));
            });
        }));
        self.inner.register(&work);
        work
    }

    /// Posts every operation at once (torch's `batch_isend_irecv`) and returns a Work
    /// that completes when all have, with the buffers in the order of `ops`. Any
    /// order of sends and receives, on any rank, is safe.
    pub fn batch_isend_irecv<T: Element>(&self, ops: Vec<P2POp<T>>) -> Work<Vec<Vec<T>>> {
        for op in &ops {
            let (what, peer) = match op {
                P2POp::Send { peer, .. } => ("batch_isend_irecv (send)", *peer),
                P2POp::Recv { peer, .. } => ("batch_isend_irecv (recv)", *peer),
            };
            if let Err(e) = self.check_peer(what, peer) {
                return Work::ready(Err(e));
            }
        }
        let mut works = Vec::with_capacity(ops.len());
        let mut posts: Vec<Post> = Vec::new();
        let dl = self.deadline();
        for op in ops {
            let (work, done) = self.p2p_work();
            works.push(work);
            match op {
                P2POp::Send { buf, peer, tag } => {
                    let rep = match self.reporter("send") {
                        Ok(r) => r,
                        Err(e) => return Work::ready(Err(e)),
                    };
                    posts.push(Box::new(move |b| {
                        b.send_owned(peer, tag, Bytes(buf), dl, move |r| {
                            done.complete(r.map(|b| b.0).map_err(|e| rep.error(e)));
                        });
                    }));
                }
                P2POp::Recv { buf, peer, tag } => {
                    let rep = match self.reporter("recv") {
                        Ok(r) => r,
                        Err(e) => return Work::ready(Err(e)),
                    };
                    posts.push(Box::new(move |b| {
                        b.recv_owned(Some(peer), tag, Bytes(buf), dl, move |r| {
                            done.complete(r.map(|(b, _)| b.0).map_err(|e| rep.error(e)));
                        });
                    }));
                }
            }
        }
        self.post(Box::new(move |b| {
            for p in posts {
                p(b);
            }
        }));
        let all = Work::all(works);
        self.inner.register(&all);
        all
    }
}
