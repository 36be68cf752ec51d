//! Moving results between ranks through the job's store, not through the data path
//! under test: a rank whose links corrupt data still reports its findings intact,
//! and a rank that dies or hangs is named when its results never arrive.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ValidateError;
use crate::store::{Store, StoreError};

/// An all-gather of serialisable values over the store, and turn-taking.
pub struct Exchange {
    store: Arc<dyn Store>,
    prefix: String,
    rank: usize,
    size: usize,
    seq: u64,
    timeout: Duration,
}

impl Exchange {
    /// Exchanges under `prefix` (unique to the run) among `size` ranks.
    pub fn new(
        store: Arc<dyn Store>,
        prefix: String,
        rank: usize,
        size: usize,
        timeout: Duration,
    ) -> Self {
        Exchange {
            store,
            prefix,
            rank,
            size,
            seq: 0,
            timeout,
        }
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// How long a rank waits for the others.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn next_key(&mut self, what: &str) -> String {
        self.seq += 1;
        format!("{}/{}/{what}", self.prefix, self.seq)
    }

    /// Every rank's `mine`, in rank order (collective: every rank calls it in the
    /// same order).
    pub fn all_gather<T: Serialize + DeserializeOwned>(
        &mut self,
        what: &str,
        mine: &T,
    ) -> Result<Vec<T>, ValidateError> {
        let base = self.next_key(what);
        let keys: Vec<String> = (0..self.size).map(|r| format!("{base}/{r}")).collect();
        let bytes = serde_json::to_vec(mine).map_err(|e| ValidateError::Decode {
            what: what.into(),
            rank: self.rank,
            detail: e.to_string(),
        })?;
        let store_err = |source| ValidateError::Store {
            what: what.to_string(),
            source,
        };
        self.store
            .set(&keys[self.rank], &bytes)
            .map_err(store_err)?;
        self.wait(what, &keys)?;
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let values = self.store.multi_get(&refs).map_err(store_err)?;
        values
            .iter()
            .enumerate()
            .map(|(r, v)| {
                serde_json::from_slice(v).map_err(|e| ValidateError::Decode {
                    what: what.into(),
                    rank: r,
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    /// Waits for `keys` (one per rank of `ranks_of_keys`, key `i` belonging to rank
    /// `i` unless given), naming the ranks whose keys never appeared.
    fn wait(&self, what: &str, keys: &[String]) -> Result<(), ValidateError> {
        self.wait_for(what, keys, &(0..keys.len()).collect::<Vec<_>>())
    }

    fn wait_for(&self, what: &str, keys: &[String], owners: &[usize]) -> Result<(), ValidateError> {
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        match self.store.wait(&refs, Some(self.timeout)) {
            Ok(()) => Ok(()),
            Err(StoreError::Timeout { missing, .. }) => {
                let ranks: Vec<usize> = keys
                    .iter()
                    .zip(owners)
                    .filter(|(k, _)| missing.contains(k))
                    .map(|(_, &r)| r)
                    .collect();
                Err(ValidateError::Unresponsive {
                    what: what.into(),
                    ranks,
                    timeout_s: self.timeout.as_secs(),
                })
            }
            Err(source) => Err(ValidateError::Store {
                what: what.into(),
                source,
            }),
        }
    }

    /// Runs `turns` one after the other, job-wide: turn `t` starts once every rank
    /// of turn `t - 1` has finished it. `run(t)` is called on this rank for each turn
    /// it takes part in (`turns[t]` lists the ranks). Ranks wait in the store (a
    /// blocking socket read, so idle ranks take no CPU from the measuring ones), and
    /// all ranks return once the last turn is done.
    pub fn take_turns<E>(
        &mut self,
        what: &str,
        turns: &[Vec<usize>],
        mut run: impl FnMut(usize) -> Result<(), E>,
    ) -> Result<Vec<Option<E>>, ValidateError> {
        let base = self.next_key(what);
        let key = |t: usize, r: usize| format!("{base}/t{t}/{r}");
        let mut errors: Vec<Option<E>> = Vec::new();
        // Every rank follows every turn (so the timeout applies per turn).
        for (t, members) in turns.iter().enumerate() {
            if members.contains(&self.rank) {
                errors.push(run(t).err());
                self.store.set(&key(t, self.rank), b"1").map_err(|source| {
                    ValidateError::Store {
                        what: what.into(),
                        source,
                    }
                })?;
            }
            let keys: Vec<String> = members.iter().map(|&r| key(t, r)).collect();
            self.wait_for(what, &keys, members)?;
        }
        Ok(errors)
    }
}
