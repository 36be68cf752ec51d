//! A one-line progress bar on stderr, drawn only when stderr is a terminal (never
//! into a pipe or a file), and cleared before each table line is printed so the
//! two do not interleave.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The progress of a benchmark: `done` of `total` measurements.
pub struct Progress {
    enabled: bool,
    total: u64,
    done: u64,
    what: String,
    start: Instant,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// A bar over `total` steps; drawn only if `wanted` and stderr is a terminal
    /// (and `TERM` is not `dumb`).
    pub fn new(total: u64, wanted: bool) -> Progress {
        let term_ok = std::env::var("TERM").map_or(true, |t| t != "dumb");
        Progress {
            enabled: wanted && term_ok && std::io::stderr().is_terminal(),
            total: total.max(1),
            done: 0,
            what: String::new(),
            start: Instant::now(),
            last: None,
            drawn: false,
        }
    }

    /// Whether the bar is drawn at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Sets what is being measured now and redraws (at most every 100 ms).
    pub fn set(&mut self, what: impl Into<String>) {
        self.what = what.into();
        self.draw(false);
    }

    /// One step done.
    pub fn inc(&mut self) {
        self.done = (self.done + 1).min(self.total);
        self.draw(false);
    }

    /// Prints `line` (with a newline) to stdout without tearing the bar.
    pub fn println(&mut self, line: &str) {
        let was_drawn = self.drawn;
        self.clear();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        drop(out);
        if was_drawn {
            self.draw(true);
        }
    }

    fn clear(&mut self) {
        if self.enabled && self.drawn {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K");
            let _ = e.flush();
            self.drawn = false;
        }
    }

    fn draw(&mut self, force: bool) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if !force
            && self
                .last
                .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        const WIDTH: u64 = 30;
        let filled = (self.done * WIDTH / self.total) as usize;
        let bar = format!(
            "{}{}",
            "#".repeat(filled),
            "-".repeat(WIDTH as usize - filled)
        );
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r\x1b[2K[{bar}] {}/{} {:.1}s {}",
            self.done,
            self.total,
            self.start.elapsed().as_secs_f64(),
            self.what
        );
        let _ = e.flush();
        self.drawn = true;
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        self.clear();
        self.enabled = false;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
