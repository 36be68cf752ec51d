//! The failure report a launcher prints when its workers failed (torchelastic's
//! `ChildFailedError` layout): the root cause, i.e. the failure with the earliest
//! timestamp, then the others.

use std::fmt;
use std::path::PathBuf;

use super::error_file::ErrorFileData;

/// How a worker process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitKind {
    /// From a process's exit status.
    pub fn from_status(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(c), _) => ExitKind::Code(c),
            (None, Some(s)) => ExitKind::Signal(s),
            (None, None) => ExitKind::Code(-1),
        }
    }

    /// Whether this is a successful exit.
    pub fn success(self) -> bool {
        self == ExitKind::Code(0)
    }

    /// torch's exit code convention: the code, or minus the signal number.
    pub fn torch_code(self) -> i32 {
        match self {
            ExitKind::Code(c) => c,
            ExitKind::Signal(s) => -s,
        }
    }
}

/// The name of signal `sig` (`SIGKILL`), or `signal N`.
pub fn signal_name(sig: i32) -> String {
    signal_hook::low_level::signal_name(sig)
        .map(str::to_string)
        .unwrap_or_else(|| format!("signal {sig}"))
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitKind::Code(c) => write!(f, "exit code {c}"),
            ExitKind::Signal(s) => write!(f, "signal {s} ({})", signal_name(s)),
        }
    }
}

/// One failed worker.
#[derive(Clone, Debug)]
pub struct WorkerFailure {
    /// The program the worker ran.
    pub program: String,
    /// The host it ran on.
    pub host: String,
    /// Its global rank.
    pub rank: usize,
    /// Its local rank.
    pub local_rank: usize,
    /// Its role.
    pub role: String,
    /// Its process id.
    pub pid: u32,
    /// How it ended.
    pub exit: ExitKind,
    /// Its error file's path.
    pub error_file: PathBuf,
    /// What its error file said, if it wrote one.
    pub error: Option<ErrorFileData>,
    /// When it failed (unix seconds): the error file's timestamp, else when the
    /// launcher saw it exit.
    pub timestamp: u64,
    /// The restart count of the attempt it failed in.
    pub restart_count: u32,
}

impl WorkerFailure {
    /// The message: the error file's, else a description of the exit.
    pub fn message(&self) -> String {
        match &self.error {
            Some(e) => e.message.clone(),
            None => match self.exit {
                ExitKind::Signal(s) => {
                    format!(
                        "Signal {s} ({}) received by PID {}",
                        signal_name(s),
                        self.pid
                    )
                }
                ExitKind::Code(_) => format!(
                    "To enable traceback see: write the error to the file named by TORCHELASTIC_ERROR_FILE (the Rust API does this for a failing entrypoint); worker exited with {}",
                    self.exit
                ),
            },
        }
    }
}

/// A launcher's report of its failed workers.
#[derive(Clone, Debug)]
pub struct FailureReport {
    /// The program of the worker group.
    pub program: String,
    /// The failures, the root cause (earliest) first.
    pub failures: Vec<WorkerFailure>,
}

impl FailureReport {
    /// A report of `failures` (sorted here: earliest first, then by rank).
    pub fn new(program: String, mut failures: Vec<WorkerFailure>) -> Self {
        failures.sort_by_key(|f| (f.timestamp, f.rank));
        FailureReport { program, failures }
    }

    /// The first failure.
    pub fn root(&self) -> Option<&WorkerFailure> {
        self.failures.first()
    }

    /// A one-line summary of the root cause.
    pub fn summary(&self) -> String {
        match self.root() {
            Some(f) => format!(
                "{} failed: rank {} (local rank {}) on {} exited with {}: {}",
                self.program,
                f.rank,
                f.local_rank,
                f.host,
                f.exit,
                f.message().lines().next().unwrap_or("")
            ),
            None => format!("{} failed", self.program),
        }
    }
}

/// Formats unix seconds as `YYYY-MM-DD_HH:MM:SS` (UTC).
pub fn format_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}_{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn write_failure(f: &mut fmt::Formatter<'_>, i: usize, w: &WorkerFailure) -> fmt::Result {
    writeln!(f, "[{i}]:")?;
    writeln!(f, "  time      : {} (UTC)", format_time(w.timestamp))?;
    writeln!(f, "  host      : {}", w.host)?;
    writeln!(
        f,
        "  rank      : {} (local_rank: {}, role: {})",
        w.rank, w.local_rank, w.role
    )?;
    match w.exit {
        ExitKind::Code(c) => writeln!(f, "  exitcode  : {c} (pid: {})", w.pid)?,
        ExitKind::Signal(s) => writeln!(
            f,
            "  exitcode  : {} (pid: {}, signal: {})",
            -s,
            w.pid,
            signal_name(s)
        )?,
    }
    match &w.error {
        Some(_) => writeln!(f, "  error_file: {}", w.error_file.display())?,
        None => writeln!(f, "  error_file: <N/A>")?,
    }
    writeln!(f, "  attempt   : {}", w.restart_count)?;
    let msg = w.message();
    let mut lines = msg.lines();
    writeln!(f, "  message   : {}", lines.next().unwrap_or(""))?;
    for l in lines {
        writeln!(f, "              {l}")?;
    }
    if let Some(tb) = w.error.as_ref().and_then(|e| e.traceback.as_deref())
        && !tb.trim().is_empty()
    {
        writeln!(f, "  traceback :")?;
        for l in tb.lines() {
            writeln!(f, "    {l}")?;
        }
    }
    Ok(())
}

impl fmt::Display for FailureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bar = "=".repeat(60);
        let thin = "-".repeat(60);
        writeln!(f, "{bar}")?;
        writeln!(f, "{} FAILED", self.program)?;
        writeln!(f, "{thin}")?;
        writeln!(f, "Failures:")?;
        if self.failures.len() <= 1 {
            writeln!(f, "  <NO_OTHER_FAILURES>")?;
        } else {
            for (i, w) in self.failures.iter().enumerate().skip(1) {
                write_failure(f, i, w)?;
            }
        }
        writeln!(f, "{thin}")?;
        writeln!(f, "Root Cause (first observed failure):")?;
        if let Some(root) = self.root() {
            write_failure(f, 0, root)?;
        }
        write!(f, "{bar}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_time() {
        assert_eq!(format_time(0), "1970-01-01_00:00:00");
        assert_eq!(format_time(951_782_400 + 3661), "2000-02-29_01:01:01");
        assert_eq!(format_time(1_700_000_000), "2023-11-14_22:13:20");
    }

    #[test]
    fn report_names_root_cause() {
        let w = |rank, ts, exit| WorkerFailure {
            program: "prog".into(),
            host: "h".into(),
            rank,
            local_rank: rank,
            role: "default".into(),
            pid: 42,
            exit,
            error_file: PathBuf::from("/x/error.json"),
            error: None,
            timestamp: ts,
            restart_count: 0,
        };
        let r = FailureReport::new(
            "prog".into(),
            vec![w(1, 20, ExitKind::Code(1)), w(3, 10, ExitKind::Signal(9))],
        );
        assert_eq!(r.root().unwrap().rank, 3);
        let text = r.to_string();
        assert!(text.contains("SIGKILL"), "{text}");
        assert!(text.contains("exitcode  : -9"), "{text}");
        assert!(r.summary().contains("rank 3"), "{}", r.summary());
    }
}
