//! Fault injection: a [`SendHalf`] wrapper that drops, delays, corrupts or cuts
//! chosen messages, for fault tests.
//!
//! Rules name an action, the kind of message, and which message (1-based count of
//! that kind on this link): `drop:data:3` drops the third data message,
//! `delay:any:2:1500` delays the second message by 1500 ms, `corrupt:data:1`
//! flips a byte of the first data message *below* the link's checksum (so the
//! receiver must detect it: `TUTTI_TCP_CHECKSUM=1` for TCP, `TUTTI_SHM_CHECKSUM=1` for
//! shared memory; a link without its checksum refuses to corrupt), `cut:any:5` cuts the
//! connection before the fifth message. Kinds: `data` (messages through the link's
//! buffers), `single_copy` (large messages sent from the sender's memory: shared-memory
//! single copy, TCP sends of 64 KiB or more), `any`. Rules come from code
//! ([`FaultPlan::parse`]) or from `TUTTI_FAULTS` (comma-separated).
//!
//! A dropped data message consumes its TCP sequence number: with one socket per peer
//! the receiver sees the gap and fails at once; striped over several sockets, the
//! socket that should carry it never delivers and the receiver fails at its
//! deadline, as it does on shared memory, where the message is never published.

use std::time::Duration;

use crate::link::{Injected, SendHalf};
use crate::{Deadline, Result, TransportError};

/// What to do to a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Do not deliver it.
    Drop,
    /// Deliver it after a pause.
    Delay(Duration),
    /// Flip a byte below the integrity check.
    Corrupt,
    /// Cut the connection before it.
    Cut,
}

/// Which messages a rule counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// Messages through the link's buffers.
    Data,
    /// Single-copy messages (shared memory, large payloads).
    SingleCopy,
    /// Both.
    Any,
}

/// One rule: `action` on the `nth` message of `kind` (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// What to do.
    pub action: FaultAction,
    /// Which messages are counted.
    pub kind: MessageKind,
    /// The message, counting from 1.
    pub nth: u64,
}

/// A set of rules for one link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The rules; the first that matches a message applies.
    pub rules: Vec<FaultRule>,
}

impl FaultPlan {
    /// Parses `action:kind:nth[:millis]` rules separated by commas.
    pub fn parse(spec: &str) -> Result<FaultPlan> {
        let bad = |rule: &str, why: &str| {
            TransportError::InvalidArgument(format!(
                "fault rule {rule:?}: {why} (expected action:kind:nth[:millis], action = drop|delay|corrupt|cut, kind = data|single_copy|any)"
            ))
        };
        let mut rules = Vec::new();
        for rule in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let parts: Vec<&str> = rule.split(':').collect();
            if parts.len() < 3 {
                return Err(bad(rule, "too few fields"));
            }
            let kind = match parts[1] {
                "data" => MessageKind::Data,
                "single_copy" => MessageKind::SingleCopy,
                "any" => MessageKind::Any,
                _ => return Err(bad(rule, "unknown kind")),
            };
            let nth: u64 = parts[2]
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(rule, "nth must be a positive integer"))?;
            let action = match (parts[0], parts.get(3)) {
                ("drop", None) => FaultAction::Drop,
                ("corrupt", None) => FaultAction::Corrupt,
                ("cut", None) => FaultAction::Cut,
                ("delay", Some(ms)) => FaultAction::Delay(Duration::from_millis(
                    ms.parse()
                        .map_err(|_| bad(rule, "millis must be an integer"))?,
                )),
                ("delay", None) => return Err(bad(rule, "delay needs millis")),
                _ => return Err(bad(rule, "unknown action or extra field")),
            };
            rules.push(FaultRule { action, kind, nth });
        }
        Ok(FaultPlan { rules })
    }

    /// The plan in `TUTTI_FAULTS`, if set.
    pub fn from_env() -> Result<Option<FaultPlan>> {
        match std::env::var("TUTTI_FAULTS") {
            Ok(s) if !s.trim().is_empty() => Ok(Some(FaultPlan::parse(&s)?)),
            _ => Ok(None),
        }
    }

    fn find(&self, kind: MessageKind, nth: u64) -> Option<FaultAction> {
        self.rules
            .iter()
            .find(|r| r.nth == nth && (r.kind == kind || r.kind == MessageKind::Any))
            .map(|r| r.action)
    }
}

