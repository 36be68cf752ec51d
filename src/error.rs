//! The library's one error type.
//!
//! Every fallible call in tutti returns [`Result<T>`](crate::Result). Errors carry
//! enough context (what was called, with which dtype, op, length or peer) that the
//! message alone tells the user what was wrong. Bad user input is always an error,
//! never a panic, and is detected before any byte moves.

use crate::{DataType, ReduceOp};

/// Errors returned by tutti.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The reduction operation is not defined for the data type (see
    /// [`ReduceOp::check`](crate::ReduceOp::check) for the validity matrix).
    #[error("reduce op {op} is not supported for dtype {dtype}: {reason}")]
    InvalidOp {
        /// The operation that was asked for.
        op: ReduceOp,
        /// The element type it was asked for.
        dtype: DataType,
        /// Why the pair is invalid.
        reason: &'static str,
    },

    /// Two buffers that must have the same length do not.
    #[error("{what}: length mismatch: expected {expected} {unit}, got {actual}")]
    LengthMismatch {
        /// Which call and which buffer.
        what: &'static str,
        /// The length that was required.
        expected: usize,
        /// The length that was passed.
        actual: usize,
        /// The unit of both lengths ("elements" or "bytes").
        unit: &'static str,
    },

    /// A byte buffer whose length is not a whole number of elements of its dtype.
    #[error("{what}: {len} bytes is not a whole number of {dtype} elements ({size} bytes each)")]
    PartialElement {
        /// Which call and which buffer.
        what: &'static str,
        /// The buffer's length in bytes.
        len: usize,
        /// The element type.
        dtype: DataType,
        /// The element size in bytes.
        size: usize,
    },

    /// A parameter is out of its valid range (a world size of zero, a non-finite
    /// PreMulSum scalar, ...). The message names the parameter and the value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A name that does not denote a known data type.
    #[error("unknown data type {0:?} (expected one of: {names})", names = DataType::NAMES_HELP)]
    UnknownDataType(String),

    /// A name that does not denote a known reduction operation.
    #[error(
        "unknown reduce op {0:?} (expected one of: sum, prod, min, max, avg, premulsum:<scalar>, band, bor, bxor)"
    )]
    UnknownReduceOp(String),

    /// No usable CUDA driver or device: GPU work cannot run here.
    #[error("GPU unavailable: {0}")]
    GpuUnavailable(String),

    /// A CUDA driver call failed.
    #[error("CUDA error in {context}: {message}")]
    Cuda {
        /// What tutti was doing.
        context: String,
        /// The driver's message.
        message: String,
    },

    /// The CUDA kernels could not be compiled or loaded.
    #[error("CUDA kernel build failed ({context}): {log}")]
    KernelBuild {
        /// Which step failed (NVRTC compile, module load, ...).
        context: String,
        /// The compiler log or loader message.
        log: String,
    },

    /// A store operation that waits for keys (get, wait, multi_get) ran past its
    /// timeout. Names every key waited for, those still missing, and the time waited.
    #[error(
        "store timeout after {waited:?} waiting for keys {keys:?} (still missing: {missing:?})"
    )]
    StoreTimeout {
        /// The keys the call waited for.
        keys: Vec<String>,
        /// The keys that did not exist when the timeout expired.
        missing: Vec<String>,
        /// How long the call waited.
        waited: std::time::Duration,
    },

    /// A store barrier ran past its timeout. On rank 0 `missing_ranks` lists the ranks
    /// that never reached the barrier (at most 16 probed misses); the other ranks
    /// carry `None` and point at rank 0's error for the list.
    #[error(
        "Timed out waiting on barrier on rank {rank}, for key prefix: {prefix} (world_size={world_size}, missing_ranks={missing}, timeout={timeout:?})",
        missing = crate::store::format_missing_ranks(.missing_ranks.as_deref())
    )]
    BarrierTimeout {
        /// The rank that raised the error.
        rank: usize,
        /// The barrier's key prefix.
        prefix: String,
        /// The number of ranks the barrier waited for.
        world_size: usize,
        /// The ranks that never checked in (rank 0 only).
        missing_ranks: Option<Vec<usize>>,
        /// The barrier's timeout.
        timeout: std::time::Duration,
    },

    /// The store server refused this client's job token (or handshake).
    #[error(
        "store server {addr} refused the connection: {message} (check TUTTI_JOB_TOKEN or the token passed to the store)"
    )]
    StoreAuth {
        /// The server's address.
        addr: String,
        /// The server's reason.
        message: String,
    },

    /// A peer of the store sent bytes that do not follow the store's wire protocol.
    #[error("store protocol error with {peer}: {message}")]
    StoreProtocol {
        /// The other end of the connection.
        peer: String,
        /// What was wrong with its bytes.
        message: String,
    },

    /// An I/O error while talking to (or serving, or reading the file of) a store.
    #[error("store I/O error: {context}: {source}")]
    StoreIo {
        /// What the store was doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The store refused a request (for example `add` on a value that is not a
    /// decimal integer, or a key or value over the size limits).
    #[error("store {op} on key {key:?} failed: {message}")]
    StoreRequest {
        /// The operation (set, add, ...).
        op: &'static str,
        /// The key it was applied to.
        key: String,
        /// Why it was refused.
        message: String,
    },

    /// The store's backend (etcd) returned an error.
    #[error("store backend error: {context}: {message}")]
    StoreBackend {
        /// What the store was doing.
        context: String,
        /// The backend's message.
        message: String,
    },

    /// A collective or point-to-point operation failed: a peer died, stopped calling,
    /// sent corrupt data, or the group was aborted. Names the op, its sequence number
    /// in the group and (through the transport error) the peer.
    #[error("{op} #{seq} on rank {rank} failed: {source}{}", missing_note(.missing_ranks, op, *seq))]
    Collective {
        /// The operation (`all_reduce`, `send`, ...).
        op: &'static str,
        /// Its sequence number in the group (0 for the first op).
        seq: u64,
        /// The rank that reports the error.
        rank: usize,
        /// What the transport saw.
        #[source]
        source: tutti_transport::TransportError,
        /// Group ranks that did not report this op's failure within a grace period
        /// after it: they died or never called the op.
        missing_ranks: Vec<usize>,
    },

    /// The error of an asynchronous operation, shared with its [`Work`](crate::Work)
    /// handle (whose `error()` returned it): the operation's own error, typed.
    #[error("{0}")]
    Shared(std::sync::Arc<Error>),

    /// A [`monitored_barrier`](crate::ProcessGroup::monitored_barrier) timed out:
    /// names the ranks that did not arrive (seen from rank 0).
    #[error(
        "monitored_barrier on rank {rank} timed out after {timeout:?}: rank(s) {missing:?} did not arrive"
    )]
    MonitoredBarrier {
        /// The rank reporting.
        rank: usize,
        /// The ranks that did not reach the barrier in time.
        missing: Vec<usize>,
        /// The barrier's timeout.
        timeout: std::time::Duration,
    },

    /// The group had an error (or was aborted) earlier and refuses new operations.
    #[error(
        "the process group is unusable after an earlier failure ({reason}); create a new group"
    )]
    GroupFailed {
        /// The first failure.
        reason: String,
    },

    /// Setting up the group's links failed.
    #[error("process group setup failed on rank {rank}: {source}")]
    Setup {
        /// The rank that reports the error.
        rank: usize,
        /// What the transport saw.
        #[source]
        source: tutti_transport::TransportError,
    },

    /// With `TUTTI_CHECK=1`: the ranks did not all call the same operation.
    #[error("rank {rank} called {theirs} where rank {reference} called {ours} (op #{seq})")]
    Mismatch {
        /// Sequence number of the op.
        seq: u64,
        /// The first rank whose call differs.
        rank: usize,
        /// The rank compared against.
        reference: usize,
        /// What the reference rank called.
        ours: String,
        /// What `rank` called.
        theirs: String,
    },

    /// The launcher's configuration (a `tutti run` flag) is invalid; the message
    /// names the flag.
    #[error("invalid launch configuration: {0}")]
    LaunchConfig(String),

    /// Launchers could not form (or keep) their rendezvous.
    #[error("rendezvous ({backend} backend) failed: {message}")]
    Rendezvous {
        /// The rendezvous backend.
        backend: &'static str,
        /// What went wrong.
        message: String,
    },

    /// A worker process could not be started.
    #[error("could not start worker program {program:?}: {source}")]
    WorkerSpawn {
        /// The program.
        program: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The launcher could not create its log directories or files.
    #[error("launcher I/O error: {context}: {source}")]
    LaunchIo {
        /// What the launcher was doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Workers failed and no restarts remain; the report names the first failure
    /// (rank, local rank, exit code or signal, error-file message).
    #[error("{0}")]
    WorkersFailed(Box<crate::launch::FailureReport>),

    /// Another launcher of the job shut it down (its workers failed for good, or it
    /// was interrupted).
    #[error("the job was stopped by another launcher: {reason}")]
    LaunchAborted {
        /// What the other launcher reported.
        reason: String,
    },

    /// The launcher received a signal, forwarded it to its workers and stopped them.
    #[error("the launcher received {name} (signal {signal}) and stopped its workers")]
    LaunchSignal {
        /// The signal number.
        signal: i32,
        /// Its name (`SIGTERM`).
        name: String,
    },

    /// A worker of a Rust entrypoint exited with 0 but its return value could not
    /// be read.
    #[error("worker rank {rank}: {message}")]
    WorkerResult {
        /// The worker's global rank.
        rank: usize,
        /// What was wrong.
        message: String,
    },
}

fn missing_note(missing: &[usize], op: &str, seq: u64) -> String {
    if missing.is_empty() {
        String::new()
    } else {
        format!("; ranks that never reached {op} #{seq} (dead or not calling): {missing:?}")
    }
}

/// `Result` with tutti's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
