//! [`Exec`]: what the same-host algorithms (crate `tutti-intra`) need from the windows
//! and from whatever moves and reduces the bytes, and [`HostExec`], the executor for
//! host memory (memcpy, the caller's CPU reduction, the window's counters).

use std::sync::atomic::Ordering;

use super::Window;
use super::shared::{Placement, SharedRegistry};
use crate::{ByteReducer, Deadline, ReduceError, Result, TransportError};

/// An address in the executor's memory (a host pointer, or a device pointer).
pub type Addr = usize;

/// One copy of [`Exec::copy_interleaved`]: `dst[..len] = src[..len]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Move {
    /// Where the bytes go.
    pub dst: Addr,
    /// Where they come from.
    pub src: Addr,
    /// How many.
    pub len: usize,
}

/// What an algorithm needs from the ranks' windows and the executor.
///
/// Addresses never overlap unless a method says so; lengths are in bytes and whole
/// elements.
pub trait Exec {
    /// Number of members (ranks on this host in the group).
    fn members(&self) -> usize;
    /// This rank's member index.
    fn index(&self) -> usize;
    /// Size of one element of the data (transfers split on element boundaries).
    fn element_size(&self) -> usize;
    /// Bytes of each window buffer.
    fn buffer_bytes(&self) -> usize;
    /// Starts a round: returns the buffer it uses (0 or 1) and the counter value the
    /// round's posts build on.
    fn begin_round(&mut self) -> (usize, u64);
    /// The address of buffer `b` of member `m`'s window.
    fn buffer(&self, m: usize, b: usize) -> Addr;
    /// `dst[..len] = src[..len]`.
    fn copy(&mut self, dst: Addr, src: Addr, len: usize) -> Result<()>;
    /// A [`copy`](Self::copy) into the caller's output that no member reads during
    /// the operation: the executor may bypass the caches (non-temporal stores) when
    /// the operation's data does not fit them.
    fn copy_out(&mut self, dst: Addr, src: Addr, len: usize) -> Result<()> {
        self.copy(dst, src, len)
    }
    /// Every `(dst, src, len)` of `copies` with [`copy`](Self::copy) and of `outs`
    /// with [`copy_out`](Self::copy_out), in any interleaving (no range is written
    /// by one and read by another). The host executor alternates small blocks of
    /// the two, so that streaming stores drain while the ordinary copies run.
    fn copy_interleaved(&mut self, copies: &[Move], outs: &[Move]) -> Result<()> {
        copies_in_order(self, copies, outs)
    }
    /// `dst[..len] = srcs[0] op srcs[1] op ... op srcs[k-1]`, folded left to right.
    fn reduce(&mut self, dst: Addr, srcs: &[Addr], len: usize) -> Result<()>;
    /// [`reduce`](Self::reduce) into `dst`, [`finalize`](Self::finalize) it, and
    /// [`copy_out`](Self::copy_out) the result to `out` (which may be one of the
    /// sources at the same offsets, never `dst`): what two-shot all_reduce does with
    /// the slice it reduces. The host executor interleaves the three in small blocks,
    /// so that streaming stores to `out` drain while the next block is reduced.
    fn reduce_copy_out(&mut self, dst: Addr, out: Addr, srcs: &[Addr], len: usize) -> Result<()> {
        reduce_then_copy_out(self, dst, out, srcs, len)
    }
    /// True when this rank may try to read the other members' own buffers (outside
    /// the windows): then [`publish`](Self::publish) and
    /// [`published`](Self::published) say, per operation, whether it can. It must
    /// be the same on every member (tutti decides it from what the members agreed
    /// at group creation and from their count of shared allocations). Executors
    /// that cannot say false, the default.
    fn reads_members_directly(&self) -> bool {
        false
    }
    /// Publishes `len` bytes at `input` (and at `output`, if given), this rank's
    /// buffers for the operation, for the members' direct reads: they may read them
    /// once this rank posts next, and are done before they post after that.
    fn publish(&mut self, _input: Addr, _output: Option<Addr>, _len: usize) -> Result<()> {
        Err(no_direct_reads("publish"))
    }
    /// Where this rank reads the `len` bytes member `m` published for the operation
    /// (after that member's post), or `None` when it cannot read them directly.
    /// Every member gets the same answer for the same member, this rank included
    /// for its own (`m == index()`).
    fn published(&mut self, _m: usize, _len: usize) -> Result<Option<Addr>> {
        Err(no_direct_reads("published"))
    }
    /// Where this rank reads, with plain loads, the `len`-byte output member `m`
    /// published, or `None`; the same answer on every member.
    fn published_output(&mut self, _m: usize, _len: usize) -> Result<Option<Addr>> {
        Err(no_direct_reads("published_output"))
    }
    /// Copies `len` bytes at `src` of member `m`'s buffer (an address
    /// [`published`](Self::published) returned) to `dst` in this rank's memory, which
    /// no member reads during the operation.
    fn copy_from_member(&mut self, _m: usize, _dst: Addr, _src: Addr, _len: usize) -> Result<()> {
        Err(no_direct_reads("copy_from_member"))
    }
    /// [`reduce`](Self::reduce) then [`finalize`](Self::finalize) into `dst` (this
    /// rank's memory, not one of the sources) with one source per member, in member
    /// order, `srcs[m]` an address [`published`](Self::published) returned for `m`.
    fn reduce_from_members(&mut self, _dst: Addr, _srcs: &[Addr], _len: usize) -> Result<()> {
        Err(no_direct_reads("reduce_from_members"))
    }
    /// [`reduce_copy_out`](Self::reduce_copy_out) with one source per member, in
    /// member order: `srcs[m]` is an address in member `m`'s own memory (this
    /// rank's for `m == index()`). Same folding order, so the same bits.
    fn reduce_copy_out_direct(
        &mut self,
        _dst: Addr,
        _out: Addr,
        _srcs: &[Addr],
        _len: usize,
    ) -> Result<()> {
        Err(no_direct_reads("reduce_copy_out_direct"))
    }
    /// The op's final step on reduced data (Avg's division, PreMulSum's scaling).
    fn finalize(&mut self, dst: Addr, len: usize) -> Result<()>;
    /// Publishes this rank's counter value.
    fn post(&mut self, value: u64) -> Result<()>;
    /// Waits until every member's counter reached `value`.
    fn wait_all(&mut self, value: u64) -> Result<()>;
}

