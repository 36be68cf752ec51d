//! The `tutti-bench` binary end to end: 2 (or 3) local ranks over shared memory on
//! small sizes; the table's format, the busbw factors, `-c` catching a corrupted
//! result (the `TUTTI_BENCH_CORRUPT` hook), and the JSON, CSV, SVG and comparison
//! outputs.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tutti-bench");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("TUTTI_BENCH_CHILD")
        .env_remove("TUTTI_BENCH_CORRUPT")
        .env("RUST_BACKTRACE", "0")
        // A hung collective fails the test within a minute, naming the peer, instead
        // of holding the suite for the 30-minute default (it once hung here when the
        // ranks picked different window algorithms).
        .env("TUTTI_TIMEOUT_SECS", "60");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run tutti-bench")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = run(args, &[]);
    assert!(
        o.status.success(),
        "tutti-bench {args:?} failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

/// A file in cargo's scratch directory for integration tests (names are unique
/// per test; files are overwritten by the next run).
fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tutti-bench-cli");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A parsed table row: the 13 columns of nccl-tests.
#[derive(Debug)]
struct TableRow {
    size: u64,
    count: u64,
    dtype: String,
    redop: String,
    root: i64,
    /// (time, algbw, busbw, #wrong) out of place, then in place.
    halves: [(f64, f64, f64, String); 2],
}

fn rows(text: &str) -> Vec<TableRow> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 13, "a row has 13 columns: {l:?}");
            let half = |i: usize| {
                (
                    f[i].parse().unwrap(),
                    f[i + 1].parse().unwrap(),
                    f[i + 2].parse().unwrap(),
                    f[i + 3].to_string(),
                )
            };
            TableRow {
                size: f[0].parse().unwrap(),
                count: f[1].parse().unwrap(),
                dtype: f[2].into(),
                redop: f[3].into(),
                root: f[4].parse().unwrap(),
                halves: [half(5), half(9)],
            }
        })
        .collect()
}

#[test]
fn table_matches_nccl_tests_format() {
    let out = ok(&[
        "all_reduce",
        "--nranks",
        "2",
        "-b",
        "8",
        "-e",
        "64K",
        "-n",
        "3",
        "-w",
        "1",
    ]);
    let header: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
    assert!(header.iter().any(|l| l.starts_with(
        "# nThread 1 nGpus 1 minBytes 8 maxBytes 65536 step: 2(factor) warmup iters: 1 iters: 3"
    )));
    let cols = header
        .iter()
        .find(|l| l.contains("size") && l.contains("busbw"))
        .expect("column header");
    assert_eq!(
        cols.split_whitespace().collect::<Vec<_>>(),
        [
            "#", "size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong",
            "time", "algbw", "busbw", "#wrong"
        ]
    );
    assert!(
        header
            .iter()
            .any(|l| l.contains("out-of-place") && l.contains("in-place"))
    );
    // Columns are right-aligned at nccl-tests' widths: the row's size ends at 12.
    let first = out.lines().find(|l| !l.starts_with('#')).unwrap();
    assert_eq!(&first[..12], "           8");
    let rows = rows(&out);
    let sizes: Vec<u64> = rows.iter().map(|r| r.size).collect();
    assert_eq!(sizes, (3..=16).map(|p| 1u64 << p).collect::<Vec<_>>());
    for r in &rows {
        assert_eq!(r.count, r.size / 4);
        assert_eq!(
            (r.dtype.as_str(), r.redop.as_str(), r.root),
            ("float", "sum", -1)
        );
        for (time, algbw, busbw, wrong) in &r.halves {
            assert!(*time > 0.0);
            // 2 ranks: all_reduce's factor 2(n-1)/n is 1.
            assert!((busbw - algbw).abs() < 0.011, "{r:?}");
            assert_eq!(wrong, "0");
        }
    }
    assert!(out.contains("# Out of bounds values : 0 OK\n"));
    assert!(out.contains("# Avg bus bandwidth    : "));
    assert!(out.contains("# Collective test concluded: all_reduce"));
}

