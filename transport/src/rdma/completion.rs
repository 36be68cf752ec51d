//! Completion handling: polling a completion queue, accounting for send-queue
//! space, and turning failed work completions into errors that name the peer.

use sideway::ibverbs::completion::{
    BasicCompletionQueue, PollCompletionQueueError, WorkCompletionStatus as S,
};

use crate::TransportError;

/// Completions taken per poll.
pub(super) const POLL_BATCH: u32 = 16;

/// One work completion, copied out of the queue.
#[derive(Clone, Copy, Debug)]
pub(super) struct Completion {
    pub wr_id: u64,
    pub status: u32,
    pub vendor_err: u32,
    pub opcode: u32,
    pub byte_len: u32,
    /// The immediate, as the sender passed it (in network byte order on the wire).
    pub imm: u32,
}

/// Appends the completions waiting in `cq` to `out`; returns how many.
pub(super) fn poll(cq: &BasicCompletionQueue, out: &mut Vec<Completion>) -> std::io::Result<usize> {
    let mut poller = match cq.start_poll() {
        Ok(p) => p,
        Err(PollCompletionQueueError::CompletionQueueEmpty) => return Ok(0),
        Err(PollCompletionQueueError::Ibverbs(e)) => return Err(e),
        Err(e) => return Err(std::io::Error::other(e.to_string())),
    };
    let mut n = 0;
    // The poller refills itself while the queue has more: stop after one batch so
    // that a flood of completions cannot keep this call going.
    for wc in poller.by_ref().take(POLL_BATCH as usize) {
        out.push(Completion {
            wr_id: wc.wr_id(),
            status: wc.status(),
            vendor_err: wc.vendor_err(),
            opcode: wc.opcode(),
            byte_len: wc.byte_len(),
            imm: wc.imm_data(),
        });
        n += 1;
    }
    Ok(n)
}

/// Space accounting for a send queue whose work requests are all signaled: one
/// completion per request, in order.
#[derive(Debug)]
pub(super) struct SendQueue {
    /// Requests the queue holds at most.
    pub depth: u64,
    /// Requests posted so far.
    pub posted: u64,
    /// Requests whose completion has been reaped.
    pub completed: u64,
}

impl SendQueue {
    pub fn new(depth: u32) -> Self {
        SendQueue {
            depth: u64::from(depth),
            posted: 0,
            completed: 0,
        }
    }

    /// True when another request may be posted.
    pub fn has_room(&self) -> bool {
        self.posted - self.completed < self.depth
    }

    /// True when every posted request has completed.
    pub fn idle(&self) -> bool {
        self.posted == self.completed
    }
}

const SUCCESS: u32 = S::Success as u32;

/// True for a successful completion.
pub(super) fn ok(c: &Completion) -> bool {
    c.status == SUCCESS
}

/// The error for a failed completion of `what` (a message write, a credit write,
/// ...). Failures on the local side (protection, length, ...) are this side's bugs
/// and become [`TransportError::Io`]; everything else means the peer or the path
/// to it is gone and becomes [`TransportError::PeerGone`].
pub(super) fn failure(peer: &str, op: &'static str, what: &str, c: &Completion) -> TransportError {
    let (name, hint) = describe(c.status);
    let detail = format!(
        "{what} failed: {name} (status {}, vendor error {:#x}){hint}",
        c.status, c.vendor_err
    );
    let local = [
        S::LocalLengthError,
        S::LocalQueuePairOperationError,
        S::LocalProtectionError,
        S::LocalAccessError,
        S::MemoryWindowBindError,
    ]
    .iter()
    .any(|s| *s as u32 == c.status);
    if local {
        TransportError::io(peer, op, std::io::Error::other(detail))
    } else {
        TransportError::PeerGone {
            peer: peer.to_string(),
            op,
            detail,
        }
    }
}

/// Name and explanation of a work-completion status.
fn describe(status: u32) -> (&'static str, &'static str) {
    const TABLE: &[(S, &str, &str)] = &[
        (S::LocalLengthError, "IBV_WC_LOC_LEN_ERR", ""),
        (S::LocalQueuePairOperationError, "IBV_WC_LOC_QP_OP_ERR", ""),
        (S::LocalProtectionError, "IBV_WC_LOC_PROT_ERR", ""),
        (
            S::WorkRequestFlushedError,
            "IBV_WC_WR_FLUSH_ERR",
            ": the queue pair had already failed",
        ),
        (S::BadResponseError, "IBV_WC_BAD_RESP_ERR", ""),
        (S::LocalAccessError, "IBV_WC_LOC_ACCESS_ERR", ""),
        (
            S::RemoteInvalidRequestError,
            "IBV_WC_REM_INV_REQ_ERR",
            ": the peer rejected the request",
        ),
        (
            S::RemoteAccessError,
            "IBV_WC_REM_ACCESS_ERR",
            ": the peer's memory is no longer registered (it closed the link or exited)",
        ),
        (S::RemoteOperationError, "IBV_WC_REM_OP_ERR", ""),
        (
            S::RetryCounterExceededError,
            "IBV_WC_RETRY_EXC_ERR",
            ": the peer stopped acknowledging (its process exited, its queue pair was \
             destroyed, or the network path is down)",
        ),
        (
            S::ResponderNotReadyRetryCounterExceededError,
            "IBV_WC_RNR_RETRY_EXC_ERR",
            ": the peer posted no receive in time",
        ),
        (S::RemoteAbortedError, "IBV_WC_REM_ABORT_ERR", ""),
        (
            S::FatalError,
            "IBV_WC_FATAL_ERR",
            ": the device reported a fatal error",
        ),
        (S::ResponseTimeoutError, "IBV_WC_RESP_TIMEOUT_ERR", ""),
        (S::GeneralError, "IBV_WC_GENERAL_ERR", ""),
    ];
    TABLE
        .iter()
        .find(|(s, _, _)| *s as u32 == status)
        .map_or(("unknown status", ""), |(_, n, h)| (n, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wc(status: u32) -> Completion {
        Completion {
            wr_id: 0,
            status,
            vendor_err: 0x81,
            opcode: 0,
            byte_len: 0,
            imm: 0,
        }
    }

    #[test]
    fn retry_exceeded_is_peer_gone_and_names_the_peer() {
        let e = failure(
            "rank 1",
            "rdma send",
            "message write",
            &wc(S::RetryCounterExceededError as u32),
        );
        assert!(matches!(e, TransportError::PeerGone { .. }), "{e}");
        let s = e.to_string();
        assert!(
            s.contains("rank 1") && s.contains("IBV_WC_RETRY_EXC_ERR"),
            "{s}"
        );
    }

    #[test]
    fn local_errors_are_io() {
        let e = failure(
            "rank 1",
            "rdma send",
            "x",
            &wc(S::LocalProtectionError as u32),
        );
        assert!(matches!(e, TransportError::Io { .. }), "{e}");
        let e = failure("rank 1", "rdma send", "x", &wc(999));
        assert!(e.to_string().contains("unknown status"), "{e}");
    }

    #[test]
    fn send_queue_accounting() {
        let mut q = SendQueue::new(2);
        assert!(q.has_room() && q.idle());
        q.posted = 2;
        assert!(!q.has_room());
        q.completed = 1;
        assert!(q.has_room() && !q.idle());
    }
}
