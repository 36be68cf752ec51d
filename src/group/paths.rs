//! A group's data paths: the same-host window and the links, and which ranks share
//! this host. [`Route`] decides which one an operation runs on.

use std::sync::Arc;

use tutti_transport::window::Window;

use super::links::LinkTable;
use super::options::Algo;

/// What an operation runs over, held (locked) by the running operation.
pub(crate) struct Paths {
    /// One link per peer that has one.
    pub links: LinkTable,
    /// The window shared with the ranks on this host.
    pub window: Option<Arc<Window>>,
}

/// The group ranks on this host.
#[derive(Clone, Debug)]
pub(crate) struct LocalMap {
    /// Group ranks on this host, in rank order: member `i` of the window is
    /// `members[i]`.
    pub members: Vec<usize>,
}

impl LocalMap {
    /// The window member index of group rank `r`, if it is on this host.
    pub fn member_of(&self, r: usize) -> Option<usize> {
        self.members.binary_search(&r).ok()
    }
}

/// Where a collective runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Every rank is on this host: the window algorithms.
    Window,
    /// Over the links (other hosts, or a link algorithm forced).
    Links,
}

impl Paths {
    /// The route for a collective over `size` ranks, with `forced` from `TUTTI_ALGO`.
    pub fn route(&self, size: usize, forced: Option<Algo>) -> Route {
        let window_covers_all = self.window.as_ref().is_some_and(|w| w.members() == size);
        let links_complete = self.links.connected() + 1 == size;
        if window_covers_all && !(forced.is_some_and(Algo::uses_links) && links_complete) {
            Route::Window
        } else {
            Route::Links
        }
    }
}
