//! [`FileStore`]: a store shared by processes through one file (c10d's FileStore).
//!
//! The file is an append-only log of records, each `op:u8, key_len:u32 LE, key,
//! value_len:u32 LE, value` (`op` 1 = set, 2 = delete), after an 8-byte header.
//! Writers take an exclusive `flock`, replay the records they have not seen yet, and
//! append; readers take a shared lock and replay. A record torn by a writer that died
//! mid-write is cut off by the next writer. Waits poll with a short backoff.
//! The log is never compacted: it grows with every update, which suits rendezvous
//! traffic (a few records per rank), not a general database.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::table::{CompareSet, Table, add_value, check_append_len, compare_set_decision};
use super::util::{
    Backoff, Deadline, TimeoutCell, check_key, check_keys, check_multi_set, check_value,
};
use super::{DEFAULT_TIMEOUT, MAX_KEY_LEN, MAX_VALUE_LEN, Store};
use crate::{Result, StoreError};

const HEADER: &[u8; 8] = b"TUTTIFS1";
const OP_SET: u8 = 1;
const OP_DELETE: u8 = 2;

/// A store kept in a file that several processes (or threads) open by path.
///
/// The file is created if missing and is not deleted when the store is dropped; use a
/// fresh path per job.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    state: Mutex<State>,
    timeout: TimeoutCell,
}

#[derive(Debug)]
struct State {
    file: File,
    table: Table,
    /// How far into the file `table` has replayed.
    pos: u64,
}

/// One update to append.
enum Record<'a> {
    Set(&'a str, Cow<'a, [u8]>),
    Delete(&'a str),
}

