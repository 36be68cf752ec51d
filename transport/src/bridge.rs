//! Bridges a [`Link`] (TCP to another host, or any link) to a pair of rings, so that
//! a progress engine that only speaks rings can reach peers without a window: a
//! writer thread drains the outgoing ring into the link's sending half, a reader
//! thread moves the link's messages into the incoming ring and rings the engine's
//! doorbell. A message on the link is one ring record: kind, payload length, the six
//! words, then the payload.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::window::ring::{BellRef, RingRx, RingTx, Words, local_pair};
use crate::{AbortHandle, Deadline, Link, Message, RecvHalf, Result, SendHalf, TransportError};

const META: usize = 8 + 6 * 8;

/// The engine's ends of a bridged link.
pub struct Bridge {
    /// Records to the peer.
    pub tx: RingTx,
    /// Records from the peer.
    pub rx: RingRx,
    failure: Arc<Mutex<Option<TransportError>>>,
    stop: Arc<AtomicBool>,
    abort: AbortHandle,
    writer_bell: BellRef,
    threads: Vec<JoinHandle<()>>,
    peer: String,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// Starts the two threads over `link`; `engine_bell` is rung when a record
    /// arrives or room frees up in the outgoing ring. `abort` must be the abort handle
    /// the link's waits watch (it stops the reader on drop). Records carry at most
    /// `max_payload` bytes (the link's message size minus the record header).
    pub fn start(
        link: Link,
        ring_bytes: usize,
        engine_bell: BellRef,
        abort: AbortHandle,
    ) -> Result<Bridge> {
        let peer = link.peer().to_string();
        let writer_bell = BellRef::standalone();
        let reader_bell = BellRef::standalone();
        // Engine -> writer thread: the writer consumes, the engine produces.
        let (out_tx, out_rx) = local_pair(ring_bytes, writer_bell.clone(), engine_bell.clone())?;
        // Reader thread -> engine.
        let (in_tx, in_rx) = local_pair(ring_bytes, engine_bell.clone(), reader_bell.clone())?;
        let failure = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let Link { tx: ltx, rx: lrx } = link;
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| TransportError::io(&peer, "spawning a bridge thread", e))
        };
        let w = {
            let (failure, stop, bell, engine) = (
                failure.clone(),
                stop.clone(),
                writer_bell.clone(),
                engine_bell.clone(),
            );
            spawn(
                "tutti-p2p-tx",
                Box::new(move || {
                    if let Err(e) = write_loop(ltx, out_rx, &bell, &stop) {
                        record(&failure, e);
                        engine.ring();
                    }
                }),
            )?
        };
        let r = {
            let (failure, stop, bell, engine) =
                (failure.clone(), stop.clone(), reader_bell, engine_bell);
            spawn(
                "tutti-p2p-rx",
                Box::new(move || {
                    if let Err(e) = read_loop(lrx, in_tx, &bell, &stop) {
                        if !stop.load(Ordering::Acquire) {
                            record(&failure, e);
                        }
                        engine.ring();
                    }
                }),
            )?
        };
        Ok(Bridge {
            tx: out_tx,
            rx: in_rx,
            failure,
            stop,
            abort,
            writer_bell,
            threads: vec![w, r],
            peer,
        })
    }

    /// The link's failure, once a thread hit one (the peer died, the connection
    /// broke).
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|e| e.to_string())
    }

    /// Wakes the writer thread (after committing records to [`tx`](Self::tx)).
    pub fn kick(&self) {
        self.writer_bell.ring();
    }
}

fn record(failure: &Mutex<Option<TransportError>>, e: TransportError) {
    let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
    if f.is_none() {
        *f = Some(e);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.abort.abort();
        self.writer_bell.ring();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

const NAP: Duration = Duration::from_millis(10);

fn write_loop(
    mut tx: Box<dyn SendHalf>,
    mut ring: RingRx,
    bell: &BellRef,
    stop: &AtomicBool,
) -> Result<()> {
    loop {
        let sent = match ring.try_peek()? {
            Some(rec) => {
                let mut meta = [0u8; META];
                meta[..4].copy_from_slice(&rec.kind.to_le_bytes());
                meta[4..8].copy_from_slice(&(rec.payload.len() as u32).to_le_bytes());
                for (i, w) in rec.words.iter().enumerate() {
                    meta[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
                }
                // Straight from the ring where the link can (TCP): no copy into the
                // link's buffer first.
                tx.send_parts(&meta, rec.payload, Deadline::never())?;
                true
            }
            None => false,
        };
        if sent {
            ring.release();
            continue;
        }
        tx.flush(Deadline::never())?;
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        bell.sleep(NAP, || stop.load(Ordering::Acquire));
    }
}

fn read_loop(
    mut rx: Box<dyn RecvHalf>,
    mut ring: RingTx,
    bell: &BellRef,
    stop: &AtomicBool,
) -> Result<()> {
    let corrupt = |peer: &str, detail: String| TransportError::Corrupt {
        peer: peer.to_string(),
        detail,
    };
    loop {
        let peer = rx.peer().to_string();
        let msg = rx.next(Deadline::never())?;
        let Message::Bytes(b) = msg else {
            return Err(corrupt(
                &peer,
                "a bridged link delivered a remote message".into(),
            ));
        };
        if b.len() < META {
            return Err(corrupt(
                &peer,
                format!("a {}-byte record is shorter than its header", b.len()),
            ));
        }
        let kind = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
        if META + len != b.len() {
            return Err(corrupt(
                &peer,
                format!(
                    "record length {len} does not match its {}-byte message",
                    b.len()
                ),
            ));
        }
        let mut words: Words = [0; 6];
        for (i, w) in words.iter_mut().enumerate() {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[8 + 8 * i..16 + 8 * i]);
            *w = u64::from_le_bytes(x);
        }
        loop {
            if let Some(dst) = ring.try_reserve(len)? {
                dst.copy_from_slice(&b[META..]);
                ring.commit(kind, words)?;
                break;
            }
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            bell.sleep(NAP, || stop.load(Ordering::Acquire));
        }
        rx.release()?;
    }
}

/// The largest record payload a bridge over a link with `max_message`-byte messages
/// carries.
pub fn max_payload(max_message: usize) -> usize {
    max_message.saturating_sub(META)
}
