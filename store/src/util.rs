//! Helpers shared by the store implementations: timeouts, deadlines, size checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{MAX_KEY_LEN, MAX_VALUE_LEN};
use crate::{Result, StoreError};

/// A store's default timeout, changeable through `&self`.
#[derive(Debug)]
pub(crate) struct TimeoutCell(AtomicU64);

impl TimeoutCell {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self(AtomicU64::new(saturating_nanos(timeout)))
    }

    pub(crate) fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    pub(crate) fn set(&self, timeout: Duration) {
        self.0.store(saturating_nanos(timeout), Ordering::Relaxed);
    }
}

fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// When a wait started and when it must give up (`None`: never).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    start: Instant,
    end: Option<Instant>,
}

impl Deadline {
    /// A deadline `timeout` from now; a zero timeout never expires.
    pub(crate) fn after(timeout: Duration) -> Self {
        let start = Instant::now();
        let end = if timeout.is_zero() {
            None
        } else {
            start.checked_add(timeout)
        };
        Self { start, end }
    }

    /// Time left (`None`: unbounded); zero once expired.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.end
            .map(|end| end.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.end.is_some_and(|end| Instant::now() >= end)
    }

    /// Time since the wait started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The timeout error for `keys`, of which `missing` were not there.
    pub(crate) fn timeout_error<K: AsRef<str>, M: AsRef<str>>(
        &self,
        keys: &[K],
        missing: &[M],
    ) -> StoreError {
        timeout_error(keys, missing, self.elapsed())
    }
}

/// Builds [`StoreError::Timeout`].
pub(crate) fn timeout_error<K: AsRef<str>, M: AsRef<str>>(
    keys: &[K],
    missing: &[M],
    waited: Duration,
) -> StoreError {
    StoreError::Timeout {
        keys: keys.iter().map(|k| k.as_ref().to_string()).collect(),
        missing: missing.iter().map(|k| k.as_ref().to_string()).collect(),
        waited,
    }
}

/// Checks a key against [`MAX_KEY_LEN`].
pub(crate) fn check_key(op: &'static str, key: &str) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::Request {
            op,
            key: truncate_for_message(key),
            message: format!(
                "key of {} bytes exceeds the limit of {MAX_KEY_LEN} bytes",
                key.len()
            ),
        });
    }
    Ok(())
}

/// Checks every key of a multi-key call against [`MAX_KEY_LEN`].
pub(crate) fn check_keys(op: &'static str, keys: &[&str]) -> Result<()> {
    keys.iter().try_for_each(|k| check_key(op, k))
}

/// Checks a value against [`MAX_VALUE_LEN`].
pub(crate) fn check_value(op: &'static str, key: &str, len: usize) -> Result<()> {
    if len > MAX_VALUE_LEN {
        return Err(StoreError::Request {
            op,
            key: truncate_for_message(key),
            message: format!("value of {len} bytes exceeds the limit of {MAX_VALUE_LEN} bytes"),
        });
    }
    Ok(())
}

/// Checks the arguments of `multi_set`.
pub(crate) fn check_multi_set(keys: &[&str], values: &[&[u8]]) -> Result<()> {
    if keys.len() != values.len() {
        return Err(StoreError::InvalidArgument(format!(
            "store multi_set: {} keys but {} values",
            keys.len(),
            values.len()
        )));
    }
    for (k, v) in keys.iter().zip(values) {
        check_key("multi_set", k)?;
        check_value("multi_set", k, v.len())?;
    }
    Ok(())
}

/// Shortens a key for an error message (keys can be up to 4 KiB, or longer when
/// the key itself is the problem).
pub(crate) fn truncate_for_message(key: &str) -> String {
    const SHOWN: usize = 128;
    if key.len() <= SHOWN {
        return key.to_string();
    }
    let mut end = SHOWN;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &key[..end], key.len())
}

/// Exponential backoff for polling loops: `first` doubling up to `max`.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    /// Sleeps for the next step, never past `deadline`.
    pub(crate) fn sleep(&mut self, deadline: &Deadline) {
        let mut step = self.next;
        if let Some(left) = deadline.remaining() {
            step = step.min(left);
        }
        std::thread::sleep(step);
        self.next = (self.next * 2).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeout_never_expires() {
        let d = Deadline::after(Duration::ZERO);
        assert!(!d.expired());
        assert_eq!(d.remaining(), None);
    }

    #[test]
    fn truncates_long_keys_on_char_boundary() {
        let key = "é".repeat(200);
        let shown = truncate_for_message(&key);
        assert!(shown.ends_with("(400 bytes)"));
    }
}
