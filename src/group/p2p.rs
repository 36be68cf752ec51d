//! Point-to-point send/recv with tags, and the asynchronous variants of the
//! operations (owned buffers, a [`Work`] that hands them back).
//!
//! Messages between two ranks travel on the same ordered link as the collectives
//! and are matched in program order, as in NCCL: each message carries a header
//! (tag, length), and a receive whose tag or length does not match the next message
//! from that peer is an error naming both, instead of silent corruption.

use tutti_transport::{Links, TransportError, ops};

use super::ProcessGroup;
use super::check::Desc;
use super::work::Work;
use crate::{Element, Error, ReduceOp, Result};

const P2P_MAGIC: u32 = 0x5032_5054; // "TP2P"
const HEADER: usize = 16;

fn header(tag: u32, len: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&P2P_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&tag.to_le_bytes());
    h[8..16].copy_from_slice(&len.to_le_bytes());
    h
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

    /// Sends `buf` to rank `dst`, to be received by a `recv` with the same `tag`.
    /// Returns once the message is in the link's buffers (small messages) or read by
    /// the peer (large ones).
    pub fn send<T: Element>(&self, buf: &[T], dst: usize, tag: u32) -> Result<()> {
        self.check_peer("send", dst)?;
        let data: &[u8] = bytemuck::cast_slice(buf);
        let desc = Desc::new(Some(T::DTYPE), buf.len(), Some(dst), None);
        self.run_p2p("send", desc, |links, dl| {
            let (tx, _) = links.pair(dst, dst)?;
            let chunk = tx.max_message();
            ops::send(tx, &header(tag, data.len() as u64), chunk, dl)?;
            ops::send(tx, data, chunk, dl)
        })
    }

    /// Receives into `buf` the next message from rank `src`, which must carry `tag`
    /// and `buf`'s length.
    pub fn recv<T: Element>(&self, buf: &mut [T], src: usize, tag: u32) -> Result<()> {
        self.check_peer("recv", src)?;
        let desc = Desc::new(Some(T::DTYPE), buf.len(), Some(src), None);
        let out: &mut [u8] = bytemuck::cast_slice_mut(buf);
        let want = out.len() as u64;
        self.run_p2p("recv", desc, |links, dl| {
            let (_, rx) = links.pair(src, src)?;
            let mut h = [0u8; HEADER];
            ops::recv(rx, &mut h, dl)?;
            let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let got_tag = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let mut l = [0u8; 8];
            l.copy_from_slice(&h[8..16]);
            let got_len = u64::from_le_bytes(l);
            let mismatch = |detail: String| TransportError::Corrupt {
                peer: rx.peer().to_string(),
                detail,
            };
            if magic != P2P_MAGIC {
                return Err(mismatch(
                    "expected a point-to-point message but got collective data (the ranks' calls do not match)".into(),
                ));
            }
            if got_tag != tag || got_len != want {
                return Err(mismatch(format!(
                    "recv expected tag {tag} and {want} bytes, the next message has tag {got_tag} and {got_len} bytes (messages between two ranks are matched in order)"
                )));
            }
            ops::recv(rx, out, dl)
        })
    }

    /// Runs a point-to-point op: like a collective, but without the group-wide
    /// `TUTTI_CHECK` comparison (only two ranks take part).
    fn run_p2p<R>(
        &self,
        op: &'static str,
        _desc: Desc,
        f: impl FnOnce(
            &mut super::links::LinkTable,
            tutti_transport::Deadline,
        ) -> std::result::Result<R, TransportError>,
    ) -> Result<R> {
        self.inner.worker.drain();
        self.inner
            .run(op, None, self.timeout, |paths, dl| f(&mut paths.links, dl))
    }

    /// Queues `f` on the group's worker thread (after every earlier asynchronous op).
    fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce(&ProcessGroup) -> Result<R> + Send + 'static,
    ) -> Work<R> {
        let (work, done) = Work::new();
        let g = self.clone();
        self.inner
            .worker
            .submit(Box::new(move || done.complete(f(&g))));
        work
    }

    /// Asynchronous [`all_reduce`](Self::all_reduce): the buffer comes back from
    /// [`Work::wait`].
    pub fn all_reduce_async<T: Element>(&self, mut buf: Vec<T>, op: ReduceOp) -> Work<Vec<T>> {
        self.spawn(move |g| g.all_reduce(&mut buf, op).map(|()| buf))
    }

    /// Asynchronous [`broadcast`](Self::broadcast).
    pub fn broadcast_async<T: Element>(&self, mut buf: Vec<T>, root: usize) -> Work<Vec<T>> {
        self.spawn(move |g| g.broadcast(&mut buf, root).map(|()| buf))
    }

    /// Asynchronous [`all_gather`](Self::all_gather): returns the gathered buffer.
    pub fn all_gather_async<T: Element>(&self, input: Vec<T>) -> Work<Vec<T>> {
        self.spawn(move |g| {
            let mut out = vec![<T as bytemuck::Zeroable>::zeroed(); input.len() * g.size()];
            g.all_gather(&input, &mut out).map(|()| out)
        })
    }

    /// Asynchronous [`send`](Self::send).
    pub fn send_async<T: Element>(&self, buf: Vec<T>, dst: usize, tag: u32) -> Work<Vec<T>> {
        self.spawn(move |g| g.send(&buf, dst, tag).map(|()| buf))
    }

    /// Asynchronous [`recv`](Self::recv) into `buf`.
    pub fn recv_async<T: Element>(&self, mut buf: Vec<T>, src: usize, tag: u32) -> Work<Vec<T>> {
        self.spawn(move |g| g.recv(&mut buf, src, tag).map(|()| buf))
    }

    /// Asynchronous [`barrier`](Self::barrier).
    pub fn barrier_async(&self) -> Work<()> {
        self.spawn(|g| g.barrier())
    }
}
