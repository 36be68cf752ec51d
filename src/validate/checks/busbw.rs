//! `all_reduce.busbw`: host all_reduce bus bandwidth (nccl-tests' busbw: algbw x
//! 2(n-1)/n) at its plateau: sizes double from 1 MiB until the busbw stops growing
//! by 5 % (or 64 MiB), and the best is judged.

use std::time::{Duration, Instant};

use super::super::ValidateError;
use super::super::report::{CheckResult, Subject};
use super::super::runner::{Ctx, title};
use crate::{ProcessGroup, ReduceOp};

const ID: &str = "all_reduce.busbw";
const FIRST: usize = 1 << 20;
const LAST: usize = 64 << 20;
/// Time per size.
const BUDGET: Duration = Duration::from_millis(200);

/// Seconds per all_reduce of `bytes` (f32), the slowest rank's.
fn time_size(pg: &ProcessGroup, bytes: usize) -> crate::Result<f64> {
    let mut buf = vec![1.0f32; bytes / 4];
    pg.all_reduce(&mut buf, ReduceOp::Sum)?;
    let t = Instant::now();
    pg.all_reduce(&mut buf, ReduceOp::Sum)?;
    let mut once = [t.elapsed().as_secs_f64()];
    pg.all_reduce(&mut once, ReduceOp::Max)?;
    let iters = (BUDGET.as_secs_f64() / once[0].max(1e-6)).clamp(3.0, 500.0) as usize;
    pg.barrier()?;
    let t = Instant::now();
    for _ in 0..iters {
        pg.all_reduce(&mut buf, ReduceOp::Sum)?;
    }
    let mut secs = [t.elapsed().as_secs_f64() / iters as f64];
    pg.all_reduce(&mut secs, ReduceOp::Max)?;
    Ok(secs[0])
}

/// The check.
pub fn check(ctx: &mut Ctx) -> Result<Vec<CheckResult>, ValidateError> {
    let pg = ctx.group();
    let n = pg.size();
    if n < 2 {
        return Ok(vec![CheckResult::skipped(
            ID,
            title(ID),
            2,
            "one rank: no bus to measure",
        )]);
    }
    let factor = 2.0 * (n - 1) as f64 / n as f64;
    let mut c = CheckResult::new(ID, title(ID), 2);
    let mut best = (0.0f64, 0usize);
    let mut prev = 0.0f64;
    let mut bytes = FIRST;
    let mut error = None;
    while bytes <= LAST {
        ctx.progress
            .note(&format!("all_reduce of {} MiB", bytes >> 20));
        let secs = match time_size(&pg, bytes) {
            Ok(s) => s,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        };
        let busbw = bytes as f64 / secs / 1e9 * factor;
        c.details.push(format!(
            "{:>4} MiB: {:.1} us, busbw {busbw:.2} GB/s",
            bytes >> 20,
            secs * 1e6
        ));
        if busbw > best.0 {
            best = (busbw, bytes);
        }
        let plateau = bytes >= 4 * FIRST && busbw < prev * 1.05;
        prev = prev.max(busbw);
        if plateau {
            break;
        }
        bytes *= 2;
    }
    let errors = ctx.xchg.all_gather("all_reduce busbw", &error)?;
    if let Some((r, e)) = errors
        .iter()
        .enumerate()
        .find_map(|(r, e)| e.clone().map(|e| (r, e)))
    {
        c.fail(Subject::Job, format!("rank {r}: all_reduce failed: {e}"));
        c.summary = "all_reduce failed".into();
        return Ok(vec![c]);
    }
    c.add(vec![ctx.rules().judge_one(
        "all_reduce.busbw_gbps",
        Subject::Job,
        best.0,
    )]);
    c.summary = format!(
        "busbw {:.2} GB/s at {} MiB ({n} ranks, f32 sum)",
        best.0,
        best.1 >> 20
    );
    Ok(vec![c])
}
