//! [`Deadline`]: when a blocking wait gives up.

use std::time::{Duration, Instant};

/// The instant a blocking transport call gives up, or never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    start: Instant,
    end: Option<Instant>,
}

impl Deadline {
    /// `timeout` from now; a zero timeout means no deadline (wait forever), as in
    /// torch.distributed.
    pub fn after(timeout: Duration) -> Self {
        let start = Instant::now();
        let end = if timeout.is_zero() {
            None
        } else {
            start.checked_add(timeout)
        };
        Deadline { start, end }
    }

    /// No deadline.
    pub fn never() -> Self {
        Deadline {
            start: Instant::now(),
            end: None,
        }
    }

    /// True once the deadline has passed.
    pub fn expired(&self) -> bool {
        self.end.is_some_and(|e| Instant::now() >= e)
    }

    /// Time left, `None` when there is no deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.end
            .map(|e| e.saturating_duration_since(Instant::now()))
    }

    /// Time since the deadline was created (for error messages).
    pub fn waited(&self) -> Duration {
        self.start.elapsed()
    }

    /// The earlier of the time left and `cap`.
    pub fn cap(&self, cap: Duration) -> Duration {
        self.remaining().map_or(cap, |r| r.min(cap))
    }
}
