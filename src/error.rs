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

    /// A store operation failed (timeout, refused connection, protocol or I/O
    /// error, refused request); see [`StoreError`](crate::store::StoreError).
    #[error(transparent)]
    Store(#[from] tutti_store::StoreError),

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

    /// A raw buffer is not where the call says it is: host memory passed as CUDA
    /// device memory or the reverse (detected with cuPointerGetAttribute).
    #[error("{what}: {buffer} is {actual}, but the call says {claimed}")]
    MemoryMismatch {
        /// The call.
        what: String,
        /// Which buffer (`send`, `recv`, `buf`).
        buffer: &'static str,
        /// What the call said (or needs).
        claimed: crate::group::MemoryKind,
        /// What the driver says.
        actual: crate::group::MemoryKind,
    },

    /// The launcher failed; see [`LaunchError`](crate::launch::LaunchError).
    #[error(transparent)]
    Launch(#[from] tutti_launch::LaunchError),
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

impl From<tutti_core::DataError> for Error {
    fn from(e: tutti_core::DataError) -> Self {
        match e {
            tutti_core::DataError::InvalidOp { op, dtype, reason } => {
                Error::InvalidOp { op, dtype, reason }
            }
            tutti_core::DataError::UnknownDataType(s) => Error::UnknownDataType(s),
            tutti_core::DataError::UnknownReduceOp(s) => Error::UnknownReduceOp(s),
            other => Error::InvalidArgument(other.to_string()),
        }
    }
}
