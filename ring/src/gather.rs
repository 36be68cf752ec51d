//! Gather to a root and scatter from a root, directly over each rank's link with the
//! root.

use tutti_transport::ops;

use crate::{Result, Schedule, TransportError, check};

/// Collects every rank's `input` (`L` bytes) into the root's `output` (`size * L`
/// bytes, rank `i` at `i * L`); other ranks may pass an empty `output`.
pub fn gather(ring: &mut Schedule<'_>, input: &[u8], output: &mut [u8], root: usize) -> Result<()> {
    check(ring, "gather", input.len(), 1)?;
    let n = ring.size;
    if root >= n {
        return Err(TransportError::InvalidArgument(format!(
            "gather: root {root} is outside a group of {n}"
        )));
    }
    let l = input.len();
    let (chunk, dl) = (ring.chunk, ring.deadline);
    if ring.rank != root {
        if l > 0 {
            let (tx, _) = ring.links.pair(root, root)?;
            ops::send(tx, input, chunk, dl)?;
        }
        return Ok(());
    }
    if output.len() != n * l {
        return Err(TransportError::InvalidArgument(format!(
            "gather: the root's output has {} bytes, expected {n} x {l}",
            output.len()
        )));
    }
    tutti_transport::copy::copy_slice(&mut output[root * l..(root + 1) * l], input);
    for p in (0..n).filter(|&p| p != root && l > 0) {
        let (_, rx) = ring.links.pair(p, p)?;
        ops::recv(rx, &mut output[p * l..(p + 1) * l], dl)?;
    }
    Ok(())
}

/// Sends block `i` of the root's `input` (`size * L` bytes) to rank `i`'s `output`
/// (`L` bytes); other ranks may pass an empty `input`.
pub fn scatter(
    ring: &mut Schedule<'_>,
    input: &[u8],
    output: &mut [u8],
    root: usize,
) -> Result<()> {
    check(ring, "scatter", output.len(), 1)?;
    let n = ring.size;
    if root >= n {
        return Err(TransportError::InvalidArgument(format!(
            "scatter: root {root} is outside a group of {n}"
        )));
    }
    let l = output.len();
    let (chunk, dl) = (ring.chunk, ring.deadline);
    if ring.rank != root {
        if l > 0 {
            let (_, rx) = ring.links.pair(root, root)?;
            ops::recv(rx, output, dl)?;
        }
        return Ok(());
    }
    if input.len() != n * l {
        return Err(TransportError::InvalidArgument(format!(
            "scatter: the root's input has {} bytes, expected {n} x {l}",
            input.len()
        )));
    }
    tutti_transport::copy::copy_slice(output, &input[root * l..(root + 1) * l]);
    for p in (0..n).filter(|&p| p != root && l > 0) {
        let (tx, _) = ring.links.pair(p, p)?;
        ops::send(tx, &input[p * l..(p + 1) * l], chunk, dl)?;
    }
    Ok(())
}
