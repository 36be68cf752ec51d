//! The key-value table and c10d's update rules, shared by the memory store, the file
//! store (which replays its log into one) and the TCP store's server.

use std::collections::HashMap;

use super::MAX_VALUE_LEN;

/// Keys mapped to values, with c10d's semantics for `add`, `compare_set`, `append`.
#[derive(Debug, Default)]
pub(crate) struct Table {
    map: HashMap<String, Vec<u8>>,
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

/// Parses a counter value (decimal text, optionally signed, surrounding ASCII
/// whitespace allowed, as C's `stoll` accepts).
pub(crate) fn parse_counter(bytes: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or_else(|| {
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned();
            format!("the present value {shown:?} is not a decimal integer")
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
