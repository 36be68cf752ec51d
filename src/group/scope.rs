//! Group scopes (NCCL's `ncclGroupStart`/`ncclGroupEnd`, torch's coalescing manager):
//! the asynchronous operations issued while a scope is open are posted together when
//! it ends, and [`GroupScope::end`] returns one [`Work`] that completes when all of
//! them have.

use std::sync::Mutex;

use tutti_transport::p2p::Batch;

use super::work::Work;
use super::{Inner, ProcessGroup};
use crate::{Error, Result};

pub(crate) type Post = Box<dyn FnOnce(&mut Batch<'_>) + Send>;

/// The operations of an open scope.
#[derive(Default)]
pub(crate) struct ScopeState {
    /// Point-to-point posts held back until the scope ends.
    deferred: Vec<Post>,
    /// One signal per operation issued in the scope.
    signals: Vec<Work<()>>,
}

/// An open group scope; see [`ProcessGroup::group_start`].
#[must_use = "a scope posts its operations when it ends (or is dropped)"]
pub struct GroupScope {
    group: ProcessGroup,
    open: bool,
}

impl std::fmt::Debug for GroupScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupScope")
            .field("open", &self.open)
            .finish()
    }
}

impl Inner {
    /// Holds `post` back when a scope is open (returns `None`), else hands it back.
    pub(crate) fn defer_p2p(&self, post: Post) -> Option<Post> {
        let mut scope = lock(&self.scope);
        match scope.as_mut() {
            Some(s) => {
                s.deferred.push(post);
                None
            }
            None => Some(post),
        }
    }

    /// Counts `work` into the open scope, if any.
    pub(crate) fn register<T: Send + 'static>(&self, work: &Work<T>) {
        if let Some(s) = lock(&self.scope).as_mut() {
            s.signals.push(work.signal());
        }
    }
}

fn lock(m: &Mutex<Option<ScopeState>>) -> std::sync::MutexGuard<'_, Option<ScopeState>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProcessGroup {
    /// Opens a group scope: the asynchronous operations this group issues until
    /// [`GroupScope::end`] (sends, receives, batches, collectives) are issued together
    /// and complete together. Point-to-point operations never deadlock whatever their
    /// order (in or out of a scope); the scope gives them one completion and lets the
    /// peers see them all at once. One scope per group at a time.
    pub fn group_start(&self) -> Result<GroupScope> {
        let mut scope = lock(&self.inner.scope);
        if scope.is_some() {
            return Err(Error::InvalidArgument(
                "group_start: a group scope is already open on this group".into(),
            ));
        }
        *scope = Some(ScopeState::default());
        Ok(GroupScope {
            group: self.clone(),
            open: true,
        })
    }
}

impl GroupScope {
    /// Posts the scope's operations and returns a Work that completes when every one
    /// of them has (with the first error, if one fails).
    pub fn end(mut self) -> Work<()> {
        self.close()
    }

    fn close(&mut self) -> Work<()> {
        self.open = false;
        let state = lock(&self.group.inner.scope).take().unwrap_or_default();
        if !state.deferred.is_empty() {
            self.group.inner.engine.batch(|b| {
                for post in state.deferred {
                    post(b);
                }
            });
        }
        Work::all(state.signals).signal()
    }
}

impl Drop for GroupScope {
    fn drop(&mut self) {
        if self.open {
            let _ = self.close();
        }
    }
}