fn no_direct_reads(what: &str) -> TransportError {
    TransportError::Unavailable(format!(
        "{what}: this executor does not read the members' own buffers"
    ))
}

/// [`Exec::copy_interleaved`] one copy after the other.
fn copies_in_order<E: Exec + ?Sized>(e: &mut E, copies: &[Move], outs: &[Move]) -> Result<()> {
    for m in copies {
        e.copy(m.dst, m.src, m.len)?;
    }
    for m in outs {
        e.copy_out(m.dst, m.src, m.len)?;
    }
    Ok(())
}

/// [`Exec::reduce_copy_out`] as three whole passes.
fn reduce_then_copy_out<E: Exec + ?Sized>(
    e: &mut E,
    dst: Addr,
    out: Addr,
    srcs: &[Addr],
    len: usize,
) -> Result<()> {
    e.reduce(dst, srcs, len)?;
    e.finalize(dst, len)?;
    e.copy_out(out, dst, len)
}

/// Bytes folded per block by [`HostExec::reduce`]: the accumulator stays in L1 while
/// every source streams through it.
const FOLD_BLOCK: usize = 16 << 10;

/// Bytes reduced then streamed out per step of [`HostExec::reduce_copy_out`]: few
/// enough streaming stores that they drain while the next block is reduced.
const INTERLEAVE_BLOCK: usize = 8 << 10;

/// Bytes of each member's source read per step of
/// [`HostExec::reduce_copy_out_direct`] from another process (`process_vm_readv`
/// into a scratch block, then reduced from there while it is in the cache).
const DIRECT_BLOCK: usize = 64 << 10;

thread_local! {
    /// Scratch blocks of [`HostExec::reduce_copy_out_direct`], kept between calls so
    /// that their pages are faulted in once.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The host executor: the window's buffers are host memory mapped in this process,
/// copies are `memcpy`, reductions the caller's [`ByteReducer`], synchronisation the
/// window's counters under `deadline`.
pub struct HostExec<'a> {
    window: &'a Window,
    reducer: Option<&'a dyn ByteReducer>,
    elem: usize,
    deadline: Deadline,
    op: &'static str,
    stream_out: bool,
    direct: bool,
    shared: Option<&'a SharedRegistry>,
    /// How this operation reads each member's published buffer.
    sources: Vec<Source>,
}

