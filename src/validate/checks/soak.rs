//! `soak`: checked collectives (random collective, dtype, op and size from the
//! collectives plan, fresh data each time) for `--soak` seconds, to catch
//! intermittent corruption. Wrong data is attributed as in the collectives check.

use std::time::Instant;

use super::super::ValidateError;
use super::super::judge::list;
use super::super::report::{CheckResult, Subject};
use super::super::runner::{Ctx, title};
use super::collectives::{COLLECTIVES, Tally, attribute, plan, run_cases};

const ID: &str = "soak";
/// Cases between two looks at the clock.
const BATCH: usize = 24;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    z = (z ^ (z >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    z ^ (z >> 33)
}

/// The check.
pub fn check(ctx: &mut Ctx) -> Result<Vec<CheckResult>, ValidateError> {
    let pg = ctx.group();
    let n = pg.size();
    let all_cases = plan(n);
    let secs = ctx.opts.soak.as_secs_f64();
    let start = Instant::now();
    let mut total = Tally::new(n);
    let mut per_coll = vec![0u64; COLLECTIVES.len()];
    let mut batch = 0u64;
    loop {
        let cases: Vec<_> = (0..BATCH as u64)
            .map(|i| {
                let k = mix(batch * BATCH as u64 + i + 1);
                let mut c = all_cases[(k % all_cases.len() as u64) as usize];
                c.seed = mix(k ^ 0x50a4);
                c
            })
            .collect();
        let tallies = run_cases(&pg, &cases, |_| {});
        for c in &cases {
            per_coll[c.coll] += 1;
        }
        for t in &tallies {
            total.merge(t);
        }
        batch += 1;
        ctx.progress.note(&format!(
            "{} checked collectives, {:.0}/{secs:.0} s",
            total.calls,
            start.elapsed().as_secs_f64()
        ));
        // Rank 0's clock decides, so that every rank stops after the same batch.
        let clocks = ctx.xchg.all_gather(
            "soak clock",
            &(start.elapsed().as_secs_f64(), total.error.is_some()),
        )?;
        if clocks[0].0 >= secs || clocks.iter().any(|c| c.1) {
            break;
        }
    }
    let all = ctx.xchg.all_gather("soak", &total)?;
    let mut c = CheckResult::new(ID, title(ID), 3);
    let mut blame = vec![vec![0u64; n]; n];
    let mut wrong = 0;
    let mut wrong_ranks = Vec::new();
    for (d, t) in all.iter().enumerate() {
        wrong += t.wrong;
        if t.wrong > 0 {
            wrong_ranks.push(d);
            c.details.push(format!(
                "rank {d}: {} wrong ({})",
                t.wrong,
                t.cases.join("; ")
            ));
        }
        if let Some(e) = &t.error {
            c.fail(Subject::Job, format!("rank {d}: {e}"));
        }
        for &m in &t.missing {
            c.fail(
                ctx.rank_subject(m),
                format!("rank {m} never reached an operation the others were in"),
            );
        }
        for (s, &w) in t.blame.iter().enumerate() {
            blame[s][d] += w;
        }
    }
    c.measurements.push(
        ctx.rules()
            .judge_one("soak.wrong_elements", Subject::Job, wrong as f64),
    );
    let calls = all.first().map_or(0, |t| t.calls);
    if wrong > 0 {
        let subject = |r: usize| ctx.rank_subject(r);
        let culprits = attribute(&blame, &subject);
        if culprits.is_empty() {
            c.fail(
                Subject::Job,
                format!(
                    "{wrong} wrong elements on rank(s) {}; the source could not be told apart",
                    list(&wrong_ranks)
                ),
            );
        }
        for (s, r) in culprits {
            c.fail(s, r);
        }
        c.summary = format!("{wrong} wrong elements in {calls} checked collectives");
    } else if c.culprits.is_empty() {
        let mix: Vec<String> = COLLECTIVES
            .iter()
            .zip(&per_coll)
            .filter(|(_, k)| **k > 0)
            .map(|(n, k)| format!("{n} {k}"))
            .collect();
        c.summary = format!(
            "{calls} checked collectives in {:.0} s, {} elements, 0 wrong",
            start.elapsed().as_secs_f64(),
            all.iter().map(|t| t.elements).sum::<u64>()
        );
        c.details.push(mix.join(", "));
    } else {
        c.summary = "an operation failed during the soak".into();
    }
    Ok(vec![c])
}
