//! `memory.bandwidth`: each rank's memory copy bandwidth (STREAM copy: bytes read
//! plus bytes written per second, over buffers far larger than the caches), one
//! rank per node at a time so ranks do not share the memory system while measured.

use std::time::{Duration, Instant};

use super::super::ValidateError;
use super::super::judge::{spread, suspects};
use super::super::report::CheckResult;
use super::super::runner::{Ctx, title};

const ID: &str = "memory.bandwidth";
const METRIC: &str = "memory.copy_gbps";
/// Bytes per buffer: far above any last-level cache.
const BYTES: usize = 64 << 20;
/// Time spent copying per measurement.
const BUDGET: Duration = Duration::from_millis(250);

/// Best copy bandwidth over a short loop, in GB/s (read + write).
pub fn measure(src: &[u8], dst: &mut [u8]) -> f64 {
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut reps = 0;
    while reps < 3 || start.elapsed() < BUDGET {
        let t = Instant::now();
        dst.copy_from_slice(src);
        std::hint::black_box(&mut *dst);
        best = best.min(t.elapsed().as_secs_f64());
        reps += 1;
        if reps > 200 {
            break;
        }
    }
    2.0 * src.len() as f64 / best / 1e9
}

fn buffers() -> (Vec<u8>, Vec<u8>) {
    // Touch every page before timing (vec![x; n] of a non-zero byte writes them).
    (vec![1u8; BYTES], vec![2u8; BYTES])
}

/// Measures the ranks of `turns` one turn at a time; returns every rank's best.
fn round(ctx: &mut Ctx, turns: &[Vec<usize>], what: &str) -> Result<Vec<f64>, ValidateError> {
    let mut mine = 0.0;
    let (src, mut dst) = buffers();
    ctx.xchg.take_turns::<()>(what, turns, |_| {
        mine = measure(&src, &mut dst);
        Ok(())
    })?;
    drop((src, dst));
    ctx.xchg.all_gather(what, &mine)
}

/// The check.
pub fn check(ctx: &mut Ctx) -> Result<Vec<CheckResult>, ValidateError> {
    let size = ctx.size();
    let turns: Vec<Vec<usize>> = (0..ctx.topo.max_local())
        .map(|t| {
            ctx.topo
                .nodes
                .iter()
                .filter_map(|n| n.ranks.get(t).copied())
                .collect()
        })
        .collect();
    ctx.progress
        .note("copying 64 MiB buffers, one rank per node at a time");
    let mut best = round(ctx, &turns, "memory bandwidth")?;
    // Measure the slow ones again before condemning them.
    let samples = |b: &[f64], ctx: &Ctx| -> Vec<_> {
        (0..size).map(|r| (ctx.rank_subject(r), b[r])).collect()
    };
    let suspect_ranks: Vec<usize> = suspects(
        METRIC,
        &samples(&best, ctx),
        ctx.thresholds.relative_fraction,
    )
    .iter()
    .filter_map(|s| match s {
        super::super::report::Subject::Rank { rank, .. } => Some(*rank),
        _ => None,
    })
    .collect();
    if !suspect_ranks.is_empty() {
        ctx.progress.note("measuring the slow ranks again");
        let again: Vec<Vec<usize>> = suspect_ranks.iter().map(|&r| vec![r]).collect();
        let second = round(ctx, &again, "memory bandwidth again")?;
        for &r in &suspect_ranks {
            best[r] = best[r].max(second[r]);
        }
    }
    let mut c = CheckResult::new(ID, title(ID), 2);
    c.add(ctx.rules().judge(METRIC, samples(&best, ctx), "ranks"));
    c.summary = format!("{size} rank(s): copy {}", spread(&best, "GB/s"));
    Ok(vec![c])
}
