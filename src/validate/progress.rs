//! Progress on rank 0's terminal (stderr): which check runs, and what it measures.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// A one-line progress display, off unless stderr is a terminal.
pub struct Progress {
    on: bool,
    total: usize,
    k: usize,
    stage: String,
    start: Instant,
}

impl Progress {
    /// Progress over `total` stages, shown when `want` and stderr is a terminal.
    pub fn new(want: bool, total: usize) -> Progress {
        Progress {
            on: want && std::io::stderr().is_terminal(),
            total,
            k: 0,
            stage: String::new(),
            start: Instant::now(),
        }
    }

    /// A new stage starts.
    pub fn stage(&mut self, id: &str) {
        self.k += 1;
        self.stage = id.to_string();
        self.show("");
    }

    /// What the current stage is doing.
    pub fn note(&mut self, text: &str) {
        self.show(text);
    }

    fn show(&self, text: &str) {
        if !self.on {
            return;
        }
        let sep = if text.is_empty() { "" } else { ": " };
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r\x1b[K[{:>2}/{}] {:>5.1}s {}{sep}{text}",
            self.k,
            self.total,
            self.start.elapsed().as_secs_f64(),
            self.stage
        );
        let _ = e.flush();
    }

    /// Clears the line.
    pub fn done(&mut self) {
        if self.on {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[K");
            let _ = e.flush();
        }
    }
}
