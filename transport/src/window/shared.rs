//! Shared buffers: memory a rank allocates through its group so that every other rank
//! of its host maps it too (NCCL's registered windows, torch's symmetric memory).
//!
//! The allocation is collective among a window's members: each creates a `/dev/shm`
//! segment of the same size, maps every peer's, and unlinks its own name once all
//! have mapped it (after a barrier the caller runs), so nothing is left behind
//! whoever dies. Collectives on a buffer that lies in such a block read the peers'
//! data through these mappings, with plain loads, instead of copying it into the
//! windows first. Between threads of one process a block is plain heap memory: the
//! peers read each other's buffers by address anyway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Window, rendezvous_err, setup_err};
use crate::shm::{Region, segment};
use crate::{Deadline, Rendezvous, Result, TransportError};

/// One collective allocation: this rank's block and, between processes, a mapping
/// of every other member's block of the same allocation.
pub(crate) struct SharedBlocks {
    id: u64,
    index: usize,
    len: usize,
    /// By member; `None` where the member's block is not mapped here (threads).
    blocks: Vec<Option<Arc<Region>>>,
    /// This rank's segment name until every member mapped it.
    name: Mutex<Option<segment::UnlinkGuard>>,
}

impl std::fmt::Debug for SharedBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBlocks")
            .field("id", &self.id)
            .field("index", &self.index)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl SharedBlocks {
    /// This rank's block: its first byte and its length.
    fn own(&self) -> (*mut u8, usize) {
        let r = self.blocks[self.index]
            .as_ref()
            .expect("a rank always holds its own block");
        (r.ptr(), self.len)
    }

    /// Member `m`'s block as mapped in this process (this rank's own for
    /// `m == index`), if it is.
    fn member(&self, m: usize) -> Option<*const u8> {
        self.blocks.get(m)?.as_ref().map(|r| r.ptr() as *const u8)
    }

    /// Removes this rank's segment name: call once every member has mapped it.
    fn unlink_name(&self) {
        drop(self.name.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

/// This rank's handle on one shared allocation: the only way to its block as Rust
/// memory. The registry keeps every allocation's blocks mapped until the group goes
/// (dropping a handle frees nothing): a member must be able to resolve a peer's
/// block for as long as that peer may pass it to a collective, and whether it can
/// must not depend on which handles this rank still holds, or the members would
/// disagree on how to run the call.
#[derive(Debug)]
pub struct SharedBuf {
    blocks: Arc<SharedBlocks>,
}

impl SharedBuf {
    /// This rank's block (whole pages, zero-filled when allocated).
    pub fn bytes(&self) -> &[u8] {
        let (p, len) = self.blocks.own();
        // SAFETY: `p` is this rank's block of `len` bytes, mapped (or allocated) for
        // as long as `self.blocks` lives; the only Rust access to it goes through
        // this handle, whose borrow this slice holds (the registry keeps only its
        // address; members in other processes only read it, during collectives that
        // borrow the buffer).
        unsafe { std::slice::from_raw_parts(p, len) }
    }

    /// This rank's block, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let (p, len) = self.blocks.own();
        // SAFETY: as in `bytes`, with the exclusive borrow of the only handle.
        unsafe { std::slice::from_raw_parts_mut(p, len) }
    }

    /// The allocation's number.
    pub fn id(&self) -> u64 {
        self.blocks.id
    }

    /// Removes this rank's segment name: call once every member has mapped it (after
    /// a barrier on the window), so that nothing outlives the mappings.
    pub fn mapped_everywhere(&self) {
        self.blocks.unlink_name();
    }
}

/// A rank's live shared allocations, looked up by the collectives.
#[derive(Debug, Default)]
pub struct SharedRegistry {
    blocks: Mutex<Vec<Arc<SharedBlocks>>>,
    /// Allocations ever made (collective, so the same number on every member).
    made: AtomicU64,
}

/// Where a range of this rank's memory lies, for the members that read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// In allocation `id`, `offset` bytes into this rank's block.
    Shared { id: u64, offset: u64 },
    /// Anywhere else.
    Private,
}

impl SharedRegistry {
    /// Number of allocations ever made through this registry; the same on every
    /// member, so it may decide which algorithm runs.
    pub fn allocations(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<SharedBlocks>>> {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where `[addr, addr + len)` of this rank's memory lies.
    pub(crate) fn place(&self, addr: usize, len: usize) -> Placement {
        for b in self.lock().iter() {
            let (p, l) = b.own();
            let start = p as usize;
            if addr >= start && addr.saturating_add(len) <= start + l {
                return Placement::Shared {
                    id: b.id,
                    offset: (addr - start) as u64,
                };
            }
        }
        Placement::Private
    }

    /// The address in this process of `len` bytes at `offset` of member `m`'s block
    /// of allocation `id`, if it is mapped here and holds them.
    pub(crate) fn resolve(&self, id: u64, m: usize, offset: u64, len: usize) -> Option<usize> {
        let blocks = self.lock();
        let b = blocks.iter().find(|b| b.id == id)?;
        let base = b.member(m)? as usize;
        let offset = usize::try_from(offset).ok()?;
        (offset.checked_add(len)? <= b.len).then(|| base + offset)
    }
}

impl Window {
    /// Allocates `bytes` (rounded up to whole pages) that every member maps, entered
    /// in `registry`: collective among the window's members, who pass the same
    /// `prefix` and `bytes`. The caller then runs a barrier on the window and calls
    /// [`SharedBuf::mapped_everywhere`].
    pub fn alloc_shared(
        &self,
        rdv: &dyn Rendezvous,
        prefix: &str,
        bytes: usize,
        registry: &SharedRegistry,
        deadline: Deadline,
    ) -> Result<SharedBuf> {
        let id = registry.allocations();
        let me = self.index;
        let me_name = self.peer_name(me).to_string();
        let len = bytes.max(1).div_ceil(super::PAGE) * super::PAGE;
        let in_process = self.every_member_in_process();
        let mut blocks: Vec<Option<Arc<Region>>> = (0..self.members()).map(|_| None).collect();
        let mut guard = None;
        if in_process {
            let r = Region::heap(len).ok_or_else(|| {
                TransportError::Unavailable(format!("allocating a shared buffer of {len} bytes"))
            })?;
            blocks[me] = Some(Arc::new(r));
        } else {
            let name = segment::segment_name(&format!("{prefix}-shared{id}"), me, me);
            let key = |m: usize| format!("{prefix}/shared/{id}/{m}");
            let created = segment::create(&name, len)
                .map_err(|e| {
                    TransportError::io(
                        &me_name,
                        format!("creating the shared buffer {name} ({len} bytes)"),
                        e,
                    )
                })
                .and_then(|fd| {
                    let guard = segment::UnlinkGuard::new(name.clone());
                    let own = Region::map(std::os::fd::AsFd::as_fd(&fd), len)
                        .map_err(|e| TransportError::io(&me_name, format!("mapping {name}"), e))?;
                    Ok((guard, own))
                });
            let (g, own) = match created {
                Ok(v) => v,
                Err(e) => {
                    // The others wait for this rank's entry: tell them now rather than
                    // let them wait for the operation's timeout.
                    let _ = rdv.publish(&key(me), format!("error {e}").as_bytes());
                    return Err(e);
                }
            };
            guard = Some(g);
            blocks[me] = Some(Arc::new(own));
            rdv.publish(&key(me), format!("{len} {name}").as_bytes())
                .map_err(|e| rendezvous_err(&me_name, "publishing a shared buffer's name", e))?;
            for (m, slot) in blocks.iter_mut().enumerate() {
                if m == me {
                    continue;
                }
                let peer = self.peer_name(m);
                let pname = rdv.lookup(&key(m), deadline).map_err(|e| {
                    rendezvous_err(peer, "waiting for the peer's shared buffer name", e)
                })?;
                let entry = String::from_utf8(pname)
                    .map_err(|_| setup_err(peer, "shared buffer name is not UTF-8"))?;
                if let Some(why) = entry.strip_prefix("error ") {
                    return Err(setup_err(
                        peer,
                        format!("it could not allocate its shared buffer: {why}"),
                    ));
                }
                let (plen, pname) = entry
                    .split_once(' ')
                    .and_then(|(l, n)| Some((l.parse::<usize>().ok()?, n)))
                    .ok_or_else(|| setup_err(peer, format!("bad shared buffer entry {entry:?}")))?;
                if plen != len {
                    return Err(setup_err(
                        peer,
                        format!(
                            "it allocated a shared buffer of {plen} bytes, this rank one of {len}: every rank must allocate the same size"
                        ),
                    ));
                }
                let (pfd, flen) = segment::open(pname).map_err(|e| {
                    TransportError::io(peer, format!("opening the peer's shared buffer {pname}"), e)
                })?;
                if flen != plen {
                    return Err(setup_err(
                        peer,
                        format!(
                            "its shared buffer {pname} has {flen} bytes, not the {plen} it announced"
                        ),
                    ));
                }
                let r = Region::map(std::os::fd::AsFd::as_fd(&pfd), plen)
                    .map_err(|e| TransportError::io(peer, format!("mapping {pname}"), e))?;
                *slot = Some(Arc::new(r));
            }
        }
        let b = Arc::new(SharedBlocks {
            id,
            index: me,
            len,
            blocks,
            name: Mutex::new(guard),
        });
        registry.lock().push(b.clone());
        registry.made.fetch_add(1, Ordering::Relaxed);
        Ok(SharedBuf { blocks: b })
    }
}
