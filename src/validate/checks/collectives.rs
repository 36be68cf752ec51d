//! `collectives.*`: every collective on every dtype (all_reduce with every valid
//! op), at a small and a pipelined size, every element compared bit for bit with a
//! reference each rank computes on its own (see [`data`](super::data)).
//!
//! Naming the culprit: in all_to_all, gather, scatter and send/recv the data in
//! block `s` of a rank's output came straight from rank `s`, so each wrong element
//! is blamed on a (source, destination) pair. A source whose data arrived wrong at
//! two or more ranks is named ("the data it sent arrived wrong at ranks 0, 1 and
//! 3"), a destination that received wrong data from two or more sources likewise,
//! and a lone bad pair as a link. When only the reductions went wrong, a probe of
//! all_to_all rounds runs to find the source.

use serde::{Deserialize, Serialize};

use super::super::ValidateError;
use super::super::judge::list;
use super::super::report::{CheckResult, Subject};
use super::super::runner::{Ctx, title};
use super::data::{Pattern, TestElem, dtypes, fill, fill_reduced, mismatches, with_elem};
use crate::{DataType, Error, ProcessGroup, ReduceOp};

/// The collectives, in check order.
pub const COLLECTIVES: [&str; 9] = [
    "all_reduce",
    "broadcast",
    "reduce",
    "all_gather",
    "reduce_scatter",
    "all_to_all",
    "gather",
    "scatter",
    "send_recv",
];

/// Elements per rank of the small case (odd, not a multiple of any vector width).
const SMALL: usize = 1031;
/// Elements per rank of the large case (several pipeline chunks and windows).
const LARGE: usize = 96 * 1024 + 5;

/// One checked call.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// Index into [`COLLECTIVES`].
    pub coll: usize,
    /// Element type.
    pub dtype: DataType,
    /// Reduction (reducing collectives).
    pub op: Option<ReduceOp>,
    /// Elements per rank.
    pub count: usize,
    /// Root (rooted collectives) or shift (send_recv).
    pub root: usize,
    /// Seed of the data.
    pub seed: u64,
}

impl Case {
    fn label(&self) -> String {
        let op = self.op.map_or(String::new(), |o| format!(" {o}"));
        let root = match COLLECTIVES[self.coll] {
            "broadcast" | "reduce" | "gather" | "scatter" => format!(" root {}", self.root),
            "send_recv" => format!(" shift {}", self.root),
            _ => String::new(),
        };
        format!("{}{op} x{}{root}", self.dtype.short_name(), self.count)
    }
}

/// What one rank saw for one collective.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Elements compared.
    pub elements: u64,
    /// Elements that differed.
    pub wrong: u64,
    /// Calls made.
    pub calls: u64,
    /// The wrong cases (`f32 sum x1031: 3 wrong`), the first few.
    pub cases: Vec<String>,
    /// Wrong elements by the rank they came straight from (direct collectives).
    pub blame: Vec<u64>,
    /// The first error.
    pub error: Option<String>,
    /// Why the collective was not run (the group failed earlier).
    pub not_run: Option<String>,
    /// Ranks the error says never arrived.
    pub missing: Vec<usize>,
}

impl Tally {
    /// An empty tally for `n` ranks.
    pub fn new(n: usize) -> Tally {
        Tally {
            blame: vec![0; n],
            ..Tally::default()
        }
    }

    /// Adds `o` to this tally.
    pub fn merge(&mut self, o: &Tally) {
        self.elements += o.elements;
        self.wrong += o.wrong;
        self.calls += o.calls;
        for c in &o.cases {
            if self.cases.len() < 8 {
                self.cases.push(c.clone());
            }
        }
        for (b, x) in self.blame.iter_mut().zip(&o.blame) {
            *b += x;
        }
        if self.error.is_none() {
            self.error.clone_from(&o.error);
        }
        for &m in &o.missing {
            if !self.missing.contains(&m) {
                self.missing.push(m);
            }
        }
    }
}

/// Ranks an error says never reached the operation.
fn missing_of(e: &Error) -> Vec<usize> {
    match e {
        Error::Collective { missing_ranks, .. } => missing_ranks.clone(),
        Error::Shared(inner) => missing_of(inner),
        _ => Vec::new(),
    }
}