/// A sending half that applies a [`FaultPlan`] to the messages it forwards.
pub struct FaultySend {
    inner: Box<dyn SendHalf>,
    plan: FaultPlan,
    data: u64,
    single: u64,
    any: u64,
}

impl FaultySend {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn SendHalf>, plan: FaultPlan) -> Self {
        FaultySend {
            inner,
            plan,
            data: 0,
            single: 0,
            any: 0,
        }
    }

    fn action(&mut self, kind: MessageKind) -> Option<FaultAction> {
        self.any += 1;
        let n = match kind {
            MessageKind::SingleCopy => {
                self.single += 1;
                self.single
            }
            _ => {
                self.data += 1;
                self.data
            }
        };
        let hit = self.plan.find(kind, n).or_else(|| {
            self.plan
                .rules
                .iter()
                .find(|r| r.kind == MessageKind::Any && r.nth == self.any)
                .map(|r| r.action)
        });
        if let Some(a) = hit {
            tracing::warn!(peer = self.inner.peer(), ?kind, n, action = ?a, "injecting a fault");
        }
        hit
    }
}

impl SendHalf for FaultySend {
    fn peer(&self) -> &str {
        self.inner.peer()
    }

    fn max_message(&self) -> usize {
        self.inner.max_message()
    }

    fn depth(&self) -> usize {
        self.inner.depth()
    }

    fn reserve(&mut self, len: usize, deadline: Deadline) -> Result<&mut [u8]> {
        self.inner.reserve(len, deadline)
    }

    fn commit(&mut self) -> Result<()> {
        match self.action(MessageKind::Data) {
            None => self.inner.commit(),
            Some(FaultAction::Delay(d)) => {
                std::thread::sleep(d);
                self.inner.commit()
            }
            Some(FaultAction::Drop) => {
                if self.inner.inject(Injected::DropNext) {
                    self.inner.commit()
                } else {
                    // Not committing leaves the reserved space unsent; the next
                    // reserve reuses it.
                    Ok(())
                }
            }
            Some(FaultAction::Corrupt) => {
                if !self.inner.inject(Injected::CorruptNext) {
                    return Err(TransportError::InvalidArgument(format!(
                        "the link to {} cannot inject corruption",
                        self.inner.peer()
                    )));
                }
                self.inner.commit()
            }
            Some(FaultAction::Cut) => {
                self.inner.inject(Injected::Cut);
                self.inner.commit()
            }
        }
    }

    fn single_copy_threshold(&self) -> Option<usize> {
        self.inner.single_copy_threshold()
    }

    fn send_single_copy(&mut self, data: &[u8], deadline: Deadline) -> Result<bool> {
        if self.inner.single_copy_threshold().is_none() {
            return Ok(false);
        }
        match self.action(MessageKind::SingleCopy) {
            Some(FaultAction::Drop) => Ok(true),
            Some(FaultAction::Delay(d)) => {
                std::thread::sleep(d);
                self.inner.send_single_copy(data, deadline)
            }
            Some(FaultAction::Cut) => {
                self.inner.inject(Injected::Cut);
                self.inner.send_single_copy(data, deadline)
            }
            Some(FaultAction::Corrupt) | None => self.inner.send_single_copy(data, deadline),
        }
    }

    fn flush(&mut self, deadline: Deadline) -> Result<()> {
        self.inner.flush(deadline)
    }

    fn inject(&mut self, fault: Injected) -> bool {
        self.inner.inject(fault)
    }
}
