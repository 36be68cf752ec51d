//! The collectives c10d users reach for with per-rank sizes: `all_to_all_single`
//! with split sizes (the MoE dispatch), `all_gather_v`, `gather_v` and `scatter_v` to
//! and from per-rank lengths, and `monitored_barrier`.
//!
//! Split sizes are checked across ranks before any data moves: a rank that sends
//! another a piece of a different length than it expects is an error on every rank,
//! never silent corruption.

use std::ops::Range;
use std::time::{Duration, Instant};

use tutti_intra as intra;
use tutti_ring::Schedule;
use tutti_transport::window::{Addr, HostExec};
use tutti_transport::{ByteReducer, Deadline, TransportError};

use super::ProcessGroup;
use super::check::Desc;
use super::collectives::HostReducer;
use super::paths::{Paths, Route};
use crate::{DataType, Element, Error, ReduceOp, Result};

fn prefix_sums(counts: &[usize]) -> Vec<usize> {
    counts
        .iter()
        .scan(0, |acc, &c| {
            let d = *acc;
            *acc += c;
            Some(d)
        })
        .collect()
}

fn ranges(counts: &[usize], elem: usize) -> Vec<Range<usize>> {
    prefix_sums(counts)
        .into_iter()
        .zip(counts)
        .map(|(d, &c)| d * elem..(d + c) * elem)
        .collect()
}

fn bad(what: &str, detail: String) -> Error {
    Error::InvalidArgument(format!("{what}: {detail}"))
}

impl ProcessGroup {
    fn check_counts(&self, what: &str, name: &str, counts: &[usize]) -> Result<()> {
        if counts.len() != self.size() {
            return Err(bad(
                what,
                format!(
                    "{} {name} for a group of {} ranks",
                    counts.len(),
                    self.size()
                ),
            ));
        }
        Ok(())
    }

    /// Inside an operation: exchanges every rank's send lengths and the largest piece,
    /// so that each rank can check what it expects. Returns the largest piece any rank
    /// sends (bytes) and whether some rank found a mismatch.
    fn agree_on_splits(
        &self,
        paths: &mut Paths,
        dl: Deadline,
        send: &[usize],
        recv: &[usize],
    ) -> std::result::Result<(usize, Option<String>), TransportError> {
        let n = self.size();
        let out: Vec<u64> = send.iter().map(|&l| l as u64).collect();
        let mut got = vec![0u64; n];
        let (ob, gb): (&[u8], &mut [u8]) = (
            bytemuck::cast_slice(&out),
            bytemuck::cast_slice_mut(&mut got),
        );
        let route = paths.route(n, self.inner.opts.algo);
        match (route, &paths.window) {
            (Route::Window, Some(w)) => {
                let mut e = HostExec::new(w, None, 8, dl, "all_to_all (split sizes)");
                intra::all_to_all(&mut e, ob.as_ptr() as Addr, gb.as_mut_ptr() as Addr, 8)?;
            }
            _ => {
                let mut s = self.schedule(&mut paths.links, 4096, dl);
                tutti_ring::all_to_all(&mut s, ob, gb)?;
            }
        }
        let mismatch = (0..n).find(|&s| got[s] as usize != recv[s]).map(|s| {
            format!(
                "rank {s} sends rank {} {} bytes, which expects {}",
                self.rank(),
                got[s],
                recv[s]
            )
        });
        let local_max = send.iter().chain(recv).copied().max().unwrap_or(0) as u64;
        let mut summary = [local_max, u64::from(mismatch.is_some())];
        let max = HostReducer::new(DataType::U64, ReduceOp::Max, n).map_err(|e| {
            TransportError::InvalidArgument(format!("all_to_all (split sizes): {e}"))
        })?;
        let sb: &mut [u8] = bytemuck::cast_slice_mut(&mut summary);
        match (route, &paths.window) {
            (Route::Window, Some(w)) => super::small::all_reduce(w, &max, None, sb, dl)?,
            _ => {
                let mut s = self.schedule(&mut paths.links, 4096, dl);
                tutti_tree::all_reduce(&mut s, sb, &max as &dyn ByteReducer)?;
            }
        }
        let some_mismatch = summary[1] != 0;
        let detail = match (mismatch, some_mismatch) {
            (Some(m), _) => Some(m),
            (None, true) => Some("another rank found a split size mismatch".to_string()),
            (None, false) => None,
        };
        Ok((summary[0] as usize, detail))
    }