/// How [`HostExec`] reads a member's published buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Plain loads: a thread of this process, or a shared block mapped here.
    Loads,
    /// `process_vm_readv` into a scratch block.
    Kernel,
}

impl<'a> HostExec<'a> {
    /// An executor for operation `op` (named in errors) on `elem`-byte elements,
    /// reducing with `reducer` (`None` for collectives that do not reduce).
    pub fn new(
        window: &'a Window,
        reducer: Option<&'a dyn ByteReducer>,
        elem: usize,
        deadline: Deadline,
        op: &'static str,
    ) -> Self {
        HostExec {
            window,
            reducer,
            elem: reducer.map_or(elem, |r| r.element_size()),
            deadline,
            op,
            stream_out: false,
            direct: false,
            shared: None,
            sources: Vec::new(),
        }
    }

    /// Lets the algorithms read the members' buffers that lie in `registry`'s shared
    /// allocations (every member must pass its own registry of the same allocations).
    pub fn with_shared(mut self, registry: &'a SharedRegistry) -> Self {
        self.shared = Some(registry);
        self
    }

    /// Lets the algorithms read the other members' own buffers
    /// ([`Exec::reads_members_directly`]) when `agreed` (every member must pass the
    /// same) and this rank can read every member's memory.
    pub fn reading_members_directly(mut self, agreed: bool) -> Self {
        self.direct = agreed && self.window.reads_every_member_directly();
        self
    }

    /// Sizes the executor for an out-of-place operation of `bytes` per rank (in
    /// place, the output lines were just read and are cached): when every member's
    /// input and output together fill half the last-level cache, [`Exec::copy_out`]
    /// uses non-temporal stores (writing an output line through the cache first reads
    /// it from memory and evicts what the operation still needs, and nobody reads it
    /// back during the operation). Measured on Zen 4 (32 MiB L3, of which the cores
    /// keep 16-18 MiB): 2 ranks gain from 4 MiB (4.1-5.4 -> 7.7-8.4 GB/s) and lose at 2
    /// MiB (10 -> 8); 4 ranks on 2 cores gain at 4 MiB (3.0-3.9 -> 3.2-5.0), tie at 2
    /// MiB and lose at 1 MiB (6.0-7.6 -> 5.5-6.3, six interleaved rounds; an earlier
    /// threshold of a quarter of the cache for ranks outnumbering cores was measured
    /// before the output copies were interleaved with the cached work).
    /// `TUTTI_STREAM_OUTPUT=0|1` forces the choice.
    pub fn sized_for(mut self, bytes: usize) -> Self {
        let members = self.window.members();
        self.stream_out = match super::stream::forced() {
            Some(f) => f,
            None => bytes.saturating_mul(2 * members * 2) >= super::stream::llc_bytes(),
        };
        self
    }