/// The cases of the collectives stage (the same on every rank).
pub fn plan(n: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut k = 0u64;
    let mut push =
        |coll: usize, dtype: DataType, op: Option<ReduceOp>, count: usize, root: usize| {
            k += 1;
            cases.push(Case {
                coll,
                dtype,
                op,
                count,
                root,
                seed: k.wrapping_mul(0x2545_f491_4f6c_dd1d),
            });
        };
    for (coll, name) in COLLECTIVES.iter().enumerate() {
        for (i, &dt) in dtypes().iter().enumerate() {
            let root = i % n;
            match *name {
                "all_reduce" => {
                    for op in ReduceOp::valid_for(dt, 0.5) {
                        push(coll, dt, Some(op), SMALL, 0);
                    }
                    push(coll, dt, Some(ReduceOp::Sum), LARGE, 0);
                }
                "reduce" | "reduce_scatter" => {
                    push(coll, dt, Some(ReduceOp::Sum), SMALL, root);
                    push(coll, dt, Some(ReduceOp::Sum), LARGE, (root + 1) % n);
                    if !dt.is_complex() {
                        push(coll, dt, Some(ReduceOp::Max), SMALL, (root + 2) % n);
                    }
                }
                "send_recv" if n > 1 => {
                    push(coll, dt, None, SMALL, 1);
                    push(coll, dt, None, LARGE, 1);
                }
                "send_recv" => {}
                _ => {
                    push(coll, dt, None, SMALL, root);
                    push(coll, dt, None, LARGE, (root + 1) % n);
                }
            }
        }
        if *name == "send_recv" {
            // Every ordered pair: u8 at every shift.
            for shift in 2..n {
                push(coll, DataType::U8, None, SMALL, shift);
            }
        }
    }
    cases
}

/// Runs one case and adds what it saw to `t` (an error is returned, not tallied).
pub fn run_case(pg: &ProcessGroup, case: &Case, t: &mut Tally) -> crate::Result<()> {
    with_elem!(case.dtype, T, { run_typed::<T>(pg, case, t) })
}

fn note(t: &mut Tally, case: &Case, w: u64) {
    if w > 0 && t.cases.len() < 8 {
        t.cases.push(format!("{}: {w} wrong", case.label()));
    }
}

