//! The key-value table and c10d's update rules, shared by the memory store, the file
//! store (which replays its log into one) and the TCP store's server.

use std::collections::{HashMap, VecDeque};

use super::MAX_VALUE_LEN;

/// Keys mapped to values, with c10d's semantics for `add`, `compare_set`, `append`;
/// and c10d's queues (`queue_push`/`queue_pop`, which only its TCPStore protocol
/// reaches), kept apart from the keys.
#[derive(Debug, Default)]
pub(crate) struct Table {
    map: HashMap<String, Vec<u8>>,
    queues: HashMap<String, VecDeque<Vec<u8>>>,
}

impl Table {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn set(&mut self, key: &str, value: Vec<u8>) {
        match self.map.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                self.map.insert(key.to_string(), value);
            }
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Vec<u8>> {
        self.map.get(key)
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Whether a wait for `key` is over: the key exists, or a queue of that name
    /// holds a value (c10d's rule).
    pub(crate) fn exists(&self, key: &str) -> bool {
        self.map.contains_key(key) || self.queues.get(key).is_some_and(|q| !q.is_empty())
    }

    /// The keys, in no particular order.
    pub(crate) fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Appends `value` to the queue `name`.
    pub(crate) fn queue_push(&mut self, name: &str, value: Vec<u8>) {
        self.queues
            .entry(name.to_string())
            .or_default()
            .push_back(value);
    }

    /// The queue's length before the pop, and its first value if it had one.
    pub(crate) fn queue_pop(&mut self, name: &str) -> (usize, Option<Vec<u8>>) {
        let Some(q) = self.queues.get_mut(name) else {
            return (0, None);
        };
        let len = q.len();
        let value = q.pop_front();
        if q.is_empty() {
            self.queues.remove(name);
        }
        (len, value)
    }

    /// The queue's length.
    pub(crate) fn queue_len(&self, name: &str) -> usize {
        self.queues.get(name).map_or(0, VecDeque::len)
    }

    /// Adds `delta` to the decimal counter at `key` (missing: 0); returns the new value
    /// or why the present value cannot be added to.
    pub(crate) fn add(&mut self, key: &str, delta: i64) -> Result<i64, String> {
        let new = add_value(self.map.get(key).map(Vec::as_slice), delta)?;
        self.set(key, new.to_string().into_bytes());
        Ok(new)
    }

    /// c10d's compare-and-set; returns the result value and whether the table changed.
    pub(crate) fn compare_set(
        &mut self,
        key: &str,
        expected: &[u8],
        desired: &[u8],
    ) -> (Vec<u8>, bool) {
        match compare_set_decision(self.map.get(key).map(Vec::as_slice), expected, desired) {
            CompareSet::Set => {
                self.set(key, desired.to_vec());
                (desired.to_vec(), true)
            }
            CompareSet::Return(v) => (v, false),
        }
    }

    /// Appends `value` to `key`'s value (missing: created).
    pub(crate) fn append(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let current = self.map.get(key).map_or(0, Vec::len);
        check_append_len(current, value.len())?;
        match self.map.get_mut(key) {
            Some(v) => v.extend_from_slice(value),
            None => {
                self.map.insert(key.to_string(), value.to_vec());
            }
        }
        Ok(())
    }

    pub(crate) fn delete(&mut self, key: &str) -> bool {
        self.map.remove(key).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The keys of `keys` that are not in the table, in order.
    pub(crate) fn missing<'k>(&self, keys: &[&'k str]) -> Vec<&'k str> {
        keys.iter()
            .copied()
            .filter(|k| !self.map.contains_key(*k))
            .collect()
    }
}

/// The counter after adding `delta` to `current` (missing: 0).
pub(crate) fn add_value(current: Option<&[u8]>, delta: i64) -> Result<i64, String> {
    let base = match current {
        None => 0,
        Some(bytes) => parse_counter(bytes)?,
    };
    base.checked_add(delta)
        .ok_or_else(|| format!("adding {delta} to {base} overflows a 64-bit integer"))
}