#[test]
fn busbw_factors_and_columns_per_collective() {
    let path = tmp("factors.json");
    ok(&[
        "all",
        "--nranks",
        "3",
        "-b",
        "96",
        "-e",
        "6K",
        "-f",
        "4",
        "-n",
        "2",
        "-w",
        "0",
        "-r",
        "2",
        "--json",
        path.to_str().unwrap(),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let runs = v["runs"].as_array().unwrap();
    let names: Vec<&str> = runs
        .iter()
        .map(|r| r["collective"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "all_reduce",
            "all_gather",
            "reduce_scatter",
            "broadcast",
            "reduce",
            "all_to_all",
            "send_recv"
        ]
    );
    let n = 3.0;
    for run in runs {
        let name = run["collective"].as_str().unwrap();
        let factor = match name {
            "all_reduce" => 2.0 * (n - 1.0) / n,
            "all_gather" | "reduce_scatter" | "all_to_all" => (n - 1.0) / n,
            _ => 1.0,
        };
        assert_eq!(run["nranks"], 3);
        assert!((run["bus_factor"].as_f64().unwrap() - factor).abs() < 1e-12);
        let results = run["results"].as_array().unwrap();
        assert_eq!(results.len(), 4, "96, 384, 1536 and 6144 bytes");
        for r in results {
            let size = r["size"].as_f64().unwrap();
            let count = r["count"].as_f64().unwrap();
            // nccl-tests' counts: per-rank blocks for the scattering collectives.
            let per_rank = matches!(name, "all_gather" | "reduce_scatter" | "all_to_all");
            assert_eq!(count * 4.0 * if per_rank { n } else { 1.0 }, size, "{name}");
            assert_eq!(
                r["root"],
                if matches!(name, "broadcast" | "reduce") {
                    2
                } else {
                    -1
                }
            );
            for half in ["out_of_place", "in_place"] {
                let m = &r[half];
                let (t, algbw, busbw) = (
                    m["time_us"].as_f64().unwrap(),
                    m["algbw"].as_f64().unwrap(),
                    m["busbw"].as_f64().unwrap(),
                );
                let want_algbw = size / (t * 1e-6) / 1e9;
                assert!(
                    (algbw - want_algbw).abs() <= 1e-9 * want_algbw.max(1.0),
                    "{name}"
                );
                assert!(
                    (busbw - algbw * factor).abs() <= 1e-12 * busbw.max(1.0),
                    "{name}"
                );
                assert_eq!(m["nwrong"], 0, "{name} {half}");
            }
        }
        assert_eq!(run["out_of_bounds"], 0);
    }
}

#[test]
fn check_catches_a_wrong_result() {
    // Every collective, rank 1's result corrupted by one bit before each check.
    let args = [
        "all", "--nranks", "2", "-b", "64", "-e", "4K", "-f", "8", "-n", "1", "-w", "0",
    ];
    let o = run(&args, &[("TUTTI_BENCH_CORRUPT", "1")]);
    assert!(!o.status.success(), "wrong results must fail the run");
    let out = stdout(&o);
    let table = rows(&out);
    assert_eq!(
        table.len(),
        7 * 3,
        "64, 512 and 4096 bytes for each collective"
    );
    for r in &table {
        for (_, _, _, wrong) in &r.halves {
            let w: u64 = wrong.parse().unwrap();
            assert!(w >= 1, "the corruption went unnoticed: {r:?}");
        }
    }
    assert_eq!(out.matches("# Out of bounds values : 6 FAILED").count(), 7);
    // Without -c there is nothing to check.
    let out = ok(&[
        "all_reduce",
        "--nranks",
        "2",
        "-b",
        "64",
        "-e",
        "128",
        "-c",
        "0",
        "-n",
        "1",
    ]);
    for r in rows(&out) {
        assert_eq!(
            (r.halves[0].3.as_str(), r.halves[1].3.as_str()),
            ("N/A", "N/A")
        );
    }
}

/// `-R 1`: every buffer in `alloc_shared` memory, every collective still checked
/// element by element (from 256 KiB all_reduce, all_gather and reduce_scatter read
/// the peers' buffers in place).
#[test]
fn registered_buffers_pass_the_check() {
    for coll in [
        "all_reduce",
        "all_gather",
        "reduce_scatter",
        "broadcast",
        "send_recv",
    ] {
        let out = ok(&[
            coll, "--nranks", "3", "-b", "4K", "-e", "1M", "-f", "16", "-n", "2", "-w", "1", "-R",
            "1",
        ]);
        let rows = rows(&out);
        assert_eq!(rows.len(), 3, "{coll}:\n{out}");
        for r in &rows {
            assert_eq!(
                (r.halves[0].3.as_str(), r.halves[1].3.as_str()),
                ("0", "0"),
                "{coll}:\n{out}"
            );
        }
        assert!(
            out.contains("# Out of bounds values : 0 OK"),
            "{coll}:\n{out}"
        );
    }
}

#[test]
fn check_holds_for_other_types_and_ops() {
    for (d, o) in [
        ("bfloat16", "sum"),
        ("f8e4m3", "avg"),
        ("int8", "prod"),
        ("double", "max"),
    ] {
        let out = ok(&[
            "reduce_scatter",
            "--nranks",
            "2",
            "-b",
            "1K",
            "-e",
            "64K",
            "-f",
            "64",
            "-n",
            "1",
            "-w",
            "0",
            "-d",
            d,
            "-o",
            o,
            "--transport",
            "tcp",
        ]);
        assert!(
            out.contains("# Out of bounds values : 0 OK"),
            "{d} {o}:\n{out}"
        );
    }
}

#[test]
fn json_csv_and_svg_outputs() {
    let (json, csv, svg) = (tmp("run.json"), tmp("run.csv"), tmp("run.svg"));
    // JSON on stdout instead of the table.
    let out = ok(&[
        "broadcast",
        "--nranks",
        "2",
        "-b",
        "8",
        "-e",
        "1K",
        "-f",
        "4",
        "-n",
        "2",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("stdout is one JSON document");
    assert_eq!(v["tool"], "tutti-bench");
    assert_eq!(v["config"]["nranks"], 2);
    assert_eq!(v["runs"][0]["results"].as_array().unwrap().len(), 4);
    std::fs::write(&json, &out).unwrap();

    // CSV to a file, SVG comparing this run with the saved one.
    let out = ok(&[
        "broadcast",
        "--nranks",
        "2",
        "-b",
        "8",
        "-e",
        "1K",
        "-f",
        "4",
        "-n",
        "2",
        "--label",
        "second",
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
        "--compare",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.contains("# Collective test concluded: broadcast"),
        "the table still prints"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], tutti_bench::output::CSV_HEADER);
    assert_eq!(
        lines.len(),
        1 + 4,
        "a header and one line per size (8, 32, 128, 512)"
    );
    for l in &lines[1..] {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), lines[0].split(',').count());
        assert_eq!((f[0], f[1], f[2]), ("second", "broadcast", "2"));
        assert!(f[10].parse::<f64>().unwrap() > 0.0);
    }

    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.trim_start().starts_with("<svg"));
    let doc = roxmltree::Document::parse(&svg_text).expect("the plot is well-formed XML");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("busbw (GB/s)")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("message size")));
    assert!(
        texts.iter().any(|t| t == "second broadcast"),
        "legend: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("[run.json]")),
        "legend: {texts:?}"
    );
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") || n.has_tag_name("path"))
        .count();
    assert!(lines >= 2, "one line per run");
}

