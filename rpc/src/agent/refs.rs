//! Reference counting of RRefs (torch's RRef protocol).
//!
//! The owner keeps, per RRef, the set of forks (references held by other workers,
//! each with its holder) and a count of its own handles; the value is freed when
//! both are empty and no creation is running. A worker that passes a user
//! reference on creates a fork for the receiver and keeps its own reference until
//! the receiver confirms (child accept) that the owner knows the new fork (fork
//! request), so the owner's set never empties early. Every one of these messages
//! is retried until acknowledged, and each is idempotent; a delete that overtakes
//! the fork it deletes is remembered until the fork arrives, so reordering, drops
//! and retries lose and leak nothing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, Weak};
use std::time::Instant;

use super::serve::{Answer, Source};
use super::{Agent, DebugInfo, lock};
use crate::codec::Arrivals;
use crate::rref::{CreationCell, Handle, HandleKind};
use crate::wire::{ForkData, Id, RequestKind, WireError};
use crate::{Error, Result};

#[derive(Default)]
enum Value {
    #[default]
    Pending,
    Ready(Vec<u8>),
    Failed {
        func: String,
        message: String,
    },
}

#[derive(Default)]
struct OwnerEntry {
    value: Value,
    /// The function making the value is running.
    creating: bool,
    /// Fork id -> the rank holding it.
    forks: HashMap<Id, u32>,
    /// Deletes that arrived before their fork.
    early_deletes: HashMap<Id, u32>,
    /// Handles on the owner itself.
    local: usize,
    /// Fetches waiting for the value.
    waiters: Vec<(Source, u64)>,
}

impl OwnerEntry {
    fn freeable(&self) -> bool {
        !self.creating
            && self.forks.is_empty()
            && self.early_deletes.is_empty()
            && self.local == 0
            && self.waiters.is_empty()
    }

    fn add_fork(&mut self, fork: Id, holder: u32) {
        if self.early_deletes.remove(&fork).is_none() {
            self.forks.insert(fork, holder);
        }
        tracing::trace!(%fork, holder, forks = self.forks.len(), "owner: fork added");
    }

    fn delete_fork(&mut self, fork: Id, holder: u32) {
        if self.forks.remove(&fork).is_none() {
            self.early_deletes.insert(fork, holder);
        }
        tracing::trace!(%fork, holder, forks = self.forks.len(), "owner: fork deleted");
    }

    fn answer(&self, rref: Id) -> Option<Answer> {
        match &self.value {
            Value::Ready(b) => Some(Ok((b.clone(), Vec::new()))),
            Value::Failed { func, message } => Some(Err(WireError::CreationFailed {
                rref,
                func: func.clone(),
                message: message.clone(),
            })),
            Value::Pending => None,
        }
    }
}

/// A reference this worker holds to an RRef owned by another worker.
struct UserFork {
    rref: Id,
    owner: usize,
    /// Its handle is gone (dropped, or released at shutdown).
    released: bool,
    /// The `remote` call creating the RRef has not settled yet.
    creation_pending: bool,
    /// The owner may know this fork, so releasing it sends a delete.
    delete_needed: bool,
    /// Forks this worker passed on that the receivers have not confirmed yet.
    children: HashSet<Id>,
}

/// The RRef tables of one worker.
#[derive(Default)]
pub(crate) struct Refs {
    owners: HashMap<Id, OwnerEntry>,
    users: HashMap<Id, UserFork>,
    /// Child fork -> this worker's fork it was made from.
    children: HashMap<Id, Id>,
    live: HashMap<u64, Weak<Handle>>,
    next_live: u64,
}

impl Refs {
    fn maybe_free(&mut self, rref: Id) {
        if self.owners.get(&rref).is_some_and(OwnerEntry::freeable) {
            self.owners.remove(&rref);
            tracing::trace!(%rref, "owner RRef freed");
        }
    }

    /// Forgets user fork `fork` if nothing holds it; returns the delete to send.
    fn try_finish_user(&mut self, fork: Id) -> Option<(usize, Id, Id)> {
        let u = self.users.get(&fork)?;
        if !(u.released && !u.creation_pending && u.children.is_empty()) {
            return None;
        }
        let u = self.users.remove(&fork)?;
        tracing::trace!(%fork, rref = %u.rref, delete = u.delete_needed, "user: fork released");
        u.delete_needed.then_some((u.owner, u.rref, fork))
    }

