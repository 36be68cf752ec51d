//! The RPC layer's error type.

use std::sync::Arc;
use std::time::Duration;

use crate::store::StoreError;

/// What an RPC call's result is.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors returned by the RPC layer.
///
/// Errors are `Clone`: an RRef keeps the error its creation failed with and returns
/// it (wrapped in [`Error::RRefCreationFailed`]) from every later use.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is out of its valid range; the message names it and the value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A faulty-agent option named a message type that does not exist.
    #[error(
        "unknown RPC message type {name:?} (expected one of: {expected})",
        expected = crate::MessageType::NAMES_HELP
    )]
    UnknownMessageType {
        /// The name that was given.
        name: String,
    },

    /// No worker of this job has the given name or rank.
    #[error("unknown worker {worker} (this job has {world_size} workers: {names})")]
    UnknownWorker {
        /// The name or rank that was looked up.
        worker: String,
        /// The number of workers.
        world_size: usize,
        /// Their names.
        names: String,
    },

    /// Two workers asked for the same name at `init_rpc`.
    #[error(
        "worker name {name:?} is already taken by rank {taken_by} (rank {rank} asked for it too)"
    )]
    DuplicateName {
        /// The name.
        name: String,
        /// The rank that has it.
        taken_by: usize,
        /// The rank that asked for it too.
        rank: usize,
    },

    /// A store operation (rendezvous, graceful shutdown) failed.
    #[error("RPC store operation failed ({context}): {source}")]
    Store {
        /// What the agent was doing.
        context: String,
        /// The store's error.
        source: Arc<StoreError>,
    },

    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the agent was doing (and with whom).
        context: String,
        /// The operating system's error.
        source: Arc<std::io::Error>,
    },

    /// A call got no reply within its timeout.
    #[error("RPC timed out: {what} to {to} got no reply within {timeout:?} (waited {waited:?})")]
    Timeout {
        /// The call ("call 'add'", "to_here of RRef 0:3", ...).
        what: String,
        /// The destination worker, as `name (rank r)`.
        to: String,
        /// The timeout that expired.
        timeout: Duration,
        /// How long the caller waited.
        waited: Duration,
    },

    /// The connection to a worker was lost while a call to it was pending: the
    /// worker died or closed its end.
    #[error(
        "{what} to {to} failed: the connection to {to} was lost ({reason}); the worker died or closed it"
    )]
    ConnectionLost {
        /// The call.
        what: String,
        /// The destination worker.
        to: String,
        /// What the socket reported.
        reason: String,
    },

    /// A worker could not be reached.
    #[error("{what} to {to} failed: cannot connect to {addr}: {reason}")]
    Unreachable {
        /// The call.
        what: String,
        /// The destination worker.
        to: String,
        /// The worker's address.
        addr: String,
        /// What the socket reported.
        reason: String,
    },

    /// The destination worker has shut down.
    #[error("{what} to {to} failed: {to} has shut down")]
    WorkerShutDown {
        /// The call.
        what: String,
        /// The destination worker.
        to: String,
    },

    /// This worker's RPC agent is shut down (or shutting down).
    #[error("{what} failed: the RPC agent of {worker} is shut down")]
    ShutDown {
        /// The call.
        what: String,
        /// This worker.
        worker: String,
    },

    /// The faulty agent failed this send, as its options asked.
    #[error(
        "{what} to {to} failed: send of message type {message_type} failed (injected by the faulty agent: failure {attempt} of {num_fail_sends})"
    )]
    InjectedFault {
        /// The call.
        what: String,
        /// The destination worker.
        to: String,
        /// The message type whose send failed.
        message_type: crate::MessageType,
        /// Which of the failing sends this was (1-based).
        attempt: u32,
        /// How many sends of the type fail.
        num_fail_sends: u32,
    },

    /// The destination has no function of that name.
    #[error("no function named {func:?} is registered on {worker} (registered: {registered})")]
    UnknownFunction {
        /// The function name.
        func: String,
        /// The worker that was asked.
        worker: String,
        /// The names it has.
        registered: String,
    },

    /// The destination could not decode the arguments as the function's argument
    /// type.
    #[error("bad arguments for function {func:?} on {worker}: {message}")]
    BadArguments {
        /// The function name.
        func: String,
        /// The worker that ran it.
        worker: String,
        /// The decoder's message.
        message: String,
    },

    /// The function returned an error (or panicked) on the destination.
    #[error("function {func:?} failed on {worker}: {message}")]
    Remote {
        /// The function name.
        func: String,
        /// The worker that ran it.
        worker: String,
        /// The function's error message.
        message: String,
    },

    /// A value could not be encoded.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// What was encoded.
        what: String,
        /// The encoder's message.
        message: String,
    },

    /// A reply could not be decoded as the type the caller asked for.
    #[error("cannot decode {what}: {message}")]
    Decode {
        /// What was decoded.
        what: String,
        /// The decoder's message.
        message: String,
    },

    /// The RRef's creation (the `remote` call that makes its value on the owner)
    /// failed; every later use of the RRef returns this error.
    #[error("RRef creation failed: the remote call that creates {rref} on {owner} failed: {cause}")]
    RRefCreationFailed {
        /// The RRef.
        rref: String,
        /// Its owner.
        owner: String,
        /// Why the creation failed.
        cause: Box<Error>,
    },

    /// The owner does not know the RRef (it was deleted, or never created).
    #[error("{rref} is unknown on its owner {owner} (it was deleted or never created)")]
    UnknownRRef {
        /// The RRef.
        rref: String,
        /// Its owner.
        owner: String,
    },

    /// `local_value` was called on a worker that does not own the RRef.
    #[error("local_value of {rref} on {worker}: the value lives on its owner {owner}; use to_here")]
    NotOwner {
        /// The RRef.
        rref: String,
        /// The owner.
        owner: String,
        /// This worker.
        worker: String,
    },

    /// A message is larger than the agent accepts.
    #[error(
        "{what}: message of {size} bytes exceeds the limit of {max} bytes (RpcOptions::max_message_size)"
    )]
    MessageTooLarge {
        /// The call.
        what: String,
        /// The message size.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// A peer broke the protocol.
    #[error("RPC protocol error: {0}")]
    Protocol(String),

    /// Graceful shutdown did not complete in time.
    #[error("graceful shutdown of {worker} timed out after {waited:?}: {state}")]
    ShutdownTimeout {
        /// This worker.
        worker: String,
        /// How long it waited.
        waited: Duration,
        /// What it was waiting for.
        state: String,
    },
}

impl Error {
    pub(crate) fn store(context: impl Into<String>, e: StoreError) -> Self {
        Error::Store {
            context: context.into(),
            source: Arc::new(e),
        }
    }

    pub(crate) fn io(context: impl Into<String>, e: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source: Arc::new(e),
        }
    }

    /// Whether this is a timeout (of a call, a wait, or of the creation of an RRef).
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::RRefCreationFailed { cause, .. } => cause.is_timeout(),
            _ => false,
        }
    }
}
