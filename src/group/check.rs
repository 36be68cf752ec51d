//! `TUTTI_CHECK=1`: before each operation the ranks compare what they called (op,
//! dtype, count, root) through the store, and a mismatch names the first rank that
//! differs instead of hanging or corrupting data.

use std::fmt;
use std::time::Duration;

use super::Inner;
use crate::{DataType, Error, ReduceOp, Result};

/// What one rank called.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Desc {
    pub dtype: Option<DataType>,
    pub count: usize,
    pub root: Option<usize>,
    pub op: Option<ReduceOp>,
}

impl Desc {
    pub(crate) fn new(
        dtype: Option<DataType>,
        count: usize,
        root: Option<usize>,
        op: Option<ReduceOp>,
    ) -> Self {
        Desc {
            dtype,
            count,
            root,
            op,
        }
    }
}

impl fmt::Display for Desc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "count={}", self.count)?;
        if let Some(d) = self.dtype {
            write!(f, " dtype={d}")?;
        }
        if let Some(op) = &self.op {
            write!(f, " op={op}")?;
        }
        if let Some(r) = self.root {
            write!(f, " root={r}")?;
        }
        Ok(())
    }
}

/// Publishes this rank's call for op `seq` and compares it with every rank's.
pub(crate) fn verify(
    g: &Inner,
    op: &'static str,
    seq: u64,
    desc: &Desc,
    timeout: Duration,
) -> Result<()> {
    let mine = format!("{op}({desc})");
    let key = |r: usize| format!("{}/check/{seq}/{r}", g.name);
    g.store.set(&key(g.rank), mine.as_bytes())?;
    let keys: Vec<String> = (0..g.size).map(key).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    g.store
        .wait(&refs, Some(timeout.max(Duration::from_millis(1))))?;
    let all = g.store.multi_get(&refs)?;
    let reference = String::from_utf8_lossy(&all[0]).into_owned();
    if let Some((r, theirs)) = all
        .iter()
        .enumerate()
        .map(|(r, v)| (r, String::from_utf8_lossy(v).into_owned()))
        .find(|(_, v)| *v != reference)
    {
        let err = Error::Mismatch {
            seq,
            rank: r,
            reference: 0,
            ours: reference,
            theirs,
        };
        g.fail(err.to_string());
        return Err(err);
    }
    Ok(())
}
