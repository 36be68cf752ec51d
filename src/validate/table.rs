//! The report as a table for people: one row per check with PASS/FAIL/SKIP, then
//! every failure with its culprits and every skip with its reason.

use std::fmt::Write;

use super::report::{Report, Status};

/// Renders `report` as text.
pub fn render(report: &Report) -> String {
    let mut s = String::new();
    let nodes: Vec<&str> = report.nodes.iter().map(|n| n.name.as_str()).collect();
    let shown = if nodes.len() <= 4 {
        nodes.join(", ")
    } else {
        format!("{}, ... {}", nodes[..3].join(", "), nodes[nodes.len() - 1])
    };
    let _ = writeln!(
        s,
        "tutti validate {}: level {}, {} rank{} on {} node{} ({shown})",
        report.tutti_version,
        report.level,
        report.world_size,
        plural(report.world_size),
        nodes.len(),
        plural(nodes.len()),
    );
    let _ = writeln!(
        s,
        "thresholds: {} ({}); peers below {}x their median fail",
        report.thresholds.name, report.thresholds.source, report.thresholds.relative_fraction
    );
    if !report.require.is_empty() {
        let _ = writeln!(s, "required: {}", report.require.join(", "));
    }
    let w = report
        .checks
        .iter()
        .map(|c| c.id.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(s);
    let _ = writeln!(s, "{:<w$}  {:<6}  {:>6}  DETAIL", "CHECK", "STATUS", "TIME");
    for c in &report.checks {
        let detail = match c.status {
            Status::Fail => match c.culprits.len() {
                0 => c.summary.clone(),
                1 => c.culprits[0].reason.clone(),
                n => format!("{} (and {} more)", c.culprits[0].reason, n - 1),
            },
            _ => c.summary.clone(),
        };
        let _ = writeln!(
            s,
            "{:<w$}  {:<6}  {:>5.1}s  {detail}",
            c.id,
            c.status.label(),
            c.duration_s
        );
    }
    let failed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "\nFAILURES");
        for c in failed {
            let _ = writeln!(s, "  {}: {}", c.id, c.summary);
            for k in &c.culprits {
                let _ = writeln!(s, "    - {}", k.reason);
            }
            for d in c.details.iter().take(12) {
                let _ = writeln!(s, "      {d}");
            }
            if c.details.len() > 12 {
                let _ = writeln!(
                    s,
                    "      ... {} more lines in the JSON report",
                    c.details.len() - 12
                );
            }
        }
    }
    let skipped: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Skip)
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(s, "\nSKIPPED");
        for c in skipped {
            let _ = writeln!(s, "  {}: {}", c.id, c.reason.as_deref().unwrap_or(""));
        }
    }
    let _ = writeln!(
        s,
        "\nRESULT: {} ({} passed, {} failed, {} skipped) in {:.1} s",
        report.status.label(),
        report.counts.pass,
        report.counts.fail,
        report.counts.skip,
        report.duration_s
    );
    s
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