/// Parses a counter value as c10d does (C++'s `std::stoll`): leading whitespace,
/// an optional sign, at least one decimal digit; whatever follows the digits is
/// ignored. No digits, or a value outside `i64`, is an error.
pub(crate) fn parse_counter(bytes: &[u8]) -> Result<i64, String> {
    let shown = || String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned();
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .unwrap_or(bytes.len());
    let rest = &bytes[start..];
    let sign_len = usize::from(matches!(rest.first(), Some(b'+' | b'-')));
    let digits = rest[sign_len..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return Err(format!(
            "the present value {:?} is not a decimal integer",
            shown()
        ));
    }
    // Sign and digits are ASCII, so this is valid UTF-8.
    let text = std::str::from_utf8(&rest[..sign_len + digits]).unwrap_or_default();
    text.parse::<i64>().map_err(|_| {
        format!(
            "the present value {:?} is outside the range of a 64-bit integer",
            shown()
        )
    })
}

/// What c10d's compare_set does for a present value (or a missing key).
pub(crate) enum CompareSet {
    /// Store `desired` and return it.
    Set,
    /// Return this value and change nothing.
    Return(Vec<u8>),
}

/// c10d's compare_set rules.
pub(crate) fn compare_set_decision(
    current: Option<&[u8]>,
    expected: &[u8],
    _desired: &[u8],
) -> CompareSet {
    match current {
        None if expected.is_empty() => CompareSet::Set,
        None => CompareSet::Return(expected.to_vec()),
        Some(v) if v == expected => CompareSet::Set,
        Some(v) => CompareSet::Return(v.to_vec()),
    }
}

/// Checks that appending `extra` bytes to a value of `current` bytes stays within
/// [`MAX_VALUE_LEN`].
pub(crate) fn check_append_len(current: usize, extra: usize) -> Result<(), String> {
    let total = current.saturating_add(extra);
    if total > MAX_VALUE_LEN {
        return Err(format!(
            "appending {extra} bytes to a value of {current} bytes exceeds the limit of {MAX_VALUE_LEN} bytes"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_counts_from_zero_and_rejects_text() {
        let mut t = Table::new();
        assert_eq!(t.add("c", 5), Ok(5));
        assert_eq!(t.add("c", -7), Ok(-2));
        assert_eq!(t.get("c").map(Vec::as_slice), Some(&b"-2"[..]));
        t.set("s", b"abc".to_vec());
        assert!(t.add("s", 1).unwrap_err().contains("not a decimal integer"));
        t.set("m", i64::MAX.to_string().into_bytes());
        assert!(t.add("m", 1).unwrap_err().contains("overflows"));
        t.set("w", b" 41\n".to_vec());
        assert_eq!(t.add("w", 1), Ok(42));
        // std::stoll's rules: a numeric prefix counts, the rest is ignored.
        t.set("p", b"+12abc".to_vec());
        assert_eq!(t.add("p", 1), Ok(13));
        t.set("n", b"\t-3".to_vec());
        assert_eq!(t.add("n", 0), Ok(-3));
        t.set("e", b"-".to_vec());
        assert!(t.add("e", 1).is_err());
        t.set("big", b"99999999999999999999".to_vec());
        assert!(t.add("big", 1).unwrap_err().contains("outside the range"));
    }

    #[test]
    fn queues_pop_in_order_and_count_as_existing() {
        let mut t = Table::new();
        assert!(!t.exists("q"));
        t.queue_push("q", b"a".to_vec());
        t.queue_push("q", b"b".to_vec());
        assert!(t.exists("q") && !t.contains("q"));
        assert_eq!(t.queue_len("q"), 2);
        assert_eq!(t.queue_pop("q"), (2, Some(b"a".to_vec())));
        assert_eq!(t.queue_pop("q"), (1, Some(b"b".to_vec())));
        assert_eq!(t.queue_pop("q"), (0, None));
        assert!(!t.exists("q"));
    }

    #[test]
    fn compare_set_follows_c10d() {
        let mut t = Table::new();
        assert_eq!(t.compare_set("k", b"x", b"y"), (b"x".to_vec(), false));
        assert!(!t.contains("k"));
        assert_eq!(t.compare_set("k", b"", b"y"), (b"y".to_vec(), true));
        assert_eq!(t.compare_set("k", b"z", b"w"), (b"y".to_vec(), false));
        assert_eq!(t.compare_set("k", b"y", b"w"), (b"w".to_vec(), true));
        assert_eq!(t.get("k").map(Vec::as_slice), Some(&b"w"[..]));
    }
}
