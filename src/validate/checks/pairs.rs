//! Point-to-point latency and bandwidth between two ranks, over the group's
//! send/recv (the same-host rings, or TCP between nodes), and the bookkeeping of
//! measuring many pairs in turns and measuring suspects again.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::super::ValidateError;
use super::super::judge::suspects;
use super::super::report::Subject;
use super::super::runner::Ctx;
use crate::ProcessGroup;

/// A measured pair `(a, b)`: its result, or the error its lower rank saw.
pub type PairOutcome = (usize, usize, Result<PairResult, String>);

/// What one pair measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairResult {
    /// Lower rank.
    pub a: usize,
    /// Higher rank.
    pub b: usize,
    /// One-way latency of 8 bytes, microseconds (best batch).
    pub latency_us: f64,
    /// Bandwidth from `a` to `b`, GB/s.
    pub bw_ab: f64,
    /// Bandwidth from `b` to `a`, GB/s.
    pub bw_ba: f64,
}

impl PairResult {
    /// The slower direction.
    pub fn bandwidth(&self) -> f64 {
        self.bw_ab.min(self.bw_ba)
    }

    /// Keeps the better of two measurements of one pair.
    pub fn best(self, other: PairResult) -> PairResult {
        PairResult {
            latency_us: self.latency_us.min(other.latency_us),
            bw_ab: self.bw_ab.max(other.bw_ab),
            bw_ba: self.bw_ba.max(other.bw_ba),
            ..self
        }
    }
}

/// How hard to measure.
#[derive(Clone, Copy, Debug)]
pub struct PairConfig {
    /// Bytes per bandwidth message.
    pub message: usize,
    /// Time per bandwidth sample.
    pub sample: Duration,
    /// Ping-pongs per latency batch.
    pub pings: usize,
}

const TAG: u32 = 0x7661_0000;
const TAG_PING: u32 = TAG + 1;
const TAG_CTL: u32 = TAG + 2;
const TAG_DATA: u32 = TAG + 3;
const TAG_ACK: u32 = TAG + 4;

/// Measures the pair `(a, b)`; both ranks call it, with `pg.rank()` one of them.
/// The result is complete on `a` (latency and both directions).
pub fn measure(
    pg: &ProcessGroup,
    a: usize,
    b: usize,
    cfg: &PairConfig,
) -> crate::Result<PairResult> {
    let me = pg.rank();
    let peer = if me == a { b } else { a };
    let latency_us = latency(pg, me == a, peer, cfg.pings)?;
    let bw_ab = stream(pg, me == a, peer, cfg)?;
    let bw_ba = stream(pg, me == b, peer, cfg)?;
    // `b` learns nothing it needs; `a` holds the receiver-side numbers only for
    // the direction it sent, so the direction it received is sent over by `b`.
    let mut ba = [bw_ba];
    if me == b {
        pg.send(&ba, a, TAG_CTL)?;
    } else {
        pg.recv(&mut ba, b, TAG_CTL)?;
    }
    Ok(PairResult {
        a,
        b,
        latency_us,
        bw_ab,
        bw_ba: ba[0],
    })
}

/// One-way latency of 8-byte messages: the best of several batches of ping-pongs.
fn latency(pg: &ProcessGroup, pinger: bool, peer: usize, pings: usize) -> crate::Result<f64> {
    let mut buf = [0u64; 1];
    let mut best = f64::INFINITY;
    for batch in 0..6 {
        let t = Instant::now();
        for i in 0..pings {
            if pinger {
                buf[0] = i as u64;
                pg.send(&buf, peer, TAG_PING)?;
                pg.recv(&mut buf, peer, TAG_PING)?;
            } else {
                pg.recv(&mut buf, peer, TAG_PING)?;
                pg.send(&buf, peer, TAG_PING)?;
            }
        }
        // The first batch warms the path up.
        if batch > 0 {
            best = best.min(t.elapsed().as_secs_f64() / (2 * pings) as f64);
        }
    }
    Ok(best * 1e6)
}

