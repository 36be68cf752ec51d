//! Shutdown. Graceful: every worker releases its RRefs, then the workers agree
//! through the store that nothing is left to do (no call running or pending, no
//! message in flight anywhere: two rounds of identical, balanced message counts
//! while every worker is idle), tell each other they leave (cleanup), and meet once
//! more before closing. Not graceful: stop this worker at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Agent, DRAINING, Failure, RUNNING, STOPPED, lock};
use crate::wire::RequestKind;
use crate::{Error, Result};

impl Agent {
    /// Whether nothing is running, pending, queued or unconfirmed here.
    fn is_idle(&self) -> bool {
        let info = self.debug_info();
        info.pending_calls == 0
            && info.active_calls == 0
            && info.ref_messages_in_flight == 0
            && info.pending_children == 0
            && self.stats.delayed.load(Ordering::SeqCst) == 0
    }

    fn busy_state(&self) -> String {
        let info = self.debug_info();
        format!(
            "{} calls pending, {} incoming calls running, {} reference messages in flight, {} RRefs passed on and unconfirmed, {} sends delayed",
            info.pending_calls,
            info.active_calls,
            info.ref_messages_in_flight,
            info.pending_children,
            self.stats.delayed.load(Ordering::SeqCst)
        )
    }

    fn timeout_error(&self, start: Instant, state: String) -> Error {
        Error::ShutdownTimeout {
            worker: self.label(self.me),
            waited: start.elapsed(),
            state,
        }
    }