    fn remove_child(&mut self, child: Id) -> Option<(usize, Id, Id)> {
        let parent = self.children.remove(&child)?;
        tracing::trace!(%child, %parent, "user: child accepted");
        if let Some(u) = self.users.get_mut(&parent) {
            u.children.remove(&child);
        }
        self.try_finish_user(parent)
    }
}

/// What an owner's value lookup found.
pub(crate) enum OwnerValue {
    Ready(Vec<u8>),
    Failed { func: String, message: String },
    Missing,
    TimedOut,
}

impl Agent {
    fn refs(&self) -> MutexGuard<'_, Refs> {
        lock(&self.refs)
    }

    fn send_delete(self: &Arc<Self>, delete: Option<(usize, Id, Id)>) {
        if let Some((owner, rref, fork)) = delete {
            self.send_ref(owner, RequestKind::UserDelete { rref, fork }, None);
        }
    }

    pub(crate) fn owner_local_new(&self, rref: Id) {
        self.refs().owners.entry(rref).or_default().local += 1;
    }

    pub(crate) fn owner_local_dec(&self, rref: Id) {
        let mut refs = self.refs();
        if let Some(e) = refs.owners.get_mut(&rref) {
            e.local = e.local.saturating_sub(1);
        }
        refs.maybe_free(rref);
    }

    pub(crate) fn owner_begin_create(&self, rref: Id, creator: Option<(Id, u32)>) {
        let mut refs = self.refs();
        let e = refs.owners.entry(rref).or_default();
        e.creating = true;
        if let Some((fork, holder)) = creator {
            e.add_fork(fork, holder);
        }
    }

    /// Stores the value (or the failure) of RRef `rref`, answers the waiting
    /// fetches, and returns the answer for the creator.
    pub(crate) fn owner_finish_create(
        self: &Arc<Self>,
        rref: Id,
        func: &str,
        value: std::result::Result<Vec<u8>, WireError>,
    ) -> Answer {
        let (ack, answers) = {
            let mut refs = self.refs();
            let e = refs.owners.entry(rref).or_default();
            e.creating = false;
            let ack = match value {
                Ok(bytes) => {
                    e.value = Value::Ready(bytes);
                    Ok((Vec::new(), Vec::new()))
                }
                Err(w) => {
                    let message = match &w {
                        WireError::Failed { message, .. }
                        | WireError::BadArguments { message, .. } => message.clone(),
                        WireError::UnknownFunction { func, .. } => {
                            format!("no function named {func:?}")
                        }
                        other => format!("{other:?}"),
                    };
                    e.value = Value::Failed {
                        func: func.to_string(),
                        message,
                    };
                    Err(w)
                }
            };
            let waiters = std::mem::take(&mut e.waiters);
            let answers: Vec<(Source, u64, Answer)> = waiters
                .into_iter()
                .filter_map(|(src, id)| e.answer(rref).map(|a| (src, id, a)))
                .collect();
            refs.maybe_free(rref);
            (ack, answers)
        };
        self.refs_cv.notify_all();
        for (src, id, a) in answers {
            self.reply(src, id, a);
        }
        ack
    }

    /// The answer to a fetch of `rref`, or `None` when it waits for the value.
    pub(crate) fn owner_fetch(&self, rref: Id, src: &Source, id: u64) -> Option<Answer> {
        let mut refs = self.refs();
        let Some(e) = refs.owners.get_mut(&rref) else {
            return Some(Err(WireError::UnknownRRef { rref }));
        };
        if let Some(a) = e.answer(rref) {
            return Some(a);
        }
        if e.creating {
            e.waiters.push((src.clone(), id));
            return None;
        }
        Some(Err(WireError::Other(format!(
            "RRef {rref} has no value yet: its creation has not reached its owner"
        ))))
    }

    /// The value of an RRef this worker owns, waiting until `deadline` for it.
    pub(crate) fn owner_value(&self, rref: Id, deadline: Option<Instant>) -> OwnerValue {
        let mut refs = self.refs();
        loop {
            match refs.owners.get(&rref).map(|e| &e.value) {
                None => return OwnerValue::Missing,
                Some(Value::Ready(b)) => return OwnerValue::Ready(b.clone()),
                Some(Value::Failed { func, message }) => {
                    return OwnerValue::Failed {
                        func: func.clone(),
                        message: message.clone(),
                    };
                }
                Some(Value::Pending) => {}
            }
            refs = match deadline {
                None => self.refs_cv.wait(refs).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return OwnerValue::TimedOut;
                    }
                    self.refs_cv
                        .wait_timeout(refs, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    pub(crate) fn owner_add_fork(&self, rref: Id, fork: Id, holder: u32) {
        let mut refs = self.refs();
        refs.owners.entry(rref).or_default().add_fork(fork, holder);
        refs.maybe_free(rref);
    }

    pub(crate) fn owner_delete_fork(&self, rref: Id, fork: Id, holder: u32) {
        let mut refs = self.refs();
        refs.owners
            .entry(rref)
            .or_default()
            .delete_fork(fork, holder);
        refs.maybe_free(rref);
    }

    /// Worker `from` left (graceful shutdown): drop whatever it still holds.
    pub(crate) fn peer_left(&self, from: usize) {
        self.left[from].store(true, Ordering::SeqCst);
        let mut refs = self.refs();
        let holder = from as u32;
        let mut dropped = 0;
        let ids: Vec<Id> = refs.owners.keys().copied().collect();
        for rref in ids {
            if let Some(e) = refs.owners.get_mut(&rref) {
                let before = e.forks.len() + e.early_deletes.len();
                e.forks.retain(|_, h| *h != holder);
                e.early_deletes.retain(|_, h| *h != holder);
                dropped += before - e.forks.len() - e.early_deletes.len();
            }
            refs.maybe_free(rref);
        }
        if dropped > 0 {
            tracing::warn!(
                worker = %self.label(from),
                dropped,
                "a worker left still holding references; dropped them"
            );
        }
    }

    pub(crate) fn user_new(&self, fork: Id, rref: Id, owner: usize, creation_pending: bool) {
        self.refs().users.insert(
            fork,
            UserFork {
                rref,
                owner,
                released: false,
                creation_pending,
                delete_needed: !creation_pending,
                children: HashSet::new(),
            },
        );
    }

    pub(crate) fn user_release(self: &Arc<Self>, fork: Id) {
        let delete = {
            let mut refs = self.refs();
            if let Some(u) = refs.users.get_mut(&fork) {
                u.released = true;
            }
            refs.try_finish_user(fork)
        };
        self.send_delete(delete);
    }

    /// The `remote` call creating a user's RRef settled; `maybe_delivered`: the
    /// owner may have the creator's fork.
    pub(crate) fn user_creation_settled(self: &Arc<Self>, fork: Id, maybe_delivered: bool) {
        let delete = {
            let mut refs = self.refs();
            if let Some(u) = refs.users.get_mut(&fork) {
                u.creation_pending = false;
                u.delete_needed = maybe_delivered;
            }
            refs.try_finish_user(fork)
        };
        self.send_delete(delete);
    }

    pub(crate) fn child_accepted(self: &Arc<Self>, child: Id) {
        let delete = self.refs().remove_child(child);
        self.send_delete(delete);
    }

    /// Makes a fork of `handle` for `dest` (the RRef is being sent there).
    pub(crate) fn fork_for(self: &Arc<Self>, handle: &Handle, dest: usize) -> Result<ForkData> {
        if !Arc::ptr_eq(&handle.agent, self) {
            return Err(Error::InvalidArgument(
                "an RRef of another RPC agent cannot be sent through this one".into(),
            ));
        }
        if handle.is_released() {
            return Err(Error::ShutDown {
                what: format!("passing RRef {}", handle.rref),
                worker: self.label(self.me),
            });
        }
        // An RRef is passed on once its creation is confirmed (so that every
        // receiver can use it), or not at all.
        if let Some(Err(e)) = handle.creation.wait(None) {
            return Err(handle.creation_failed(e));
        }
        let fork = self.new_id();
        let mut refs = self.refs();
        match handle.kind {
            HandleKind::Owner => {
                let Some(e) = refs.owners.get_mut(&handle.rref) else {
                    return Err(Error::UnknownRRef {
                        rref: format!("RRef {}", handle.rref),
                        owner: self.label(self.me),
                    });
                };
                if dest == self.me {
                    e.local += 1;
                } else {
                    e.add_fork(fork, dest as u32);
                }
            }
            HandleKind::User { fork: mine } => {
                // Released meanwhile (by graceful shutdown): nothing to fork from.
                match refs.users.get_mut(&mine) {
                    Some(u) if !u.released => {
                        u.children.insert(fork);
                    }
                    _ => {
                        return Err(Error::ShutDown {
                            what: format!("passing RRef {}", handle.rref),
                            worker: self.label(self.me),
                        });
                    }
                }
                refs.children.insert(fork, mine);
            }
        }
        Ok(ForkData {
            owner: handle.owner as u32,
            rref: handle.rref,
            fork,
            parent: self.me as u32,
        })
    }

    /// Undoes [`fork_for`](Self::fork_for) for forks that never reached `dest`.
    pub(crate) fn rollback_forks(self: &Arc<Self>, forks: &[ForkData], dest: usize) {
        for fd in forks.iter().filter(|fd| fd.parent as usize == self.me) {
            if fd.owner as usize == self.me {
                let mut refs = self.refs();
                if let Some(e) = refs.owners.get_mut(&fd.rref) {
                    if dest == self.me {
                        e.local = e.local.saturating_sub(1);
                    } else {
                        e.forks.remove(&fd.fork);
                    }
                }
                refs.maybe_free(fd.rref);
            } else {
                let delete = self.refs().remove_child(fd.fork);
                self.send_delete(delete);
            }
        }
    }

    /// Takes in the RRefs a message from `from` carries: makes their handles and
    /// starts the protocol (fork request to the owner, then child accept to the
    /// parent). `sweepable`: graceful shutdown releases them (they belong to
    /// user code, not to a call being served).
    pub(crate) fn accept_forks(
        self: &Arc<Self>,
        from: usize,
        forks: &[ForkData],
        sweepable: bool,
    ) -> Arrivals {
        let mut arrivals = Arrivals::default();
        let n = self.workers.len();
        for fd in forks {
            let (owner, parent) = (fd.owner as usize, fd.parent as usize);
            if owner >= n || parent >= n {
                tracing::warn!(from, ?fd, "ignoring an RRef with an out-of-range rank");
                continue;
            }
            let handle = if owner == self.me {
                if parent != self.me {
                    self.refs().owners.entry(fd.rref).or_default().local += 1;
                    self.send_ref(parent, RequestKind::ChildAccept { fork: fd.fork }, None);
                }
                Handle::owner(self, fd.rref, CreationCell::confirmed(), sweepable)
            } else {
                self.user_new(fd.fork, fd.rref, owner, false);
                if parent != owner {
                    let agent = self.clone();
                    let fork = fd.fork;
                    self.send_ref(
                        owner,
                        RequestKind::ForkRequest {
                            rref: fd.rref,
                            fork,
                        },
                        Some(Box::new(move || {
                            agent.send_ref(parent, RequestKind::ChildAccept { fork }, None)
                        })),
                    );
                }
                Handle::user(
                    self,
                    fd.rref,
                    owner,
                    fd.fork,
                    CreationCell::confirmed(),
                    sweepable,
                )
            };
            arrivals.0.insert(fd.fork, handle);
        }
        arrivals
    }

    pub(crate) fn register_live(&self, make: impl FnOnce(u64) -> Arc<Handle>) -> Arc<Handle> {
        let key = {
            let mut refs = self.refs();
            refs.next_live += 1;
            refs.next_live
        };
        let h = make(key);
        self.refs().live.insert(key, Arc::downgrade(&h));
        h
    }

    pub(crate) fn unregister_live(&self, key: u64) {
        self.refs().live.remove(&key);
    }

    /// Releases the RRef handles of this worker (graceful shutdown), except those
    /// incoming calls brought (the calls release them when they return).
    pub(crate) fn release_all_handles(&self) {
        let handles: Vec<Arc<Handle>> = {
            let refs = self.refs();
            refs.live
                .values()
                .filter_map(Weak::upgrade)
                .filter(|h| h.swept_at_shutdown)
                .collect()
        };
        for h in &handles {
            h.release();
        }
    }

    pub(crate) fn refs_debug_info(&self) -> DebugInfo {
        let refs = self.refs();
        DebugInfo {
            owner_rrefs: refs.owners.len(),
            forks: refs.owners.values().map(|e| e.forks.len()).sum(),
            early_deletes: refs.owners.values().map(|e| e.early_deletes.len()).sum(),
            owner_handles: refs.owners.values().map(|e| e.local).sum(),
            user_rrefs: refs.users.len(),
            pending_children: refs.children.len(),
            ..DebugInfo::default()
        }
    }
}