/// Streams messages from the sender to `peer` in batches (doubling until a batch
/// takes `cfg.sample`), three measured batches; returns the sender's best GB/s
/// (0 on the receiver).
fn stream(pg: &ProcessGroup, sender: bool, peer: usize, cfg: &PairConfig) -> crate::Result<f64> {
    let mut data = vec![0u8; cfg.message];
    let mut ack = [0u8; 1];
    if !sender {
        let mut ctl = [0u64; 1];
        loop {
            pg.recv(&mut ctl, peer, TAG_CTL)?;
            if ctl[0] == 0 {
                return Ok(0.0);
            }
            for _ in 0..ctl[0] {
                pg.recv(&mut data, peer, TAG_DATA)?;
            }
            pg.send(&ack, peer, TAG_ACK)?;
        }
    }
    let start = Instant::now();
    let mut count: u64 = 1;
    let mut measured = 0;
    let mut best = 0.0f64;
    // Warm-up batch of one message.
    let mut batches = 0;
    loop {
        pg.send(&[count], peer, TAG_CTL)?;
        let t = Instant::now();
        for _ in 0..count {
            pg.send(&data, peer, TAG_DATA)?;
        }
        pg.recv(&mut ack, peer, TAG_ACK)?;
        let secs = t.elapsed().as_secs_f64();
        batches += 1;
        if batches > 1 {
            best = best.max((count as usize * cfg.message) as f64 / secs / 1e9);
        }
        let long_enough = secs >= cfg.sample.as_secs_f64();
        if long_enough {
            measured += 1;
        } else if count < 1 << 16 {
            // Aim straight for the sample time.
            let scale = (cfg.sample.as_secs_f64() / secs.max(1e-6)).clamp(2.0, 64.0);
            count = ((count as f64) * scale).ceil() as u64;
        }
        let out_of_time = start.elapsed() > cfg.sample * 12;
        if measured >= 3 || (out_of_time && batches > 1) {
            break;
        }
    }
    pg.send(&[0u64], peer, TAG_CTL)?;
    data.clear();
    Ok(best)
}

/// Measures `turns` of pairs (each turn: pairs that run at the same time, no rank
/// in two), one turn after the other, and returns every pair's result (or the
/// error its lower rank saw), on every rank.
pub fn measure_turns(
    ctx: &mut Ctx,
    what: &str,
    turns: &[Vec<(usize, usize)>],
    cfg: &PairConfig,
) -> Result<Vec<PairOutcome>, ValidateError> {
    let pg = ctx.group();
    let me = pg.rank();
    let members: Vec<Vec<usize>> = turns
        .iter()
        .map(|t| t.iter().flat_map(|&(a, b)| [a, b]).collect())
        .collect();
    let mut mine: Vec<PairOutcome> = Vec::new();
    let total = turns.len();
    let progress = &mut ctx.progress;
    ctx.xchg.take_turns::<()>(what, &members, |t| {
        progress.note(&format!("{what}: turn {}/{total}", t + 1));
        if let Some(&(a, b)) = turns[t].iter().find(|(a, b)| *a == me || *b == me) {
            let r = measure(&pg, a, b, cfg).map_err(|e| e.to_string());
            if me == a || r.is_err() {
                mine.push((a, b, r));
            }
        }
        Ok(())
    })?;
    let all = ctx.xchg.all_gather(what, &mine)?;
    let mut out: Vec<(usize, usize, Result<PairResult, String>)> = Vec::new();
    for (a, b, r) in all.into_iter().flatten() {
        match out.iter_mut().find(|(x, y, _)| *x == a && *y == b) {
            // Keep a result over an error, and the first error otherwise.
            Some(slot) => {
                if slot.2.is_err() && r.is_ok() {
                    slot.2 = r;
                }
            }
            None => out.push((a, b, r)),
        }
    }
    out.sort_by_key(|(a, b, _)| (*a, *b));
    Ok(out)
}

/// Pairs whose bandwidth or latency breaks the relative rule within their class
/// (see [`PairView`](super::shm::PairView)), to be measured again.
pub fn suspect_pairs(
    results: &[(usize, usize, Result<PairResult, String>)],
    view: &super::shm::PairView<'_>,
    fraction: f64,
) -> Vec<(usize, usize)> {
    let (bw_metric, lat_metric) = view.metrics;
    let ok: Vec<(usize, usize, PairResult)> = results
        .iter()
        .filter_map(|(a, b, r)| r.as_ref().ok().map(|p| (*a, *b, *p)))
        .collect();
    let mut bad = Vec::new();
    let mut classes: Vec<String> = ok.iter().map(|(a, b, _)| (view.class)(*a, *b)).collect();
    classes.sort();
    classes.dedup();
    for class in classes {
        let mine: Vec<&(usize, usize, PairResult)> = ok
            .iter()
            .filter(|(a, b, _)| (view.class)(*a, *b) == class)
            .collect();
        let bw: Vec<(Subject, f64)> = mine
            .iter()
            .map(|(a, b, p)| ((view.subject)(*a, *b), p.bandwidth()))
            .collect();
        let lat: Vec<(Subject, f64)> = mine
            .iter()
            .map(|(a, b, p)| ((view.subject)(*a, *b), p.latency_us))
            .collect();
        bad.extend(suspects(bw_metric, &bw, fraction));
        bad.extend(suspects(lat_metric, &lat, fraction));
    }
    ok.iter()
        .filter(|(a, b, _)| bad.contains(&(view.subject)(*a, *b)))
        .map(|(a, b, _)| (*a, *b))
        .collect()
}
