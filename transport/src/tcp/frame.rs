//! The TCP frame header: every message is `Header` (24 bytes, little-endian), then
//! [`PAD_LEN`] zero bytes when the header has [`FLAG_PAD`], then `len` payload bytes.

use crate::{Result, TransportError};

/// "TTF3" (version 3: the optional pad; version 2 dropped the reader threads and made
/// the checksum optional).
pub(crate) const MAGIC: u32 = 0x3346_5454;
/// Header flag: `crc` holds the CRC32 of the payload.
pub(crate) const FLAG_CRC: u32 = 1;
/// Header flag: [`PAD_LEN`] zero bytes follow the header, before the payload.
pub(crate) const FLAG_PAD: u32 = 2;
/// Bytes of the pad.
pub(crate) const PAD_LEN: usize = 64;

/// Whether a frame should carry the pad for `part` of its payload, which lies `at`
/// bytes past the frame's start (`HEADER_LEN` for a payload of one part).
///
/// The kernel copies a frame's bytes (header, then payload) into its socket buffer
/// pages; on loopback a frame starts at offset 0 of such a page whenever the
/// receiver has consumed the previous ones, so the payload lands at page offset
/// `HEADER_LEN`. When the payload's own page offset is a little below that (0..24,
/// or a little below 4096: a page-aligned or glibc-mmapped buffer), every store of
/// the copy lands less than 64 bytes ahead of the next loads modulo 4 KiB (4K
/// aliasing), and the copy ran 2-3x slower: a 64 KiB 2-rank all_reduce over TCP took
/// 34-50 us from a buffer at page offset 0x10 and 25-27 us from 0x800 (Zen 4,
/// bench/RESULTS.md). The pad moves the payload 64 bytes further. Small parts
/// never carry it (their copy is short either way).
pub(crate) fn wants_pad(part: &[u8], at: usize) -> bool {
    part.len() >= 4096 && (at.wrapping_sub(part.as_ptr() as usize) & 4095) < PAD_LEN
}

/// The checksum a frame carries: CRC32 (IEEE) by `crc32fast`, which folds with
/// carry-less multiplication (PCLMULQDQ, VPCLMULQDQ on AVX-512): 50 GB/s in cache on
/// the Zen 4 measured, twice the SSE4.2 `crc32` instruction's CRC32C (the `crc32c`
/// crate, 20-26 GB/s); `tcp_bounds checksum` measures both.
pub(crate) fn checksum(payload: &[u8]) -> u32 {
    crc32fast::hash(payload)
}

/// [`checksum`] of a payload sent as `head` then `body`.
pub(crate) fn checksum_parts(head: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(body);
    h.finalize()
}
/// Bytes in a header.
pub(crate) const HEADER_LEN: usize = 24;

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub flags: u32,
    pub seq: u64,
    pub len: u32,
    pub crc: u32,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..20].copy_from_slice(&self.len.to_le_bytes());
        b[20..24].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header: magic, the expected sequence number and a
    /// length of at most `max_len`.
    pub(crate) fn decode(
        b: &[u8; HEADER_LEN],
        expect_seq: u64,
        max_len: usize,
        peer: &str,
    ) -> Result<Header> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let corrupt = |detail: String| TransportError::Corrupt {
            peer: peer.to_string(),
            detail,
        };
        if u32_at(0) != MAGIC {
            return Err(corrupt(format!("bad frame magic 0x{:08x}", u32_at(0))));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[8..16]);
        let h = Header {
            flags: u32_at(4),
            seq: u64::from_le_bytes(seq),
            len: u32_at(16),
            crc: u32_at(20),
        };
        if h.seq != expect_seq {
            return Err(corrupt(format!(
                "frame sequence {} where {expect_seq} was expected (lost or reordered frame)",
                h.seq
            )));
        }
        if h.len as usize > max_len {
            return Err(corrupt(format!(
                "frame of {} bytes exceeds the maximum {max_len}",
                h.len
            )));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pad_goes_where_the_payload_would_land_just_ahead_of_itself() {
        let room = vec![0u8; 80 << 10];
        let base = (4096 - (room.as_ptr() as usize & 4095)) & 4095;
        let at = |off: usize, len: usize| &room[base + off..base + off + len];
        // Page offsets 0..=24 and 4057..=4095: the payload's copy would land less than
        // 64 bytes ahead of its source modulo 4 KiB.
        for off in [0, 8, 16, 24, 4057, 4095] {
            assert!(wants_pad(at(off, 65536), HEADER_LEN), "offset {off}");
        }
        for off in [25, 64, 2048, 4032, 4056] {
            assert!(!wants_pad(at(off, 65536), HEADER_LEN), "offset {off}");
        }
        // Small payloads never.
        assert!(!wants_pad(at(16, 4095), HEADER_LEN));
    }
}
