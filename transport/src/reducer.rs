//! [`ByteReducer`]: the reduction the fused primitives apply, handed in by the caller.

/// Combines incoming bytes into a local buffer: the reduction the fused transport
/// primitives (recv-reduce, recv-reduce-send) apply, chosen by the caller from the
/// dtype, the op and the memory kind. Buffers are whole elements of the reducer's
/// dtype; implementations report anything else as an error message.
pub trait ByteReducer: Send + Sync {
    /// Size in bytes of one element; transfers are chunked on element boundaries.
    fn element_size(&self) -> usize;

    /// `dst op= src`.
    fn reduce_inplace(&self, dst: &mut [u8], src: &[u8]) -> Result<(), String>;

    /// `dst = a op b`.
    fn reduce(&self, dst: &mut [u8], a: &[u8], b: &[u8]) -> Result<(), String>;

    /// The op's final step on fully reduced data (Avg's division by the number of
    /// ranks, PreMulSum's scaling); nothing for most ops.
    fn finalize(&self, dst: &mut [u8]) -> Result<(), String> {
        let _ = dst;
        Ok(())
    }
}
