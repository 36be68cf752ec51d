//! [`Waiter`]: how a half waits for a completion or a credit. There is nothing to
//! sleep on (the device writes memory and completion queues directly), so it
//! spins, then yields, then sleeps in growing naps, checking the deadline and the
//! abort flag, and tells its caller when it is time to probe the peer.

use std::time::{Duration, Instant};

use super::PROBE_PERIOD;
use crate::wait::{AbortHandle, WaitPolicy};
use crate::{Deadline, Result, TransportError};

const FIRST_NAP: Duration = Duration::from_micros(20);
const LAST_NAP: Duration = Duration::from_millis(1);

pub(super) struct Waiter<'a> {
    policy: WaitPolicy,
    deadline: Deadline,
    abort: &'a AbortHandle,
    peer: &'a str,
    op: &'static str,
    rounds: u64,
    nap: Duration,
    last_probe: Instant,
}

impl<'a> Waiter<'a> {
    pub fn new(
        policy: WaitPolicy,
        deadline: Deadline,
        abort: &'a AbortHandle,
        peer: &'a str,
        op: &'static str,
    ) -> Self {
        Waiter {
            policy,
            deadline,
            abort,
            peer,
            op,
            rounds: 0,
            nap: FIRST_NAP,
            last_probe: Instant::now(),
        }
    }

    /// Waits a little; fails once aborted or past the deadline.
    pub fn pause(&mut self) -> Result<()> {
        self.rounds += 1;
        let spins = u64::from(self.policy.spins);
        let yields = u64::from(self.policy.yields);
        if self.rounds <= spins {
            std::hint::spin_loop();
            if !self.rounds.is_multiple_of(1024) {
                return Ok(());
            }
        } else if self.rounds <= spins + yields {
            std::thread::yield_now();
        } else {
            std::thread::sleep(self.deadline.cap(self.nap));
            self.nap = (self.nap * 2).min(LAST_NAP);
        }
        self.check()
    }

    /// Fails once aborted or past the deadline.
    pub fn check(&self) -> Result<()> {
        if self.abort.is_aborted() {
            return Err(TransportError::Aborted {
                peer: self.peer.to_string(),
                op: self.op,
            });
        }
        if self.deadline.expired() {
            return Err(TransportError::Timeout {
                peer: self.peer.to_string(),
                op: self.op,
                waited: self.deadline.waited(),
            });
        }
        Ok(())
    }

    /// True once per [`PROBE_PERIOD`] of waiting: time to check the peer is there.
    pub fn probe_due(&mut self) -> bool {
        if self.last_probe.elapsed() >= PROBE_PERIOD {
            self.last_probe = Instant::now();
            true
        } else {
            false
        }
    }
}
