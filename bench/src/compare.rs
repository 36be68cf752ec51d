//! `--compare FILE.json`: this run's bus bandwidth divided by a saved run's, per size
//! (above 1: faster now).

use crate::output::{Measure, Report, Run};
use crate::table::float_str;

/// The ratio `this / saved` of two measurements: of busbw, or of algbw where a
/// busbw is 0 (one rank); `None` where either is 0 or not finite.
pub fn ratio(this: &Measure, saved: &Measure) -> Option<f64> {
    let (a, b) = if this.busbw > 0.0 && saved.busbw > 0.0 {
        (this.busbw, saved.busbw)
    } else {
        (this.algbw, saved.algbw)
    };
    let r = a / b;
    (a > 0.0 && b > 0.0 && r.is_finite()).then_some(r)
}

fn geomean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
}

fn ratio_str(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 1000.0 => format!("{:>7}", crate::table::c_exp(r, 1)),
        Some(r) if r >= 10.0 => format!("{r:>7.1}"),
        Some(r) if r >= 0.001 => format!("{r:>7.3}"),
        Some(r) => format!("{:>7}", crate::table::c_exp(r, 1)),
        None => format!("{:>7}", "N/A"),
    }
}

/// The comparison table of `run` against the run of the same collective in
/// `saved` (read from `name`), as `#`-prefixed header lines and one row per size.
pub fn compare(run: &Run, saved: &Report, name: &str) -> String {
    let Some(old) = saved
        .runs
        .iter()
        .find(|r| r.collective == run.collective && r.nranks == run.nranks)
        .or_else(|| saved.runs.iter().find(|r| r.collective == run.collective))
    else {
        return format!("# compare: {name} has no {} run\n", run.collective);
    };
    let mut s = format!(
        "#\n# Compare {} with {name} ({:?}, {} ranks): busbw of this run / saved run (> 1: faster now)\n",
        run.collective, old.label, old.nranks
    );
    s.push_str(&format!(
        "# {:>10}  {:>9}  {:>11}  {:>7}  {:>9}  {:>11}  {:>7}\n",
        "size", "oop busbw", "saved busbw", "ratio", "ip busbw", "saved busbw", "ratio"
    ));
    s.push_str(&format!(
        "# {:>10}  {:>9}  {:>11}  {:>7}  {:>9}  {:>11}\n",
        "(B)", "(GB/s)", "(GB/s)", "", "(GB/s)", "(GB/s)"
    ));
    let (mut oop, mut ip) = (Vec::new(), Vec::new());
    for r in &run.results {
        let old_row = old.results.iter().find(|o| o.size == r.size);
        let (ro, ri) = match old_row {
            Some(o) => (
                ratio(&r.out_of_place, &o.out_of_place),
                ratio(&r.in_place, &o.in_place),
            ),
            None => (None, None),
        };
        oop.extend(ro);
        ip.extend(ri);
        let saved_bw = |m: Option<&Measure>| match m {
            Some(m) => float_str(m.busbw, 11),
            None => format!("{:>11}", "N/A"),
        };
        s.push_str(&format!(
            "{:>12}  {}  {}  {}  {}  {}  {}\n",
            r.size,
            float_str(r.out_of_place.busbw, 9),
            saved_bw(old_row.map(|o| &o.out_of_place)),
            ratio_str(ro),
            float_str(r.in_place.busbw, 9),
            saved_bw(old_row.map(|o| &o.in_place)),
            ratio_str(ri),
        ));
    }
    let g = |v: &[f64]| geomean(v).map_or("N/A".to_string(), |g| format!("{g:.3}"));
    s.push_str(&format!(
        "# Geometric mean ratio : {} out-of-place, {} in-place ({} sizes matched)\n",
        g(&oop),
        g(&ip),
        oop.len()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios() {
        let m = |busbw: f64| Measure {
            time_us: 1.0,
            algbw: busbw,
            busbw,
            nwrong: None,
        };
        assert_eq!(ratio(&m(2.0), &m(1.0)), Some(2.0));
        assert_eq!(ratio(&m(0.0), &m(1.0)), None);
        assert_eq!(geomean(&[2.0, 0.5]), Some(1.0));
        assert_eq!(ratio_str(Some(0.0038)), "  0.004");
        assert_eq!(ratio_str(Some(12.34)), "   12.3");
        assert_eq!(ratio_str(Some(0.00001)), "1.0e-05");
        assert_eq!(ratio_str(None), "    N/A");
    }
}