fn run_typed<T: TestElem>(pg: &ProcessGroup, case: &Case, t: &mut Tally) -> crate::Result<()> {
    let (n, me, c, seed) = (pg.size(), pg.rank(), case.count, case.seed);
    let zero = <T as bytemuck::Zeroable>::zeroed();
    let pattern = Pattern::new::<T>(case.op, n);
    let mine = |start: usize, len: usize| {
        let mut v = vec![zero; len];
        fill(pattern, me, seed, start, &mut v);
        v
    };
    let of = |r: usize, start: usize, len: usize| {
        let mut v = vec![zero; len];
        fill(pattern, r, seed, start, &mut v);
        v
    };
    // (wrong, compared, blamed source)
    let mut seen: Vec<(u64, u64, Option<usize>)> = Vec::new();
    t.calls += 1;
    match COLLECTIVES[case.coll] {
        "all_reduce" => {
            let op = case.op.unwrap_or(ReduceOp::Sum);
            let mut buf = mine(0, c);
            pg.all_reduce(&mut buf, op)?;
            let (mut want, mut tmp) = (vec![zero; c], vec![zero; c]);
            fill_reduced(pattern, op, n, seed, 0, &mut want, &mut tmp)?;
            seen.push((mismatches(&buf, &want), c as u64, None));
        }
        "broadcast" => {
            let mut buf = if me == case.root {
                of(case.root, 0, c)
            } else {
                vec![zero; c]
            };
            pg.broadcast(&mut buf, case.root)?;
            seen.push((mismatches(&buf, &of(case.root, 0, c)), c as u64, None));
        }
        "reduce" => {
            let op = case.op.unwrap_or(ReduceOp::Sum);
            let mut buf = mine(0, c);
            pg.reduce(&mut buf, op, case.root)?;
            if me == case.root {
                let (mut want, mut tmp) = (vec![zero; c], vec![zero; c]);
                fill_reduced(pattern, op, n, seed, 0, &mut want, &mut tmp)?;
                seen.push((mismatches(&buf, &want), c as u64, None));
            }
        }
        "all_gather" => {
            let input = mine(0, c);
            let mut out = vec![zero; n * c];
            pg.all_gather(&input, &mut out)?;
            for s in 0..n {
                seen.push((
                    mismatches(&out[s * c..(s + 1) * c], &of(s, 0, c)),
                    c as u64,
                    None,
                ));
            }
        }
        "reduce_scatter" => {
            let op = case.op.unwrap_or(ReduceOp::Sum);
            let input = mine(0, n * c);
            let mut out = vec![zero; c];
            pg.reduce_scatter(&input, &mut out, op)?;
            let (mut want, mut tmp) = (vec![zero; c], vec![zero; c]);
            fill_reduced(pattern, op, n, seed, me * c, &mut want, &mut tmp)?;
            seen.push((mismatches(&out, &want), c as u64, None));
        }
        "all_to_all" => {
            // Block d of rank s's input is elements d*c.. of s's virtual array.
            let input = mine(0, n * c);
            let mut out = vec![zero; n * c];
            pg.all_to_all(&input, &mut out)?;
            for s in 0..n {
                let w = mismatches(&out[s * c..(s + 1) * c], &of(s, me * c, c));
                seen.push((w, c as u64, Some(s)));
            }
        }
        "gather" => {
            let input = mine(0, c);
            let mut out = if me == case.root {
                vec![zero; n * c]
            } else {
                Vec::new()
            };
            pg.gather(&input, &mut out, case.root)?;
            if me == case.root {
                for s in 0..n {
                    let w = mismatches(&out[s * c..(s + 1) * c], &of(s, 0, c));
                    seen.push((w, c as u64, Some(s)));
                }
            }
        }
        "scatter" => {
            let input = if me == case.root {
                of(case.root, 0, n * c)
            } else {
                Vec::new()
            };
            let mut out = vec![zero; c];
            pg.scatter(&input, &mut out, case.root)?;
            let w = mismatches(&out, &of(case.root, me * c, c));
            seen.push((w, c as u64, Some(case.root)));
        }
        "send_recv" => {
            let (to, from) = ((me + case.root) % n, (me + n - case.root % n) % n);
            let send = pg.send_async(mine(0, c), to, 0x7662_0000 + case.root as u32);
            let mut buf = vec![zero; c];
            let got = pg.recv(&mut buf, from, 0x7662_0000 + case.root as u32);
            send.wait()?;
            got?;
            seen.push((mismatches(&buf, &of(from, 0, c)), c as u64, Some(from)));
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "validate: no collective {other}"
            )));
        }
    }
    let mut total = 0;
    for (w, compared, src) in seen {
        t.elements += compared;
        t.wrong += w;
        total += w;
        if let Some(s) = src {
            t.blame[s] += w;
        }
    }
    note(t, case, total);
    Ok(())
}

/// Runs `cases`, tallying per collective; stops at the first error (the group is
/// unusable after it) and marks the collectives not reached.
pub fn run_cases(pg: &ProcessGroup, cases: &[Case], mut on_case: impl FnMut(usize)) -> Vec<Tally> {
    let n = pg.size();
    let mut tallies: Vec<Tally> = (0..COLLECTIVES.len()).map(|_| Tally::new(n)).collect();
    let mut failed: Option<String> = None;
    for (i, case) in cases.iter().enumerate() {
        on_case(i);
        let t = &mut tallies[case.coll];
        if let Some(first) = &failed {
            if t.error.is_none() && t.not_run.is_none() {
                t.not_run = Some(first.clone());
            }
            continue;
        }
        if let Err(e) = run_case(pg, case, t) {
            t.missing = missing_of(&e);
            let msg = format!("{} {}: {e}", COLLECTIVES[case.coll], case.label());
            t.error = Some(msg.clone());
            failed = Some(format!("not run: the group failed earlier ({msg})"));
        }
    }
    tallies
}

