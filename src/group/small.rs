//! All-reduce of tiny buffers (up to one cache line of payload) on the window's
//! small-message lines: each rank publishes its bytes and their sequence number in one
//! cache line, and reads every peer's line with one transfer each. The latency path.

use tutti_transport::window::{LINE_PAYLOAD, Window};
use tutti_transport::{ByteReducer, Deadline, TransportError};

/// All-reduce of `buf` (at most [`LINE_PAYLOAD`] bytes), of `input` when given,
/// folding the members in rank order like the other window algorithms.
pub(crate) fn all_reduce(
    w: &Window,
    reducer: &dyn ByteReducer,
    input: Option<&[u8]>,
    buf: &mut [u8],
    dl: Deadline,
) -> Result<(), TransportError> {
    let len = buf.len();
    if len > LINE_PAYLOAD {
        return Err(TransportError::InvalidArgument(format!(
            "all_reduce on a small-message line: {len} bytes exceed {LINE_PAYLOAD}"
        )));
    }
    let local = |source| TransportError::Reduce {
        peer: format!("{} (local)", w.peer_name(w.index())),
        source,
    };
    let mut mine = [0u8; LINE_PAYLOAD];
    mine[..len].copy_from_slice(input.unwrap_or(buf));
    let v = w.posted() + 1;
    w.post_small(v, &mine[..len]);
    let mut acc = [0u8; LINE_PAYLOAD];
    let mut theirs = [0u8; LINE_PAYLOAD];
    for m in 0..w.members() {
        let src: &[u8] = if m == w.index() {
            &mine[..len]
        } else {
            w.read_small(m, v, &mut theirs[..len], dl, "all_reduce")?;
            &theirs[..len]
        };
        if m == 0 {
            acc[..len].copy_from_slice(src);
        } else {
            reducer
                .reduce_inplace(&mut acc[..len], src)
                .map_err(local)?;
        }
    }
    reducer.finalize(&mut acc[..len]).map_err(local)?;
    buf.copy_from_slice(&acc[..len]);
    Ok(())
}
