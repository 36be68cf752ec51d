//! Rendezvous utilities over any [`Store`], with torch.distributed.elastic's semantics
//! (`torch/distributed/elastic/utils/store.py`): [`barrier`], [`synchronize`] and
//! [`get_all`], using the same key layout.
//!
//! Keys used under a prefix `P`: `P{rank}` (the data of [`synchronize`]),
//! `P/num_members` and `P/last_member` (a barrier), `P/finished/...` (the exit barrier
//! of [`get_all`]), `P{rank}/TRACE` and `P/TRACING_GATE` (missing-rank tracing). Keys
//! are never deleted: use a prefix once.

use std::time::Duration;

use super::Store;
use crate::{Result, StoreError};

const NUM_MEMBERS: &str = "/num_members";
const LAST_MEMBER_CHECKIN: &str = "/last_member";
const TRACE: &str = "/TRACE";
const TRACING_GATE: &str = "/TRACING_GATE";
const VAL_IGNORED: &[u8] = b"<val_ignored>";

/// Rank 0 stops probing for missing ranks after this many misses (it is enough to
/// know that one or more nodes are gone).
const MAX_TRACE_MISSING_RANKS: usize = 16;

/// How long rank 0 waits for the first rank's trace key after a barrier timeout.
pub const DEFAULT_TRACE_TIMEOUT: Duration = Duration::from_secs(10);

fn check_world(what: &str, world_size: usize, rank: Option<usize>) -> Result<()> {
    if world_size == 0 {
        return Err(StoreError::InvalidArgument(format!(
            "{what}: world_size must be at least 1"
        )));
    }
    if let Some(rank) = rank.filter(|&r| r >= world_size) {
        return Err(StoreError::InvalidArgument(format!(
            "{what}: rank {rank} is out of range for world_size {world_size}"
        )));
    }
    Ok(())
}

/// Checks in to a barrier without waiting; returns the key that is set once all
/// `world_size` members have checked in.
fn barrier_nonblocking<S: Store + ?Sized>(
    store: &S,
    world_size: usize,
    key_prefix: &str,
) -> Result<String> {
    let num_members_key = format!("{key_prefix}{NUM_MEMBERS}");
    let last_member_key = format!("{key_prefix}{LAST_MEMBER_CHECKIN}");
    let idx = store.add(&num_members_key, 1)?;
    if i64::try_from(world_size).is_ok_and(|w| w == idx) {
        store.set(&last_member_key, VAL_IGNORED)?;
    }
    Ok(last_member_key)
}

/// Blocks until `world_size` callers have reached the barrier at `key_prefix`, or
/// `timeout` expires (zero: never).
///
/// With `rank` given, a timeout reports the missing ranks: every rank writes a trace
/// key, rank 0 probes the others (waiting up to [`DEFAULT_TRACE_TIMEOUT`] for the
/// first, then 1 ms each, stopping after 16 misses) and fails with
/// [`StoreError::BarrierTimeout`] naming them; the other ranks' errors point at rank 0's.
/// Without `rank`, a timeout is the store's [`StoreError::Timeout`].
pub fn barrier<S: Store + ?Sized>(
    store: &S,
    world_size: usize,
    key_prefix: &str,
    timeout: Duration,
    rank: Option<usize>,
) -> Result<()> {
    barrier_with_trace_timeout(
        store,
        world_size,
        key_prefix,
        timeout,
        rank,
        DEFAULT_TRACE_TIMEOUT,
    )
}