    /// Runs `step(self, sources, offset, k)` over `len` bytes of one source per member
    /// (`srcs[m]` published by member `m`) in blocks of up to [`DIRECT_BLOCK`]:
    /// members read with plain loads are passed as they are, the others copied into
    /// scratch blocks first with `process_vm_readv`.
    fn fold_members(
        &mut self,
        srcs: &[Addr],
        len: usize,
        mut step: impl FnMut(&mut Self, &[Addr], usize, usize) -> Result<()>,
    ) -> Result<()> {
        let (n, me) = (self.window.members(), self.window.index());
        if !self.reads_members_directly() {
            return Err(no_direct_reads(self.op));
        }
        if srcs.len() != n {
            return Err(TransportError::InvalidArgument(format!(
                "{}: a direct reduction takes one source per member ({n}), got {}",
                self.op,
                srcs.len()
            )));
        }
        let remote: Vec<usize> = (0..n)
            .filter(|&m| m != me && self.sources.get(m) == Some(&Source::Kernel))
            .collect();
        if remote.is_empty() {
            // Threads of this process, or shared blocks every member maps: the
            // members' buffers are plain addresses here.
            return step(self, srcs, 0, len);
        }
        let elem = self.elem.max(1);
        let block = (DIRECT_BLOCK / elem * elem).max(elem);
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let need = remote.len() * block;
            if scratch.len() < need {
                scratch.resize(need, 0);
            }
            let mut at: Vec<Addr> = srcs.to_vec();
            let mut off = 0;
            while off < len {
                let k = block.min(len - off);
                for (m, a) in at.iter_mut().enumerate() {
                    *a = srcs[m] + off;
                }
                for (j, &m) in remote.iter().enumerate() {
                    let slot = &mut scratch[j * block..j * block + k];
                    self.window.read_directly(m, (srcs[m] + off) as u64, slot)?;
                    at[m] = slot.as_ptr() as Addr;
                }
                step(self, &at, off, k)?;
                off += k;
            }
            Ok(())
        })
    }

    fn reducer(&self) -> Result<&'a dyn ByteReducer> {
        self.reducer.ok_or_else(|| {
            TransportError::InvalidArgument(format!("{}: reduction without a reducer", self.op))
        })
    }

    fn check_disjoint(&self, dst: Addr, src: Addr, len: usize) -> Result<()> {
        if overlaps(dst, src, len) {
            return Err(TransportError::InvalidArgument(format!(
                "{}: overlapping copy of {len} bytes",
                self.op
            )));
        }
        Ok(())
    }

    fn local_error(&self, source: ReduceError) -> TransportError {
        TransportError::Reduce {
            peer: format!("{} (local)", self.window.peer_name(self.window.index())),
            source,
        }
    }
}

fn overlaps(a: usize, b: usize, len: usize) -> bool {
    a < b + len && b < a + len
}