/// Holds a `flock` on the store's file until dropped.
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    fn exclusive(file: &'a File, path: &Path) -> Result<Self> {
        file.lock()
            .map_err(|e| io_error(path, "lock (exclusive)", e))?;
        Ok(Self(file))
    }

    fn shared(file: &'a File, path: &Path) -> Result<Self> {
        file.lock_shared()
            .map_err(|e| io_error(path, "lock (shared)", e))?;
        Ok(Self(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // Closing the descriptor would release the lock too; an unlock failure
        // leaves nothing to clean up.
        let _ = self.0.unlock();
    }
}

fn io_error(path: &Path, what: &str, source: std::io::Error) -> StoreError {
    StoreError::Io {
        context: format!("file store {}: {what}", path.display()),
        source,
    }
}

fn corrupt(path: &Path, at: u64, what: &str) -> StoreError {
    StoreError::Protocol {
        peer: format!("file store {}", path.display()),
        message: format!("corrupt record at byte {at}: {what}"),
    }
}

impl FileStore {
    /// Opens (creating if missing) the store file at `path`, with the
    /// [default timeout](DEFAULT_TIMEOUT).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_timeout(path, DEFAULT_TIMEOUT)
    }

    /// Opens the store file at `path` with the given default timeout.
    pub fn open_with_timeout(path: impl AsRef<Path>, timeout: Duration) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_error(&path, "open", e))?;
        let store = Self {
            state: Mutex::new(State {
                file,
                table: Table::new(),
                pos: 0,
            }),
            path,
            timeout: TimeoutCell::new(timeout),
        };
        // Validate the header (or write it) right away, so a wrong path fails here.
        store.write_op(|_| ((), Vec::new()))?;
        Ok(store)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the up-to-date table under a shared lock.
    fn read_op<T>(&self, f: impl FnOnce(&Table) -> T) -> Result<T> {
        let mut state = self.state();
        let State { file, table, pos } = &mut *state;
        let _lock = FileLock::shared(file, &self.path)?;
        refresh(&self.path, file, table, pos)?;
        Ok(f(table))
    }

    /// Computes the records to append from the up-to-date table under an exclusive
    /// lock, appends them and applies them.
    fn write_op<'a, T>(&self, f: impl FnOnce(&Table) -> (T, Vec<Record<'a>>)) -> Result<T> {
        let mut state = self.state();
        let State { file, table, pos } = &mut *state;
        let _lock = FileLock::exclusive(file, &self.path)?;
        let len = refresh(&self.path, file, table, pos)?;
        if *pos < len {
            // A writer died mid-record: cut the torn tail before appending.
            tracing::warn!(path = %self.path.display(), at = *pos, "file store: cutting a torn record");
            file.set_len(*pos)
                .map_err(|e| io_error(&self.path, "truncate torn record", e))?;
        }
        let (out, records) = f(table);
        let mut buf = Vec::new();
        if *pos == 0 {
            buf.extend_from_slice(HEADER);
        }
        for r in &records {
            encode_record(&mut buf, r);
        }
        if !buf.is_empty() {
            (&*file)
                .write_all(&buf)
                .map_err(|e| io_error(&self.path, "append", e))?;
            *pos += buf.len() as u64;
            for r in records {
                match r {
                    Record::Set(k, v) => table.set(k, v.into_owned()),
                    Record::Delete(k) => {
                        table.delete(k);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Polls until `f` returns `Some` (it gets the table and the missing keys) or the
    /// timeout expires.
    fn poll<T>(
        &self,
        keys: &[&str],
        timeout: Duration,
        f: impl Fn(&Table) -> Option<T>,
    ) -> Result<T> {
        let deadline = Deadline::after(timeout);
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(10));
        loop {
            let (found, missing) = self.read_op(|t| {
                let found = f(t);
                let missing: Vec<String> = if found.is_some() {
                    Vec::new()
                } else {
                    t.missing(keys).into_iter().map(String::from).collect()
                };
                (found, missing)
            })?;
            if let Some(v) = found {
                return Ok(v);
            }
            if deadline.expired() {
                return Err(deadline.timeout_error(keys, &missing));
            }
            backoff.sleep(&deadline);
        }
    }
}

fn encode_record(buf: &mut Vec<u8>, r: &Record<'_>) {
    let (op, key, value): (u8, &str, &[u8]) = match r {
        Record::Set(k, v) => (OP_SET, k, v.as_ref()),
        Record::Delete(k) => (OP_DELETE, k, &[]),
    };
    buf.push(op);
    // Lengths are bounded by MAX_KEY_LEN / MAX_VALUE_LEN, checked before this point.
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(value);
}

/// Replays the records appended since `state.pos`; returns the file's length. Leaves
/// `pos` before a torn (incomplete) final record.
fn refresh(path: &Path, file: &File, table: &mut Table, pos: &mut u64) -> Result<u64> {
    let len = file
        .metadata()
        .map_err(|e| io_error(path, "stat", e))?
        .len();
    if len <= *pos {
        return Ok(len);
    }
    let start = *pos;
    let tail_len =
        usize::try_from(len - start).map_err(|_| corrupt(path, start, "file too large"))?;
    let mut tail = vec![0u8; tail_len];
    file.read_exact_at(&mut tail, start)
        .map_err(|e| io_error(path, "read", e))?;
    let mut off = 0usize;
    if start == 0 {
        if tail.len() < HEADER.len() {
            return Ok(len);
        }
        if &tail[..HEADER.len()] != HEADER {
            return Err(corrupt(path, 0, "not a tutti file store (bad header)"));
        }
        off = HEADER.len();
    }
    loop {
        let at = start + off as u64;
        match decode_record(&tail[off..]) {
            Ok(None) => break,
            Ok(Some((op, key, value, used))) => {
                let key =
                    std::str::from_utf8(key).map_err(|_| corrupt(path, at, "key is not UTF-8"))?;
                match op {
                    OP_SET => table.set(key, value.to_vec()),
                    OP_DELETE => {
                        table.delete(key);
                    }
                    _ => return Err(corrupt(path, at, &format!("unknown op {op}"))),
                }
                off += used;
            }
            Err(what) => return Err(corrupt(path, at, what)),
        }
    }
    *pos = start + off as u64;
    Ok(len)
}

type Decoded<'a> = (u8, &'a [u8], &'a [u8], usize);

/// Decodes one record; `Ok(None)` if `buf` holds only part of one.
fn decode_record(buf: &[u8]) -> std::result::Result<Option<Decoded<'_>>, &'static str> {
    let Some((&op, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some((key, rest)) = split_len_prefixed(rest, MAX_KEY_LEN, "key length over the limit")?
    else {
        return Ok(None);
    };
    let Some((value, rest)) =
        split_len_prefixed(rest, MAX_VALUE_LEN, "value length over the limit")?
    else {
        return Ok(None);
    };
    Ok(Some((op, key, value, buf.len() - rest.len())))
}

#[allow(clippy::type_complexity)]
fn split_len_prefixed<'a>(
    buf: &'a [u8],
    max: usize,
    what: &'static str,
) -> std::result::Result<Option<(&'a [u8], &'a [u8])>, &'static str> {
    let Some((len, rest)) = buf.split_first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > max {
        return Err(what);
    }
    Ok(rest.split_at_checked(len))
}

fn request_error(op: &'static str, key: &str, message: String) -> StoreError {
    StoreError::Request {
        op,
        key: key.to_string(),
        message,
    }
}

impl Store for FileStore {
    fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        check_key("set", key)?;
        check_value("set", key, value.len())?;
        self.write_op(|_| ((), vec![Record::Set(key, Cow::Borrowed(value))]))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        check_key("get", key)?;
        self.poll(&[key], self.timeout(), |t| t.get(key).cloned())
    }

    fn add(&self, key: &str, delta: i64) -> Result<i64> {
        check_key("add", key)?;
        self.write_op(|t| match add_value(t.get(key).map(Vec::as_slice), delta) {
            Ok(v) => (
                Ok(v),
                vec![Record::Set(key, Cow::Owned(v.to_string().into_bytes()))],
            ),
            Err(m) => (Err(request_error("add", key, m)), Vec::new()),
        })?
    }

    fn compare_set(&self, key: &str, expected: &[u8], desired: &[u8]) -> Result<Vec<u8>> {
        check_key("compare_set", key)?;
        check_value("compare_set", key, desired.len())?;
        self.write_op(|t| {
            match compare_set_decision(t.get(key).map(Vec::as_slice), expected, desired) {
                CompareSet::Set => (
                    desired.to_vec(),
                    vec![Record::Set(key, Cow::Borrowed(desired))],
                ),
                CompareSet::Return(v) => (v, Vec::new()),
            }
        })
    }

    fn check(&self, keys: &[&str]) -> Result<bool> {
        check_keys("check", keys)?;
        self.read_op(|t| t.missing(keys).is_empty())
    }

    fn wait(&self, keys: &[&str], timeout: Option<Duration>) -> Result<()> {
        check_keys("wait", keys)?;
        self.poll(keys, timeout.unwrap_or_else(|| self.timeout()), |t| {
            t.missing(keys).is_empty().then_some(())
        })
    }

    fn multi_get(&self, keys: &[&str]) -> Result<Vec<Vec<u8>>> {
        check_keys("multi_get", keys)?;
        self.poll(keys, self.timeout(), |t| {
            keys.iter().map(|k| t.get(k).cloned()).collect()
        })
    }

    fn multi_set(&self, keys: &[&str], values: &[&[u8]]) -> Result<()> {
        check_multi_set(keys, values)?;
        self.write_op(|_| {
            (
                (),
                keys.iter()
                    .zip(values)
                    .map(|(k, v)| Record::Set(k, Cow::Borrowed(*v)))
                    .collect(),
            )
        })
    }

    fn append(&self, key: &str, value: &[u8]) -> Result<()> {
        check_key("append", key)?;
        self.write_op(|t| {
            let current = t.get(key).map_or(&[][..], Vec::as_slice);
            match check_append_len(current.len(), value.len()) {
                Ok(()) => (
                    Ok(()),
                    vec![Record::Set(key, Cow::Owned([current, value].concat()))],
                ),
                Err(m) => (Err(request_error("append", key, m)), Vec::new()),
            }
        })?
    }

    fn delete_key(&self, key: &str) -> Result<bool> {
        check_key("delete_key", key)?;
        self.write_op(|t| {
            if t.contains(key) {
                (true, vec![Record::Delete(key)])
            } else {
                (false, Vec::new())
            }
        })
    }

    fn num_keys(&self) -> Result<u64> {
        self.read_op(|t| t.len() as u64)
    }

    fn timeout(&self) -> Duration {
        self.timeout.get()
    }

    fn set_timeout(&self, timeout: Duration) {
        self.timeout.set(timeout);
    }
}