/// [`barrier`] with the time rank 0 waits for the first trace key after a timeout.
pub fn barrier_with_trace_timeout<S: Store + ?Sized>(
    store: &S,
    world_size: usize,
    key_prefix: &str,
    timeout: Duration,
    rank: Option<usize>,
    trace_timeout: Duration,
) -> Result<()> {
    check_world("barrier", world_size, rank)?;
    let last_member_key = barrier_nonblocking(store, world_size, key_prefix)?;
    let err = match store.wait(&[&last_member_key], Some(timeout)) {
        Ok(()) => return Ok(()),
        Err(e @ StoreError::Timeout { .. }) => e,
        Err(e) => return Err(e),
    };
    let Some(rank) = rank else { return Err(err) };
    tracing::warn!(
        rank,
        key_prefix,
        world_size,
        ?timeout,
        "barrier timed out; tracing missing ranks"
    );
    match detect_missing_ranks(store, world_size, key_prefix, rank, timeout, trace_timeout)? {
        Some(missing_ranks) => Err(StoreError::BarrierTimeout {
            rank,
            prefix: key_prefix.to_string(),
            world_size,
            missing_ranks,
            timeout,
        }),
        None => Err(err),
    }
}

/// After a barrier timeout: `Some(Some(ranks))` on rank 0, `Some(None)` on the
/// others once rank 0 has traced, `None` when rank 0 never traced (the original
/// timeout then stands).
#[allow(clippy::option_option)]
fn detect_missing_ranks<S: Store + ?Sized>(
    store: &S,
    world_size: usize,
    key_prefix: &str,
    rank: usize,
    barrier_timeout: Duration,
    trace_timeout: Duration,
) -> Result<Option<Option<Vec<usize>>>> {
    store.set(&format!("{key_prefix}{rank}{TRACE}"), VAL_IGNORED)?;
    if rank == 0 {
        let mut missing = Vec::new();
        for i in 1..world_size {
            if missing.len() >= MAX_TRACE_MISSING_RANKS {
                break;
            }
            // Once a rank is missing, others probably are too: do not wait long.
            let wait = if missing.is_empty() {
                trace_timeout
            } else {
                Duration::from_millis(1)
            };
            match store.wait(&[&format!("{key_prefix}{i}{TRACE}")], Some(wait)) {
                Ok(()) => {}
                Err(StoreError::Timeout { .. }) => missing.push(i),
                Err(e) => return Err(e),
            }
        }
        store.set(&format!("{key_prefix}{TRACING_GATE}"), VAL_IGNORED)?;
        Ok(Some(Some(missing)))
    } else {
        match store.wait(
            &[&format!("{key_prefix}{TRACING_GATE}")],
            Some(barrier_timeout),
        ) {
            Ok(()) => Ok(Some(None)),
            Err(StoreError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Returns the values of keys `{prefix}0` .. `{prefix}{world_size-1}`, waiting up to
/// `timeout` for them (`None`: the store's timeout), then checks in to an exit barrier
/// at `{prefix}/finished`; rank 0 waits for every rank to have read before returning,
/// since rank 0 usually hosts the store's server and must leave last.
pub fn get_all<S: Store + ?Sized>(
    store: &S,
    rank: usize,
    prefix: &str,
    world_size: usize,
    timeout: Option<Duration>,
) -> Result<Vec<Vec<u8>>> {
    check_world("get_all", world_size, Some(rank))?;
    let keys: Vec<String> = (0..world_size).map(|i| format!("{prefix}{i}")).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    store.wait(&key_refs, timeout)?;
    let data = store.multi_get(&key_refs)?;
    let barrier_key = barrier_nonblocking(store, world_size, &format!("{prefix}/finished"))?;
    if rank == 0 {
        store.wait(&[&barrier_key], timeout)?;
    }
    Ok(data)
}

/// Publishes `data` as `{key_prefix}{rank}` and returns every rank's data, in rank
/// order ([`get_all`] with `timeout`). The keys are not deleted: use a prefix once.
pub fn synchronize<S: Store + ?Sized>(
    store: &S,
    data: &[u8],
    rank: usize,
    world_size: usize,
    key_prefix: &str,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>> {
    check_world("synchronize", world_size, Some(rank))?;
    store.set(&format!("{key_prefix}{rank}"), data)?;
    get_all(store, rank, key_prefix, world_size, Some(timeout))
}