impl Exec for HostExec<'_> {
    fn members(&self) -> usize {
        self.window.members()
    }

    fn index(&self) -> usize {
        self.window.index()
    }

    fn element_size(&self) -> usize {
        self.elem
    }

    fn buffer_bytes(&self) -> usize {
        self.window.data_bytes()
    }

    fn begin_round(&mut self) -> (usize, u64) {
        let r = self.window.rounds.fetch_add(1, Ordering::Relaxed);
        ((r % 2) as usize, self.window.posted())
    }

    fn buffer(&self, m: usize, b: usize) -> Addr {
        self.window.data(m, b) as Addr
    }

    fn copy(&mut self, dst: Addr, src: Addr, len: usize) -> Result<()> {
        if len == 0 || dst == src {
            return Ok(());
        }
        self.check_disjoint(dst, src, len)?;
        // SAFETY: the algorithms hand in `len`-byte ranges of the caller's buffers
        // and of mapped windows, valid for the call, not overlapping (checked); the
        // round protocol guarantees no one else writes them meanwhile.
        unsafe { crate::copy::copy(dst as *mut u8, src as *const u8, len) };
        Ok(())
    }

    fn copy_out(&mut self, dst: Addr, src: Addr, len: usize) -> Result<()> {
        if !self.stream_out || len < super::stream::MIN_BYTES || dst == src {
            return self.copy(dst, src, len);
        }
        self.check_disjoint(dst, src, len)?;
        // SAFETY: as in `copy`: valid, non-overlapping (checked) ranges that no one
        // else writes during the call.
        unsafe { super::stream::copy_nt(dst as *mut u8, src as *const u8, len) };
        Ok(())
    }

    fn reduce(&mut self, dst: Addr, srcs: &[Addr], len: usize) -> Result<()> {
        let reducer = self.reducer()?;
        match srcs {
            [] => {
                return Err(TransportError::InvalidArgument(format!(
                    "{}: reduction of no sources",
                    self.op
                )));
            }
            [one] => return self.copy(dst, *one, len),
            _ => {}
        }
        if srcs.iter().any(|&s| overlaps(dst, s, len)) {
            return Err(TransportError::InvalidArgument(format!(
                "{}: reduction destination overlaps a source",
                self.op
            )));
        }
        let block = FOLD_BLOCK / self.elem.max(1) * self.elem.max(1);
        let mut off = 0;
        while off < len {
            let l = block.min(len - off);
            // SAFETY: as in `copy`: valid, non-overlapping (checked) ranges that no
            // one else writes during the call.
            let (d, a, b) = unsafe {
                (
                    std::slice::from_raw_parts_mut((dst + off) as *mut u8, l),
                    std::slice::from_raw_parts((srcs[0] + off) as *const u8, l),
                    std::slice::from_raw_parts((srcs[1] + off) as *const u8, l),
                )
            };
            reducer.reduce(d, a, b).map_err(|e| self.local_error(e))?;
            for &s in &srcs[2..] {
                // SAFETY: as above.
                let s = unsafe { std::slice::from_raw_parts((s + off) as *const u8, l) };
                reducer
                    .reduce_inplace(d, s)
                    .map_err(|e| self.local_error(e))?;
            }
            off += l;
        }
        Ok(())
    }

    fn copy_interleaved(&mut self, copies: &[Move], outs: &[Move]) -> Result<()> {
        if !self.stream_out {
            return copies_in_order(self, copies, outs);
        }
        for m in copies.iter().chain(outs) {
            self.check_disjoint(m.dst, m.src, m.len)?;
        }
        let step = INTERLEAVE_BLOCK / self.elem.max(1) * self.elem.max(1);
        let (mut c, mut o) = (Blocks::new(copies, step), Blocks::new(outs, step));
        loop {
            let a = c.next();
            if let Some(m) = a {
                // SAFETY: a block of one of the caller's copies: valid, disjoint
                // (checked above) ranges that no one else writes during the call.
                unsafe { crate::copy::copy(m.dst as *mut u8, m.src as *const u8, m.len) };
            }
            let b = o.next();
            if let Some(m) = b {
                // SAFETY: as above, for the output copies.
                unsafe {
                    super::stream::copy_nt_unfenced(m.dst as *mut u8, m.src as *const u8, m.len)
                };
            }
            if a.is_none() && b.is_none() {
                break;
            }
        }
        super::stream::fence();
        Ok(())
    }

    fn reduce_copy_out(&mut self, dst: Addr, out: Addr, srcs: &[Addr], len: usize) -> Result<()> {
        if !self.stream_out || len < super::stream::MIN_BYTES || srcs.len() > 16 {
            return reduce_then_copy_out(self, dst, out, srcs, len);
        }
        self.check_disjoint(out, dst, len)?;
        let step = INTERLEAVE_BLOCK / self.elem.max(1) * self.elem.max(1);
        let mut at = [0 as Addr; 16];
        let at = &mut at[..srcs.len()];
        let mut off = 0;
        while off < len {
            let k = step.min(len - off);
            for (a, &s) in at.iter_mut().zip(srcs) {
                *a = s + off;
            }
            self.reduce(dst + off, at, k)?;
            self.finalize(dst + off, k)?;
            // SAFETY: `dst + off` and `out + off` are `k`-byte ranges inside the
            // window slice and the caller's output, valid for the call and disjoint
            // (checked above); a source that `out` shares was read for this block
            // already and is not read again.
            unsafe {
                super::stream::copy_nt_unfenced((out + off) as *mut u8, (dst + off) as *const u8, k)
            };
            off += k;
        }
        super::stream::fence();
        Ok(())
    }

    fn reads_members_directly(&self) -> bool {
        self.direct || self.shared.is_some_and(|r| r.allocations() > 0)
    }

    fn publish(&mut self, input: Addr, output: Option<Addr>, len: usize) -> Result<()> {
        if !self.reads_members_directly() {
            return Err(no_direct_reads(self.op));
        }
        // Between threads every buffer is readable by address.
        let place = |addr: Addr| match self.shared {
            Some(r) if !self.window.every_member_in_process() => r.place(addr, len),
            _ => Placement::Private,
        };
        self.window.publish_source(0, place(input), input as u64);
        if let Some(o) = output {
            self.window.publish_source(1, place(o), o as u64);
        }
        Ok(())
    }

    fn published_output(&mut self, m: usize, len: usize) -> Result<Option<Addr>> {
        if !self.reads_members_directly() || m >= self.window.members() {
            return Err(no_direct_reads(self.op));
        }
        Ok(match self.window.published_source(m, 1) {
            // Plain loads only: a shared block mapped here, or a thread's buffer.
            (Some(id), off) => self.shared.and_then(|r| r.resolve(id, m, off, len)),
            (None, a) if self.direct && self.window.every_member_in_process() => Some(a as Addr),
            (None, _) => None,
        })
    }

    fn published(&mut self, m: usize, len: usize) -> Result<Option<Addr>> {
        let n = self.window.members();
        if !self.reads_members_directly() || m >= n {
            return Err(no_direct_reads(self.op));
        }
        if self.sources.len() != n {
            self.sources = vec![Source::Loads; n];
        }
        let (id, v) = self.window.published_source(m, 0);
        let found = match id {
            // In a shared block every member maps: plain loads.
            Some(id) => self
                .shared
                .and_then(|r| r.resolve(id, m, v, len))
                .map(|a| (a, Source::Loads)),
            None if !self.direct => None,
            None if self.window.reads_in_process(m) => Some((v as Addr, Source::Loads)),
            None => Some((v as Addr, Source::Kernel)),
        };
        Ok(found.map(|(a, how)| {
            self.sources[m] = how;
            a
        }))
    }

    fn copy_from_member(&mut self, m: usize, dst: Addr, src: Addr, len: usize) -> Result<()> {
        match self.sources.get(m) {
            _ if len == 0 => Ok(()),
            Some(Source::Loads) => self.copy_out(dst, src, len),
            Some(Source::Kernel) => {
                // SAFETY: `dst` is `len` bytes of this rank's memory that the algorithm
                // hands in for this copy (the caller's output), valid for the call and
                // touched by no one else meanwhile.
                let out = unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, len) };
                self.window.read_directly(m, src as u64, out)
            }
            None => Err(no_direct_reads(self.op)),
        }
    }

    fn reduce_from_members(&mut self, dst: Addr, srcs: &[Addr], len: usize) -> Result<()> {
        self.fold_members(srcs, len, |e, at, off, k| {
            e.reduce(dst + off, at, k)?;
            e.finalize(dst + off, k)
        })
    }

    fn reduce_copy_out_direct(
        &mut self,
        dst: Addr,
        out: Addr,
        srcs: &[Addr],
        len: usize,
    ) -> Result<()> {
        self.fold_members(srcs, len, |e, at, off, k| {
            e.reduce_copy_out(dst + off, out + off, at, k)
        })
    }

    fn finalize(&mut self, dst: Addr, len: usize) -> Result<()> {
        let Some(reducer) = self.reducer else {
            return Ok(());
        };
        if len == 0 {
            return Ok(());
        }
        // SAFETY: as in `copy`.
        let d = unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, len) };
        reducer.finalize(d).map_err(|e| self.local_error(e))
    }

    fn post(&mut self, value: u64) -> Result<()> {
        self.window.post(value);
        Ok(())
    }

    fn wait_all(&mut self, value: u64) -> Result<()> {
        self.window.wait_all(value, self.deadline, self.op)
    }
}

