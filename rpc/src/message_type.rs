//! [`MessageType`]: the kinds of request messages workers send each other (what the
//! faulty agent fails or delays).

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A kind of request message between workers.
///
/// Names are tutti's own (`call`, `remote_call`, ...); torch.distributed.rpc's names
/// are accepted as aliases when parsing (see [`MessageType::from_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageType {
    /// `rpc_sync` / `rpc_async`: run a function, reply with its result.
    /// torch: `SCRIPT_CALL`, `PYTHON_CALL`.
    Call,
    /// `remote`: run a function and keep its result on the callee (the RRef's owner).
    /// torch: `SCRIPT_REMOTE_CALL`, `PYTHON_REMOTE_CALL`.
    RemoteCall,
    /// `to_here` on a user: fetch the value from the owner.
    /// torch: `SCRIPT_RREF_FETCH_CALL`, `PYTHON_RREF_FETCH_CALL`.
    RRefFetch,
    /// A worker that received an RRef from a non-owner tells the owner about its
    /// new fork. Retried. torch: `RREF_FORK_REQUEST`.
    RRefForkRequest,
    /// A worker that received an RRef tells the sender (its parent) that the owner
    /// knows the fork, so the parent may release its own. Retried.
    /// torch: `RREF_CHILD_ACCEPT`.
    RRefChildAccept,
    /// A user releases its fork of an RRef. Retried. torch: `RREF_USER_DELETE`.
    RRefUserDelete,
    /// Graceful shutdown: a worker tells each peer that it leaves and holds no
    /// reference any more. Retried. torch: `CLEANUP_AUTOGRAD_CONTEXT_REQ`.
    Cleanup,
}

impl MessageType {
    /// Every message type.
    pub const ALL: [MessageType; 7] = [
        MessageType::Call,
        MessageType::RemoteCall,
        MessageType::RRefFetch,
        MessageType::RRefForkRequest,
        MessageType::RRefChildAccept,
        MessageType::RRefUserDelete,
        MessageType::Cleanup,
    ];

    pub(crate) const NAMES_HELP: &'static str = "call, remote_call, rref_fetch, rref_fork_request, rref_child_accept, rref_user_delete, cleanup (or torch's SCRIPT_CALL, PYTHON_CALL, SCRIPT_REMOTE_CALL, PYTHON_REMOTE_CALL, SCRIPT_RREF_FETCH_CALL, PYTHON_RREF_FETCH_CALL, RREF_FORK_REQUEST, RREF_CHILD_ACCEPT, RREF_USER_DELETE, CLEANUP_AUTOGRAD_CONTEXT_REQ)";

    /// tutti's name of the type.
    pub const fn name(self) -> &'static str {
        match self {
            MessageType::Call => "call",
            MessageType::RemoteCall => "remote_call",
            MessageType::RRefFetch => "rref_fetch",
            MessageType::RRefForkRequest => "rref_fork_request",
            MessageType::RRefChildAccept => "rref_child_accept",
            MessageType::RRefUserDelete => "rref_user_delete",
            MessageType::Cleanup => "cleanup",
        }
    }

    /// Whether the agent retries sends of this type until they succeed (the
    /// reference-counting and cleanup messages, as in torch).
    pub const fn is_retried(self) -> bool {
        matches!(
            self,
            MessageType::RRefForkRequest
                | MessageType::RRefChildAccept
                | MessageType::RRefUserDelete
                | MessageType::Cleanup
        )
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MessageType {
    type Err = Error;

    /// Parses tutti's names (`call`, `remote_call`, `rref_fetch`, `rref_fork_request`,
    /// `rref_child_accept`, `rref_user_delete`, `cleanup`) and torch's
    /// (`SCRIPT_CALL`/`PYTHON_CALL`, `SCRIPT_REMOTE_CALL`/`PYTHON_REMOTE_CALL`,
    /// `SCRIPT_RREF_FETCH_CALL`/`PYTHON_RREF_FETCH_CALL`, `RREF_FORK_REQUEST`,
    /// `RREF_CHILD_ACCEPT`, `RREF_USER_DELETE`, `CLEANUP_AUTOGRAD_CONTEXT_REQ`),
    /// case-insensitively. Anything else is [`Error::UnknownMessageType`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "call" | "script_call" | "python_call" => MessageType::Call,
            "remote_call" | "script_remote_call" | "python_remote_call" => MessageType::RemoteCall,
            "rref_fetch" | "script_rref_fetch_call" | "python_rref_fetch_call" => {
                MessageType::RRefFetch
            }
            "rref_fork_request" => MessageType::RRefForkRequest,
            "rref_child_accept" => MessageType::RRefChildAccept,
            "rref_user_delete" => MessageType::RRefUserDelete,
            "cleanup" | "cleanup_autograd_context_req" => MessageType::Cleanup,
            _ => {
                return Err(Error::UnknownMessageType {
                    name: s.to_string(),
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_torch_aliases() {
        for t in MessageType::ALL {
            assert_eq!(t.name().parse::<MessageType>().unwrap(), t);
            assert_eq!(t.to_string(), t.name());
        }
        let aliases = [
            ("SCRIPT_CALL", MessageType::Call),
            ("PYTHON_CALL", MessageType::Call),
            ("SCRIPT_REMOTE_CALL", MessageType::RemoteCall),
            ("PYTHON_REMOTE_CALL", MessageType::RemoteCall),
            ("SCRIPT_RREF_FETCH_CALL", MessageType::RRefFetch),
            ("PYTHON_RREF_FETCH_CALL", MessageType::RRefFetch),
            ("RREF_FORK_REQUEST", MessageType::RRefForkRequest),
            ("RREF_CHILD_ACCEPT", MessageType::RRefChildAccept),
            ("RREF_USER_DELETE", MessageType::RRefUserDelete),
            ("CLEANUP_AUTOGRAD_CONTEXT_REQ", MessageType::Cleanup),
        ];
        for (name, t) in aliases {
            assert_eq!(name.parse::<MessageType>().unwrap(), t, "{name}");
        }
    }

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        let e = "SCRIPT_CAL".parse::<MessageType>().unwrap_err();
        assert!(matches!(&e, Error::UnknownMessageType { name } if name == "SCRIPT_CAL"));
        let msg = e.to_string();
        assert!(msg.contains("\"SCRIPT_CAL\""), "{msg}");
        assert!(
            msg.contains("rref_user_delete") && msg.contains("PYTHON_CALL"),
            "{msg}"
        );
    }
}