    /// Waits until idle; returns the (sent, received) counts seen while idle.
    fn wait_idle(&self, start: Instant, deadline: Option<Instant>) -> Result<(u64, u64)> {
        loop {
            let sent = self.stats.sent.load(Ordering::SeqCst);
            let recv = self.stats.recv.load(Ordering::SeqCst);
            if self.is_idle()
                && sent == self.stats.sent.load(Ordering::SeqCst)
                && recv == self.stats.recv.load(Ordering::SeqCst)
            {
                return Ok((sent, recv));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(self.timeout_error(
                    start,
                    format!("this worker is still busy: {}", self.busy_state()),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn remaining(deadline: Option<Instant>) -> Duration {
        match deadline {
            // The store waits forever on zero.
            None => Duration::ZERO,
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        }
    }

    /// Waits (through the store) for every worker to set its key under `dir`.
    fn meet(
        &self,
        dir: &str,
        value: &[u8],
        start: Instant,
        deadline: Option<Instant>,
    ) -> Result<Vec<Vec<u8>>> {
        let n = self.workers.len();
        self.store
            .set(&format!("{}{dir}/{}", self.prefix, self.me), value)
            .map_err(|e| Error::store("graceful shutdown", e))?;
        let keys: Vec<String> = (0..n)
            .map(|r| format!("{}{dir}/{r}", self.prefix))
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        if let Err(e) = self.store.wait(&refs, Some(Self::remaining(deadline))) {
            let missing: Vec<String> = (0..n)
                .filter(|&r| !self.store.check(&[refs[r]]).unwrap_or(false))
                .map(|r| self.label(r))
                .collect();
            if !missing.is_empty() && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(self.timeout_error(
                    start,
                    format!(
                        "waiting for {} to finish their work ({dir})",
                        missing.join(", ")
                    ),
                ));
            }
            return Err(Error::store("graceful shutdown", e));
        }
        self.store
            .multi_get(&refs)
            .map_err(|e| Error::store("graceful shutdown", e))
    }

    /// Graceful shutdown's agreement; leaves the agent running (the caller stops it).
    pub(crate) fn drain(self: &Arc<Self>) -> Result<()> {
        match self
            .state
            .compare_exchange(RUNNING, DRAINING, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {}
            // Shut down already.
            Err(STOPPED) => return Ok(()),
            Err(_) => {
                return Err(Error::ShutDown {
                    what: "a second, concurrent shutdown".into(),
                    worker: self.label(self.me),
                });
            }
        }
        let start = Instant::now();
        let deadline = (!self.shutdown_timeout.is_zero()).then(|| start + self.shutdown_timeout);
        // torch deletes every user RRef at shutdown: so does this. Calls served from
        // now on release the RRefs they bring when they return.
        self.release_all_handles();
        let mut previous = None;
        for round in 0u64.. {
            let (sent, recv) = self.wait_idle(start, deadline)?;
            let values = self.meet(
                &format!("shutdown/{round}"),
                format!("{sent} {recv}").as_bytes(),
                start,
                deadline,
            )?;
            let (mut total_sent, mut total_recv) = (0u64, 0u64);
            for v in &values {
                let text = String::from_utf8_lossy(v);
                let mut it = text.split(' ').map(|x| x.parse::<u64>().unwrap_or(0));
                total_sent += it.next().unwrap_or(0);
                total_recv += it.next().unwrap_or(0);
            }
            let totals = (total_sent, total_recv);
            if total_sent == total_recv && previous == Some(totals) {
                tracing::debug!(
                    round,
                    total_sent,
                    "RPC graceful shutdown: every worker is done"
                );
                break;
            }
            previous = Some(totals);
        }
        for peer in (0..self.workers.len()).filter(|&p| p != self.me) {
            self.send_ref(peer, RequestKind::Cleanup, None);
        }
        self.wait_idle(start, deadline)?;
        let leftover = self.debug_info();
        if leftover.owner_rrefs > 0 || leftover.user_rrefs > 0 {
            tracing::warn!(
                ?leftover,
                "RPC shutdown: references left after every worker released its own"
            );
        }
        // Nobody closes while a peer may still send it its cleanup.
        self.meet("shutdown/done", b"", start, deadline)?;
        // Rank 0 usually serves the store: it leaves only once the others are done
        // with the store (their last operation is this set).
        let gone = |r: usize| format!("{}shutdown/gone/{r}", self.prefix);
        if self.me != 0 {
            self.store
                .set(&gone(self.me), b"")
                .map_err(|e| Error::store("graceful shutdown", e))?;
        } else {
            let keys: Vec<String> = (1..self.workers.len()).map(gone).collect();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            if !refs.is_empty() {
                self.store
                    .wait(&refs, Some(Self::remaining(deadline)))
                    .map_err(|e| Error::store("graceful shutdown", e))?;
            }
        }
        Ok(())
    }

    /// Stops this worker: fails pending calls, closes connections, joins threads.
    pub(crate) fn stop(self: &Arc<Self>) {
        if self.state.swap(STOPPED, Ordering::SeqCst) == STOPPED {
            return;
        }
        // Wake the listener.
        let wake: SocketAddr = match self.listen_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                (Ipv4Addr::LOCALHOST, self.listen_addr.port()).into()
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                (Ipv6Addr::LOCALHOST, self.listen_addr.port()).into()
            }
            _ => self.listen_addr,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        for p in &self.peers {
            if let Some(c) = lock(p).take() {
                c.close();
            }
        }
        for c in lock(&self.server_conns).values() {
            c.close();
        }
        let pending: Vec<_> = {
            let mut calls = lock(&self.calls);
            calls.deadlines.clear();
            calls.map.drain().map(|(_, p)| p).collect()
        };
        for p in pending {
            let error = Error::ShutDown {
                what: p.what,
                worker: self.label(self.me),
            };
            (p.done)(Err(Failure {
                error,
                maybe_delivered: true,
            }));
        }
        self.timer.stop();
        self.pool.stop();
        self.bg.stop();
        // Threads may start threads (the listener, per connection): join until none
        // is left.
        let me = std::thread::current().id();
        loop {
            let threads = std::mem::take(&mut *lock(&self.threads));
            if threads.is_empty() {
                break;
            }
            for t in threads {
                if t.thread().id() != me {
                    let _ = t.join();
                }
            }
        }
        self.refs_cv.notify_all();
        tracing::debug!(worker = %self.label(self.me), "RPC agent stopped");
    }
}