/// Culprits from a blame matrix `b[src][dst]` (wrong elements that came straight
/// from `src`, seen at `dst`).
pub fn attribute(b: &[Vec<u64>], subject: &dyn Fn(usize) -> Subject) -> Vec<(Subject, String)> {
    let n = b.len();
    let mut out = Vec::new();
    let mut senders = Vec::new();
    for (s, row) in b.iter().enumerate() {
        // Data a rank handed itself (its own block) that came out wrong.
        if row[s] > 0 {
            out.push((
                subject(s),
                format!(
                    "rank {s}: its own block was wrong in its own output ({} elements)",
                    row[s]
                ),
            ));
        }
        let dsts: Vec<usize> = (0..n).filter(|&d| d != s && row[d] > 0).collect();
        if dsts.len() >= 2 {
            let total: u64 = dsts.iter().map(|&d| row[d]).sum();
            out.push((
                subject(s),
                format!("rank {s}: the data it sent arrived wrong at ranks {} ({total} elements); data from the other ranks arrived intact", list(&dsts)),
            ));
            senders.push(s);
        }
    }
    let mut receivers = Vec::new();
    // Column `d` of the matrix: what `d` received wrong from each source.
    let received: Vec<Vec<u64>> = (0..n)
        .map(|d| b.iter().map(|row| row[d]).collect())
        .collect();
    for (d, from) in received.iter().enumerate() {
        let srcs: Vec<usize> = (0..n)
            .filter(|&s| s != d && from[s] > 0 && !senders.contains(&s))
            .collect();
        if srcs.len() >= 2 {
            let total: u64 = srcs.iter().map(|&s| from[s]).sum();
            out.push((
                subject(d),
                format!(
                    "rank {d}: received wrong data from ranks {} ({total} elements)",
                    list(&srcs)
                ),
            ));
            receivers.push(d);
        }
    }
    for (s, row) in b.iter().enumerate() {
        for (d, &w) in row.iter().enumerate() {
            if d != s && w > 0 && !senders.contains(&s) && !receivers.contains(&d) {
                out.push((
                    Subject::Link { src: s, dst: d },
                    format!("data from rank {s} to rank {d} arrived wrong ({w} elements): rank {s} sent it or rank {d} received it wrong"),
                ));
            }
        }
    }
    out
}

