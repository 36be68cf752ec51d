//! [`Deadline`]: when a blocking wait gives up.
//!
//! Deadlines read the coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`: a few
//! nanoseconds through the vDSO, a few milliseconds of resolution): every operation
//! takes one, and timeouts are seconds long, so the precise clock's ~25 ns per read
//! (in this VM) would be pure overhead on the 8-byte latency path. The coarse clock
//! lags the precise one by up to its resolution, so a deadline adds that resolution
//! to its timeout: it never passes early, by up to one tick late.

use std::time::Duration;

use rustix::time::{ClockId, clock_getres, clock_gettime};

/// Nanoseconds on the coarse monotonic clock.
fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::MonotonicCoarse);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

/// The coarse clock's resolution (one kernel tick, typically 1-4 ms).
fn resolution_ns() -> u64 {
    static RES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *RES.get_or_init(|| {
        let r = clock_getres(ClockId::MonotonicCoarse);
        (r.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(r.tv_nsec as u64)
    })
}

/// The instant a blocking transport call gives up, or never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    start: u64,
    end: Option<u64>,
}

impl Deadline {
    /// `timeout` from now; a zero timeout means no deadline (wait forever), as in
    /// torch.distributed.
    pub fn after(timeout: Duration) -> Self {
        let start = now_ns();
        let end = if timeout.is_zero() {
            None
        } else {
            Some(
                start
                    .saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX))
                    .saturating_add(resolution_ns()),
            )
        };
        Deadline { start, end }
    }

    /// No deadline.
    pub fn never() -> Self {
        Deadline {
            start: now_ns(),
            end: None,
        }
    }

    /// True once the deadline has passed.
    pub fn expired(&self) -> bool {
        self.end.is_some_and(|e| now_ns() >= e)
    }

    /// Time left, `None` when there is no deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.end
            .map(|e| Duration::from_nanos(e.saturating_sub(now_ns())))
    }

    /// Time since the deadline was created (for error messages).
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(now_ns().saturating_sub(self.start))
    }

    /// The earlier of the time left and `cap`.
    pub fn cap(&self, cap: Duration) -> Duration {
        self.remaining().map_or(cap, |r| r.min(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_expires_after_its_timeout_and_zero_means_never() {
        let d = Deadline::after(Duration::from_millis(30));
        assert!(!d.expired());
        assert!(
            d.remaining().unwrap()
                <= Duration::from_millis(30) + Duration::from_nanos(resolution_ns())
        );
        std::thread::sleep(Duration::from_millis(50));
        assert!(d.expired());
        assert!(d.waited() >= Duration::from_millis(40));
        let never = Deadline::after(Duration::ZERO);
        assert!(!never.expired() && never.remaining().is_none());
        assert_eq!(never.cap(Duration::from_secs(1)), Duration::from_secs(1));
    }

    #[test]
    fn a_deadline_never_passes_before_its_timeout_on_the_precise_clock() {
        for _ in 0..20 {
            let start = std::time::Instant::now();
            let d = Deadline::after(Duration::from_millis(7));
            while !d.expired() {
                std::hint::spin_loop();
            }
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(7), "expired after {took:?}");
        }
    }
}
