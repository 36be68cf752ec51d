//! The text table, formatted as nccl-tests prints it: `#` header lines, one row per
//! size with `size count type redop root` then `time algbw busbw #wrong` for
//! out-of-place and in-place, and the footer (out-of-bounds values, average bus
//! bandwidth).

use crate::output::{Measure, Row, Run};

/// C's `%.{prec}e` (`1.2e+07`), which Rust's `{:e}` spells `1.2e7`.
pub fn c_exp(value: f64, prec: usize) -> String {
    let s = format!("{value:.prec$e}");
    match s.split_once('e') {
        Some((mant, exp)) => {
            let e: i32 = exp.parse().unwrap_or(0);
            let sign = if e < 0 { '-' } else { '+' };
            format!("{mant}e{sign}{:02}", e.abs())
        }
        None => s,
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// C's `%g` (6 significant digits, trailing zeros removed).
pub fn c_g(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.into();
    }
    const P: i32 = 6;
    let sci = format!("{:.*e}", (P - 1) as usize, value);
    let exp: i32 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    if !(-4..P).contains(&exp) {
        let (mant, _) = sci.split_once('e').unwrap_or((&sci, ""));
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip_zeros(mant), exp.abs())
    } else {
        let s = format!("{:.*}", (P - 1 - exp) as usize, value);
        strip_zeros(&s).to_string()
    }
}

/// nccl-tests' `getFloatStr`: `value` in `width` columns with as many decimals as
/// fit (2, 1, 0), else in exponent notation.
pub fn float_str(value: f64, width: usize) -> String {
    let mut power = 0usize;
    let mut val = 1f64;
    while value >= val && power < 40 {
        power += 1;
        val *= 10.0;
    }
    if power + 2 < width {
        format!("{value:>width$.2}")
    } else if power + 1 < width {
        format!("{value:>width$.1}")
    } else if power < width + 1 {
        format!("{value:>width$.0}")
    } else if width >= 7 {
        format!("{:>width$}", c_exp(value, 1))
    } else {
        format!("{:>width$}", c_exp(value, 0))
    }
}

/// The three column-header lines.
pub fn column_header() -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# {:>10}  {:>12}  {:>8}  {:>6}  {:>6}           out-of-place                       in-place\n",
        "", "", "", "", ""
    ));
    let line = |c: [&str; 13]| {
        let l = format!(
            "# {:>10}  {:>12}  {:>8}  {:>6}  {:>6}  {:>7}  {:>6}  {:>6}  {:>6}  {:>7}  {:>6}  {:>6}  {:>6}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12]
        );
        format!("{}\n", l.trim_end())
    };
    s.push_str(&line([
        "size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time",
        "algbw", "busbw", "#wrong",
    ]));
    s.push_str(&line([
        "(B)",
        "(elements)",
        "",
        "",
        "",
        "(us)",
        "(GB/s)",
        "(GB/s)",
        "",
        "(us)",
        "(GB/s)",
        "(GB/s)",
        "",
    ]));
    s
}

fn measure(m: &Measure) -> String {
    let wrong = match m.nwrong {
        Some(w) => c_g(w as f64),
        None => "N/A".into(),
    };
    format!(
        "  {}  {}  {}  {:>6}",
        float_str(m.time_us, 7),
        float_str(m.algbw, 6),
        float_str(m.busbw, 6),
        wrong
    )
}

/// One row (no newline).
pub fn row(r: &Row) -> String {
    format!(
        "{:>12}  {:>12}  {:>8}  {:>6}  {:>6}{}{}",
        r.size,
        r.count,
        r.type_name,
        r.redop,
        r.root,
        measure(&r.out_of_place),
        measure(&r.in_place)
    )
}

/// The footer lines after a run's rows.
pub fn footer(run: &Run) -> String {
    format!(
        "# {:<20} : {} {}\n# {:<20} : {}\n#\n# Collective test concluded: {}\n",
        "Out of bounds values",
        run.out_of_bounds,
        if run.out_of_bounds > 0 {
            "FAILED"
        } else {
            "OK"
        },
        "Avg bus bandwidth",
        c_g(run.avg_busbw),
        run.collective
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_formats() {
        assert_eq!(c_g(0.0), "0");
        assert_eq!(c_g(12.5), "12.5");
        assert_eq!(c_g(1234567.0), "1.23457e+06");
        assert_eq!(c_g(0.0001234), "0.0001234");
        assert_eq!(c_g(0.00001234), "1.234e-05");
        assert_eq!(c_g(3.0), "3");
        assert_eq!(c_g(7.123456789), "7.12346");
        assert_eq!(c_exp(12_345_678.0, 1), "1.2e+07");
    }

    #[test]
    fn float_str_like_nccl_tests() {
        assert_eq!(float_str(0.0, 6), "  0.00");
        assert_eq!(float_str(12.345, 6), " 12.35");
        assert_eq!(float_str(1234.5, 6), "1234.5");
        assert_eq!(float_str(12345.4, 6), " 12345");
        assert_eq!(float_str(5.25, 7), "   5.25");
        assert_eq!(float_str(123456.0, 7), " 123456");
        assert_eq!(float_str(123456789.0, 7), "1.2e+08");
    }
}