    fn schedule<'a>(
        &self,
        links: &'a mut super::links::LinkTable,
        chunk: usize,
        deadline: Deadline,
    ) -> Schedule<'a> {
        let chunk = chunk.min(links.max_message).max(16);
        Schedule {
            rank: self.rank(),
            size: self.size(),
            links,
            chunk,
            deadline,
            ahead: self.inner.opts.ring_ahead,
        }
    }

    /// Uneven all-to-all in bytes: pieces `sends[i]` of `input` go to rank `i`, rank
    /// `i`'s piece lands in `output[recvs[i]]`.
    fn all_to_all_bytes(
        &self,
        what: &'static str,
        elem: usize,
        input: &[u8],
        sends: &[Range<usize>],
        output: &mut [u8],
        recvs: &[Range<usize>],
    ) -> Result<()> {
        let desc = Desc::new(None, input.len() / elem.max(1), None, None);
        let send_lens: Vec<usize> = sends.iter().map(|r| r.len()).collect();
        let recv_lens: Vec<usize> = recvs.iter().map(|r| r.len()).collect();
        let mismatch = self.run(what, desc, |paths, dl| {
            let (longest, mismatch) = self.agree_on_splits(paths, dl, &send_lens, &recv_lens)?;
            if mismatch.is_some() {
                return Ok(mismatch);
            }
            match (
                paths.route(self.size(), self.inner.opts.algo),
                &paths.window,
            ) {
                (Route::Window, Some(w)) => {
                    let mut e = HostExec::new(w, None, elem, dl, what);
                    let sd: Vec<usize> = sends.iter().map(|r| r.start).collect();
                    let rd: Vec<usize> = recvs.iter().map(|r| r.start).collect();
                    intra::all_to_all_v(
                        &mut e,
                        input.as_ptr() as Addr,
                        &send_lens,
                        &sd,
                        output.as_mut_ptr() as Addr,
                        &recv_lens,
                        &rd,
                        longest,
                    )?;
                }
                _ => {
                    let chunk = self.inner.opts.chunk.unwrap_or(64 << 10);
                    let mut s = self.schedule(&mut paths.links, chunk, dl);
                    tutti_ring::all_to_all_v(&mut s, input, sends, output, recvs)?;
                }
            }
            Ok(None)
        })?;
        match mismatch {
            Some(m) => Err(bad(what, format!("split sizes disagree: {m}"))),
            None => Ok(()),
        }
    }

    /// All-to-all with split sizes (torch's `all_to_all_single` with
    /// `input_split_sizes` / `output_split_sizes`, the MoE dispatch): the first
    /// `input_splits[0]` elements of `input` go to rank 0, the next `input_splits[1]`
    /// to rank 1, ...; rank `i`'s piece for this rank lands at offset
    /// `sum(output_splits[..i])` of `output`. Splits may be zero. Empty split lists
    /// mean equal splits. Every rank's `input_splits[j]` must equal rank `j`'s
    /// `output_splits[i]`: a mismatch is an error on every rank before any data moves.
    pub fn all_to_all_single<T: Element>(
        &self,
        input: &[T],
        output: &mut [T],
        input_splits: &[usize],
        output_splits: &[usize],
    ) -> Result<()> {
        const WHAT: &str = "all_to_all_single";
        let n = self.size();
        let even = |len: usize, name: &str| -> Result<Vec<usize>> {
            if !len.is_multiple_of(n) {
                return Err(bad(
                    WHAT,
                    format!("{name} of {len} elements does not split evenly over {n} ranks"),
                ));
            }
            Ok(vec![len / n; n])
        };
        let ins = if input_splits.is_empty() {
            even(input.len(), "input")?
        } else {
            input_splits.to_vec()
        };
        let outs = if output_splits.is_empty() {
            even(output.len(), "output")?
        } else {
            output_splits.to_vec()
        };
        self.check_counts(WHAT, "input splits", &ins)?;
        self.check_counts(WHAT, "output splits", &outs)?;
        if ins.iter().sum::<usize>() != input.len() {
            return Err(bad(
                WHAT,
                format!(
                    "input splits sum to {} elements, the input has {}",
                    ins.iter().sum::<usize>(),
                    input.len()
                ),
            ));
        }
        if outs.iter().sum::<usize>() != output.len() {
            return Err(bad(
                WHAT,
                format!(
                    "output splits sum to {} elements, the output has {}",
                    outs.iter().sum::<usize>(),
                    output.len()
                ),
            ));
        }
        let e = T::DTYPE.size();
        self.all_to_all_bytes(
            WHAT,
            e,
            bytemuck::cast_slice(input),
            &ranges(&ins, e),
            bytemuck::cast_slice_mut(output),
            &ranges(&outs, e),
        )
    }

    /// All-gather with per-rank lengths: rank `r` contributes `counts[r]` elements
    /// (`input.len()` must be `counts[rank]`), and every rank's `output` receives them
    /// all, concatenated in rank order (`sum(counts)` elements).
    pub fn all_gather_v<T: Element>(
        &self,
        input: &[T],
        output: &mut [T],
        counts: &[usize],
    ) -> Result<()> {
        const WHAT: &str = "all_gather_v";
        self.check_counts(WHAT, "counts", counts)?;
        if input.len() != counts[self.rank()] || output.len() != counts.iter().sum::<usize>() {
            return Err(bad(
                WHAT,
                format!(
                    "input of {} and output of {} elements do not fit counts {counts:?} (this rank: {})",
                    input.len(),
                    output.len(),
                    self.rank()
                ),
            ));
        }
        let n = self.size();
        let e = T::DTYPE.size();
        let sends = vec![0..input.len() * e; n];
        self.all_to_all_bytes(
            WHAT,
            e,
            bytemuck::cast_slice(input),
            &sends,
            bytemuck::cast_slice_mut(output),
            &ranges(counts, e),
        )
    }

    /// Gather with per-rank lengths: rank `r` sends `counts[r]` elements, the root's
    /// `output` receives them concatenated in rank order; other ranks pass an empty
    /// `output`.
    pub fn gather_v<T: Element>(
        &self,
        input: &[T],
        output: &mut [T],
        counts: &[usize],
        root: usize,
    ) -> Result<()> {
        const WHAT: &str = "gather_v";
        self.check_counts(WHAT, "counts", counts)?;
        if root >= self.size() {
            return Err(bad(WHAT, format!("root {root} is outside the group")));
        }
        let total = counts.iter().sum::<usize>();
        let want_out = if self.rank() == root { total } else { 0 };
        if input.len() != counts[self.rank()] || output.len() != want_out {
            return Err(bad(
                WHAT,
                format!(
                    "input of {} and output of {} elements do not fit counts {counts:?} (this rank: {}, root {root})",
                    input.len(),
                    output.len(),
                    self.rank()
                ),
            ));
        }
        let e = T::DTYPE.size();
        let n = self.size();
        let sends: Vec<Range<usize>> = (0..n)
            .map(|d| if d == root { 0..input.len() * e } else { 0..0 })
            .collect();
        let recvs: Vec<Range<usize>> = if self.rank() == root {
            ranges(counts, e)
        } else {
            vec![0..0; n]
        };
        self.all_to_all_bytes(
            WHAT,
            e,
            bytemuck::cast_slice(input),
            &sends,
            bytemuck::cast_slice_mut(output),
            &recvs,
        )
    }

    /// Scatter with per-rank lengths: the root's `input` holds `counts[r]` elements
    /// for each rank `r`, concatenated; rank `r`'s `output` receives its piece.
    pub fn scatter_v<T: Element>(
        &self,
        input: &[T],
        output: &mut [T],
        counts: &[usize],
        root: usize,
    ) -> Result<()> {
        const WHAT: &str = "scatter_v";
        self.check_counts(WHAT, "counts", counts)?;
        if root >= self.size() {
            return Err(bad(WHAT, format!("root {root} is outside the group")));
        }
        let total = counts.iter().sum::<usize>();
        let want_in = if self.rank() == root { total } else { 0 };
        if output.len() != counts[self.rank()] || input.len() != want_in {
            return Err(bad(
                WHAT,
                format!(
                    "input of {} and output of {} elements do not fit counts {counts:?} (this rank: {}, root {root})",
                    input.len(),
                    output.len(),
                    self.rank()
                ),
            ));
        }
        let e = T::DTYPE.size();
        let n = self.size();
        let sends: Vec<Range<usize>> = if self.rank() == root {
            ranges(counts, e)
        } else {
            vec![0..0; n]
        };
        let recvs: Vec<Range<usize>> = (0..n)
            .map(|s| if s == root { 0..output.len() * e } else { 0..0 })
            .collect();
        self.all_to_all_bytes(
            WHAT,
            e,
            bytemuck::cast_slice(input),
            &sends,
            bytemuck::cast_slice_mut(output),
            &recvs,
        )
    }

    /// A barrier that names the ranks that did not arrive within `timeout`
    /// (torch's `monitored_barrier`): rank 0 collects the others' arrivals through the
    /// store and releases them; a rank missing at the timeout is named in the error
    /// (the first one, or all of them with `wait_all_ranks`). Slow (store round trips):
    /// for debugging hangs, not for speed.
    pub fn monitored_barrier(&self, timeout: Duration, wait_all_ranks: bool) -> Result<()> {
        self.inner.check_usable()?;
        let seq = self
            .inner
            .seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let store = self.store();
        let key = |what: &str, r: usize| format!("{}/mbarrier/{seq}/{what}/{r}", self.name());
        let n = self.size();
        if self.rank() != 0 {
            store.set(&key("arrived", self.rank()), b"1")?;
            let release = key("release", 0);
            return match store.wait(&[&release], Some(timeout)) {
                Ok(()) => {
                    let v = store.get(&release)?;
                    if v == b"ok" {
                        Ok(())
                    } else {
                        Err(Error::MonitoredBarrier {
                            rank: self.rank(),
                            missing: String::from_utf8_lossy(&v)
                                .split(',')
                                .filter_map(|s| s.parse().ok())
                                .collect(),
                            timeout,
                        })
                    }
                }
                Err(_) => Err(Error::MonitoredBarrier {
                    rank: self.rank(),
                    missing: vec![0],
                    timeout,
                }),
            };
        }
        let start = Instant::now();
        let mut missing: Vec<usize> = (1..n).collect();
        while !missing.is_empty() && start.elapsed() < timeout {
            missing.retain(|&r| !store.check(&[&key("arrived", r)]).unwrap_or(false));
            if !missing.is_empty() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if missing.is_empty() {
            store.set(&key("release", 0), b"ok")?;
            return Ok(());
        }
        if !wait_all_ranks {
            missing.truncate(1);
        }
        let list: Vec<String> = missing.iter().map(|r| r.to_string()).collect();
        store.set(&key("release", 0), list.join(",").as_bytes())?;
        Err(Error::MonitoredBarrier {
            rank: 0,
            missing,
            timeout,
        })
    }
}
