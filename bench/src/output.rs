//! Results for programs: the JSON report (`--json`, read back by `--compare` and
//! `--plot`) and CSV (`--csv`).
//!
//! JSON: one object with the tool, version, arguments and configuration, and
//! `runs`: one per collective benchmarked, each with its rows (`size`, `count`,
//! `type`, `redop`, `root`, and `out_of_place` / `in_place` objects holding
//! `time_us`, `algbw`, `busbw` (GB/s) and `nwrong` (null without `-c`)), its
//! out-of-bounds count and average bus bandwidth.
//!
//! CSV: a header line, then one line per (run, size).

use std::io::Write;

use serde::{Deserialize, Serialize};

/// One timing of one size (out of place or in place).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    /// Time per operation in microseconds.
    pub time_us: f64,
    /// Algorithm bandwidth, GB/s.
    pub algbw: f64,
    /// Bus bandwidth, GB/s.
    pub busbw: f64,
    /// Wrong elements summed over ranks; `None` without `-c`.
    pub nwrong: Option<u64>,
}

/// One size of a run: the table's row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The size column (bytes).
    pub size: u64,
    /// The count column (elements).
    pub count: u64,
    /// The type column.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The redop column.
    pub redop: String,
    /// The root column (-1: none).
    pub root: i64,
    /// Out-of-place figures.
    pub out_of_place: Measure,
    /// In-place figures.
    pub in_place: Measure,
}

/// One collective benchmarked over every size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The run's label (`--label`, default `<transport> <n> ranks`).
    pub label: String,
    /// The collective (`all_reduce`, ...).
    pub collective: String,
    /// Number of ranks.
    pub nranks: usize,
    /// Transport asked for (`auto`, `shm`, `tcp`).
    pub transport: String,
    /// Algorithm asked for (`auto`, `ring`, `tree`).
    pub algo: String,
    /// nccl-tests' bus bandwidth factor used.
    pub bus_factor: f64,
    /// The rows, by increasing size.
    pub results: Vec<Row>,
    /// How many (size, placement) measurements had wrong elements.
    pub out_of_bounds: u64,
    /// Mean busbw over every row, out of place and in place (nccl-tests' figure).
    pub avg_busbw: f64,
}

/// The configuration a report was produced with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Number of ranks.
    pub nranks: usize,
    /// Transport asked for.
    pub transport: String,
    /// Algorithm asked for.
    pub algo: String,
    /// -b
    pub minbytes: u64,
    /// -e
    pub maxbytes: u64,
    /// -f (None: sizes step by bytes)
    pub stepfactor: Option<u64>,
    /// -i (None: sizes step by a factor)
    pub stepbytes: Option<u64>,
    /// -n
    pub iters: u32,
    /// -w
    pub warmup_iters: u32,
    /// -c
    pub check: u32,
    /// -z
    pub blocking: u32,
    /// -a (0: rank 0's time, 1: mean over ranks, 2: min, 3: max)
    pub average: u32,
    /// -d (nccl-tests' name)
    pub datatype: String,
    /// -o
    pub op: String,
    /// -r
    pub root: usize,
}

/// The whole JSON document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `tutti-bench`.
    pub tool: String,
    /// The bench's version.
    pub version: String,
    /// Seconds since the Unix epoch at the start.
    pub unix_time: u64,
    /// Host name of rank 0.
    pub host: String,
    /// The command line.
    pub args: Vec<String>,
    /// The configuration.
    pub config: Config,
    /// One run per collective.
    pub runs: Vec<Run>,
}

impl Report {
    /// Reads a report written by `--json`.
    pub fn load(path: &std::path::Path) -> Result<Report, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a tutti-bench JSON report (--json): {e}",
                path.display()
            )
        })
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// The CSV header line.
pub const CSV_HEADER: &str = "label,collective,nranks,transport,algo,size,count,type,redop,root,oop_time_us,oop_algbw_gbps,oop_busbw_gbps,oop_wrong,ip_time_us,ip_algbw_gbps,ip_busbw_gbps,ip_wrong";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn wrong_field(w: Option<u64>) -> String {
    w.map(|w| w.to_string()).unwrap_or_default()
}

/// Writes the runs as CSV (header, then one line per run and size).
pub fn write_csv(out: &mut dyn Write, runs: &[Run]) -> std::io::Result<()> {
    writeln!(out, "{CSV_HEADER}")?;
    for run in runs {
        for r in &run.results {
            let (o, i) = (&r.out_of_place, &r.in_place);
            writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&run.label),
                run.collective,
                run.nranks,
                csv_field(&run.transport),
                csv_field(&run.algo),
                r.size,
                r.count,
                r.type_name,
                r.redop,
                r.root,
                o.time_us,
                o.algbw,
                o.busbw,
                wrong_field(o.nwrong),
                i.time_us,
                i.algbw,
                i.busbw,
                wrong_field(i.nwrong)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Run {
        let m = Measure {
            time_us: 10.0,
            algbw: 1.0,
            busbw: 1.0,
            nwrong: Some(0),
        };
        Run {
            label: "a, \"b\"".into(),
            collective: "all_reduce".into(),
            nranks: 2,
            transport: "shm".into(),
            algo: "auto".into(),
            bus_factor: 1.0,
            results: vec![Row {
                size: 8,
                count: 2,
                type_name: "float".into(),
                redop: "sum".into(),
                root: -1,
                out_of_place: m.clone(),
                in_place: Measure { nwrong: None, ..m },
            }],
            out_of_bounds: 0,
            avg_busbw: 1.0,
        }
    }

    #[test]
    fn csv_quotes_and_counts() {
        let mut v = Vec::new();
        write_csv(&mut v, &[run()]).unwrap();
        let s = String::from_utf8(v).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert!(lines[1].starts_with("\"a, \"\"b\"\"\",all_reduce,2,"));
        assert!(lines[1].ends_with(",10,1,1,"));
    }
}
