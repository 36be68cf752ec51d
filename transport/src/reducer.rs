//! [`ByteReducer`]: the reduction the fused primitives apply, handed in by the caller.

/// Combines incoming bytes into a local buffer: the reduction the fused transport
/// primitives (recv-reduce, recv-reduce-send) apply, chosen by the caller from the
/// dtype, the op and the memory kind. Buffers are whole elements of the reducer's
/// dtype; implementations report anything else as a [`ReduceError`].
pub trait ByteReducer: Send + Sync {
    /// Size in bytes of one element; transfers are chunked on element boundaries.
    fn element_size(&self) -> usize;

    /// `dst op= src`.
    fn reduce_inplace(&self, dst: &mut [u8], src: &[u8]) -> Result<(), ReduceError>;

    /// `dst = a op b`.
    fn reduce(&self, dst: &mut [u8], a: &[u8], b: &[u8]) -> Result<(), ReduceError>;

    /// `dst = src op dst`: [`reduce_inplace`](Self::reduce_inplace) with `src` first
    /// in the fold (a rank's own contribution in `dst` folded after an earlier
    /// rank's). The default goes through a copy of `dst`; kernels override it.
    fn reduce_inplace_after(&self, dst: &mut [u8], src: &[u8]) -> Result<(), ReduceError> {
        let own = dst.to_vec();
        self.reduce(dst, src, &own)
    }

    /// The op's final step on fully reduced data (Avg's division by the number of
    /// ranks, PreMulSum's scaling); nothing for most ops.
    fn finalize(&self, dst: &mut [u8]) -> Result<(), ReduceError> {
        let _ = dst;
        Ok(())
    }
}

/// Why a [`ByteReducer`] refused a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReduceError {
    /// The buffers of one call differ in length.
    #[error("buffers differ in length: {dst} bytes to write, {src} bytes to combine")]
    LengthMismatch {
        /// Bytes of the destination.
        dst: usize,
        /// Bytes of the (first) source that differs.
        src: usize,
    },
    /// A buffer does not hold whole elements.
    #[error("{len} bytes is not a whole number of {element_size}-byte elements")]
    PartialElement {
        /// The buffer's length in bytes.
        len: usize,
        /// The reducer's element size.
        element_size: usize,
    },
    /// A failure injected by the fault-injecting transport (`TUTTI_FAULTS`).
    #[error("injected fault: {0}")]
    Injected(String),
    /// The reducer's own error (the CPU or GPU kernels' typed error), kept as the
    /// source so callers can downcast it.
    #[error(transparent)]
    Kernel(Box<dyn std::error::Error + Send + Sync>),
}