/// The copies of a list cut into blocks of at most `step` bytes, in order.
struct Blocks<'m> {
    moves: &'m [Move],
    step: usize,
    i: usize,
    off: usize,
}

impl<'m> Blocks<'m> {
    fn new(moves: &'m [Move], step: usize) -> Self {
        Blocks {
            moves,
            step: step.max(1),
            i: 0,
            off: 0,
        }
    }
}

impl Iterator for Blocks<'_> {
    type Item = Move;
    fn next(&mut self) -> Option<Move> {
        loop {
            let m = self.moves.get(self.i)?;
            if self.off < m.len {
                let len = self.step.min(m.len - self.off);
                let b = Move {
                    dst: m.dst + self.off,
                    src: m.src + self.off,
                    len,
                };
                self.off += len;
                return Some(b);
            }
            self.i += 1;
            self.off = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Blocks, Move};

    #[test]
    fn blocks_cut_every_copy_in_order_and_skip_empty_ones() {
        let m = |dst, src, len| Move { dst, src, len };
        let moves = [m(100, 1000, 10), m(200, 2000, 0), m(300, 3000, 5)];
        let got: Vec<Move> = Blocks::new(&moves, 4).collect();
        assert_eq!(
            got,
            [
                m(100, 1000, 4),
                m(104, 1004, 4),
                m(108, 1008, 2),
                m(300, 3000, 4),
                m(304, 3004, 1),
            ]
        );
        assert_eq!(Blocks::new(&[], 4).next(), None);
    }
}
