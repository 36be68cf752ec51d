//! Sub-groups: [`ProcessGroup::new_group`] (an explicit list of ranks) and
//! [`ProcessGroup::split`] (by colour and key), both collective over the parent.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ProcessGroup;
use super::init::{Spec, build};
use crate::{Error, Result};

impl ProcessGroup {
    /// A group of the parent's `ranks` (every parent rank calls this with the same
    /// list). Returns `None` on ranks outside the list. The new group's rank `i` is
    /// `ranks[i]`.
    pub fn new_group(&self, ranks: &[usize]) -> Result<Option<ProcessGroup>> {
        let id = self.inner.subgroups.fetch_add(1, Ordering::Relaxed);
        let mut seen = vec![false; self.size()];
        for &r in ranks {
            if r >= self.size() {
                return Err(Error::InvalidArgument(format!(
                    "new_group: rank {r} is outside the parent group of {} ranks",
                    self.size()
                )));
            }
            if std::mem::replace(&mut seen[r], true) {
                return Err(Error::InvalidArgument(format!(
                    "new_group: rank {r} is listed twice"
                )));
            }
        }
        if ranks.is_empty() {
            return Err(Error::InvalidArgument(
                "new_group: the rank list is empty".into(),
            ));
        }
        let Some(me) = ranks.iter().position(|&r| r == self.rank()) else {
            return Ok(None);
        };
        let name = format!("{}/g{id}", self.inner.name);
        self.member(name, me, ranks).map(Some)
    }

    /// Splits the group by colour: ranks passing the same `Some(color)` form a new
    /// group, ordered by `(key, parent rank)`; `None` joins no group (returns
    /// `None`). Collective over the parent, through its store.
    pub fn split(&self, color: Option<u32>, key: i64) -> Result<Option<ProcessGroup>> {
        let id = self.inner.subgroups.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}/s{id}", self.inner.name);
        let store = &self.inner.store;
        let k = |r: usize| format!("{name}/split/{r}");
        let mine = match color {
            Some(c) => format!("{c} {key}"),
            None => "none".into(),
        };
        store.set(&k(self.rank()), mine.as_bytes())?;
        let keys: Vec<String> = (0..self.size()).map(k).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let wait = if self.timeout.is_zero() {
            Duration::ZERO
        } else {
            self.timeout
        };
        store.wait(&refs, Some(wait))?;
        let all = store.multi_get(&refs)?;
        let Some(color) = color else {
            return Ok(None);
        };
        let mut members: Vec<(i64, usize)> = all
            .iter()
            .enumerate()
            .filter_map(|(r, v)| {
                let s = String::from_utf8_lossy(v);
                let mut it = s.split(' ');
                let c: u32 = it.next()?.parse().ok()?;
                let key: i64 = it.next()?.parse().ok()?;
                (c == color).then_some((key, r))
            })
            .collect();
        members.sort();
        let ranks: Vec<usize> = members.iter().map(|&(_, r)| r).collect();
        let me = ranks
            .iter()
            .position(|&r| r == self.rank())
            .ok_or_else(|| {
                Error::InvalidArgument("split: this rank's entry is missing from the store".into())
            })?;
        self.member(format!("{name}/c{color}"), me, &ranks)
            .map(Some)
    }

    fn member(&self, name: String, me: usize, parent_ranks: &[usize]) -> Result<ProcessGroup> {
        let inner = &self.inner;
        build(Spec {
            store: inner.store.clone(),
            name,
            rank: me,
            global_ranks: parent_ranks
                .iter()
                .map(|&r| inner.global_ranks[r])
                .collect(),
            peers: Some(inner.topo.subset(parent_ranks).peers),
            threads: inner.threads.clone(),
            opts: GroupOptions {
                timeout: self.timeout,
                ..inner.opts.clone()
            },
        })
    }
}

use super::options::GroupOptions;