#[test]
fn compare_prints_ratios() {
    let saved = tmp("saved.json");
    ok(&[
        "send_recv",
        "--nranks",
        "2",
        "-b",
        "1K",
        "-e",
        "16K",
        "-f",
        "4",
        "-n",
        "2",
        "--json",
        saved.to_str().unwrap(),
    ]);
    let out = ok(&[
        "send_recv",
        "--nranks",
        "2",
        "-b",
        "1K",
        "-e",
        "16K",
        "-f",
        "4",
        "-n",
        "2",
        "--compare",
        saved.to_str().unwrap(),
    ]);
    let start = out.find("# Compare send_recv with").expect("a comparison");
    let cmp = &out[start..];
    let data: Vec<Vec<&str>> = cmp
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(data.len(), 3);
    for row in &data {
        assert_eq!(row.len(), 7);
        let ratio: f64 = row[3].parse().unwrap();
        assert!(ratio > 0.0);
    }
    assert!(cmp.contains("# Geometric mean ratio : "));
}

#[test]
fn bad_input_exits_2_with_a_message() {
    for args in [
        &["all_reduce", "-b", "12Q"][..],
        &["all_reduce", "-o", "band", "-d", "float"],
        &["no_such_collective"],
        &["all_reduce", "-b", "1M", "-e", "1K"],
        &["broadcast", "--nranks", "2", "-r", "5"],
        &["all_reduce", "--compare", "/nonexistent/run.json"],
        &["all_reduce", "--transport", "carrier-pigeon"],
        &["all_reduce", "--plot", "/nonexistent/dir/busbw.svg"],
        &["all_reduce", "-n", "0"],
    ] {
        let o = run(args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("error"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