/// The check.
pub fn check(ctx: &mut Ctx) -> Result<Vec<CheckResult>, ValidateError> {
    let pg = ctx.group();
    let n = pg.size();
    let cases = plan(n);
    let total = cases.len();
    let mut times = vec![0.0f64; COLLECTIVES.len()];
    let mut last = (usize::MAX, std::time::Instant::now());
    let progress = &mut ctx.progress;
    let tallies = run_cases(&pg, &cases, |i| {
        let now = std::time::Instant::now();
        if last.0 != usize::MAX {
            times[cases[last.0].coll] += now.duration_since(last.1).as_secs_f64();
        }
        last = (i, now);
        if i % 16 == 0 {
            progress.note(&format!(
                "{} case {}/{total}",
                COLLECTIVES[cases[i].coll],
                i + 1
            ));
        }
    });
    if last.0 != usize::MAX {
        times[cases[last.0].coll] += last.1.elapsed().as_secs_f64();
    }
    let all: Vec<Vec<Tally>> = ctx.xchg.all_gather("collectives", &tallies)?;
    // Blame matrix over every collective with direct paths.
    let mut blame = vec![vec![0u64; n]; n];
    let mut any_wrong = false;
    let mut any_error = false;
    for (d, ts) in all.iter().enumerate() {
        for t in ts {
            any_wrong |= t.wrong > 0;
            any_error |= t.error.is_some();
            for (s, &w) in t.blame.iter().enumerate() {
                blame[s][d] += w;
            }
        }
    }
    let topo = ctx.topo.clone();
    let subject = move |r: usize| Subject::Rank {
        rank: r,
        node: topo.node_name(r),
    };
    let mut culprits = attribute(&blame, &subject);
    let mut probe_note = None;
    if any_wrong && culprits.is_empty() && !any_error && n > 2 {
        // Only the reductions went wrong: all_to_all rounds, where each block comes
        // straight from its source, tell whose data is bad.
        ctx.progress
            .note("probing with all_to_all to find the source of the wrong data");
        let probe: Vec<Case> = (0..12)
            .map(|i| Case {
                coll: 5,
                dtype: DataType::U8,
                op: None,
                count: if i % 2 == 0 { SMALL } else { LARGE },
                root: 0,
                seed: 0xdead_0000 + i,
            })
            .collect();
        let t = run_cases(&pg, &probe, |_| {});
        let seen = ctx.xchg.all_gather("collectives probe", &t[5])?;
        let mut b = vec![vec![0u64; n]; n];
        for (d, t) in seen.iter().enumerate() {
            for (s, &w) in t.blame.iter().enumerate() {
                b[s][d] += w;
            }
        }
        culprits = attribute(&b, &subject);
        probe_note = Some(if culprits.is_empty() {
            "an all_to_all probe (12 rounds) saw no wrong data: the corruption is intermittent or inside the reductions".to_string()
        } else {
            "named by an all_to_all probe (12 rounds) after only reductions went wrong".to_string()
        });
    }
    let mut out = Vec::new();
    for (k, name) in COLLECTIVES.iter().enumerate() {
        let id = format!("collectives.{name}");
        let mut c = CheckResult::new(&id, title(&id), 2);
        c.duration_s = times[k];
        let mut sum = Tally::new(n);
        let mut wrong_ranks = Vec::new();
        for (r, ts) in all.iter().enumerate() {
            let t = &ts[k];
            sum.merge(t);
            if t.wrong > 0 {
                wrong_ranks.push(r);
                c.details.push(format!(
                    "rank {r}: {} wrong of {} ({})",
                    t.wrong,
                    t.elements,
                    t.cases.join("; ")
                ));
            }
            if let Some(e) = &t.error {
                c.details.push(format!("rank {r}: {e}"));
            }
        }
        let calls = all.first().map_or(0, |ts| ts[k].calls);
        if sum.error.is_none() && sum.wrong == 0 && sum.missing.is_empty() {
            if let Some(why) = all.iter().find_map(|ts| ts[k].not_run.clone()) {
                out.push(CheckResult::skipped(&id, title(&id), 2, why));
                continue;
            }
            if sum.calls == 0 {
                out.push(CheckResult::skipped(
                    &id,
                    title(&id),
                    2,
                    "one rank: nothing to send",
                ));
                continue;
            }
        }
        c.measurements.push(ctx.rules().judge_one(
            "collectives.wrong_elements",
            Subject::Job,
            sum.wrong as f64,
        ));
        if sum.wrong > 0 {
            let why = format!(
                "{} wrong elements on rank(s) {}",
                sum.wrong,
                list(&wrong_ranks)
            );
            if culprits.is_empty() {
                c.fail(
                    Subject::Job,
                    format!("{why}; the source could not be told apart"),
                );
            }
            for (s, r) in &culprits {
                c.fail(s.clone(), r.clone());
            }
            c.summary = why;
            if let Some(p) = &probe_note {
                c.details.push(p.clone());
            }
        }
        for &m in &sum.missing {
            c.fail(
                ctx.rank_subject(m),
                format!("rank {m} never reached a {name} the others were in (dead or not calling)"),
            );
        }
        if let Some((r, e)) = all
            .iter()
            .enumerate()
            .find_map(|(r, ts)| ts[k].error.clone().map(|e| (r, e)))
        {
            c.fail(Subject::Job, format!("rank {r}: {e}"));
            if c.summary.is_empty() {
                c.summary = format!("{name} failed with an error");
            }
        }
        if c.culprits.is_empty() {
            c.summary = format!(
                "{calls} calls over {} dtypes, {} elements checked, 0 wrong",
                dtypes().len(),
                sum.elements
            );
        }
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(r: usize) -> Subject {
        Subject::Rank {
            rank: r,
            node: "n".into(),
        }
    }

    #[test]
    fn a_bad_sender_is_named() {
        let mut b = vec![vec![0u64; 4]; 4];
        for d in [0, 1, 3] {
            b[2][d] = 10;
        }
        let c = attribute(&b, &rank);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, rank(2));
        assert!(
            c[0].1.contains("arrived wrong at ranks 0, 1 and 3"),
            "{}",
            c[0].1
        );
    }

    #[test]
    fn a_bad_receiver_and_a_bad_link_are_named() {
        let mut b = vec![vec![0u64; 4]; 4];
        b[0][3] = 1;
        b[1][3] = 1;
        b[2][3] = 1;
        let c = attribute(&b, &rank);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, rank(3));
        let mut b = vec![vec![0u64; 4]; 4];
        b[1][2] = 5;
        let c = attribute(&b, &rank);
        assert_eq!(c[0].0, Subject::Link { src: 1, dst: 2 });
    }

    #[test]
    fn the_plan_is_the_same_everywhere_and_covers_everything() {
        let p = plan(4);
        assert_eq!(p.len(), plan(4).len());
        for (k, _) in COLLECTIVES.iter().enumerate() {
            for dt in dtypes() {
                assert!(
                    p.iter().any(|c| c.coll == k && c.dtype == *dt),
                    "{k} {dt:?}"
                );
            }
        }
        // Every valid (dtype, op) pair of all_reduce.
        for dt in dtypes() {
            for op in ReduceOp::valid_for(*dt, 0.5) {
                assert!(
                    p.iter()
                        .any(|c| c.coll == 0 && c.dtype == *dt && c.op == Some(op))
                );
            }
        }
    }
}
