//! Non-temporal copies into the caller's output ([`Exec::copy_out`](super::Exec)):
//! when an operation's data exceeds the last-level cache, writing the output through
//! the cache first reads every line from memory (write-allocate) and evicts data the
//! operation still needs; streaming stores skip both.

use std::sync::OnceLock;

/// Copies shorter than this use the ordinary copy.
pub(crate) const MIN_BYTES: usize = 4096;

/// The last-level cache of this host in bytes (sysfs; 32 MiB when unknown).
pub(crate) fn llc_bytes() -> usize {
    static LLC: OnceLock<usize> = OnceLock::new();
    *LLC.get_or_init(|| {
        (0..8)
            .filter_map(|i| {
                let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
                let level = std::fs::read_to_string(format!("{dir}/level")).ok()?;
                let size = std::fs::read_to_string(format!("{dir}/size")).ok()?;
                Some((level.trim().parse::<u32>().ok()?, parse_size(size.trim())?))
            })
            .max()
            .map_or(32 << 20, |(_, bytes)| bytes)
    })
}

fn parse_size(s: &str) -> Option<usize> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok()?.checked_mul(mult)
}

/// `TUTTI_STREAM_OUTPUT`: `1` always streams large output copies, `0` never; unset:
/// decided by size.
pub(crate) fn forced() -> Option<bool> {
    static F: OnceLock<Option<bool>> = OnceLock::new();
    *F.get_or_init(|| match std::env::var("TUTTI_STREAM_OUTPUT").ok()?.trim() {
        "1" | "on" | "yes" => Some(true),
        "0" | "off" | "no" => Some(false),
        _ => None,
    })
}

/// `dst[..len] = src[..len]` with non-temporal stores, then a store fence (so the
/// data is ordered before the window counters that follow).
///
/// # Safety
/// `src` and `dst` must be valid for `len` bytes and not overlap.
pub(crate) unsafe fn copy_nt(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller's guarantee.
    unsafe { copy_nt_unfenced(dst, src, len) };
    fence();
}

/// Orders the streaming stores before every later store (`sfence`).
pub(crate) fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64; `sfence` has no operands.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// [`copy_nt`] without the fence: the caller issues [`fence`] after its last one,
/// so that the stores drain while it does other work.
///
/// # Safety
/// As [`copy_nt`].
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn copy_nt_unfenced(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller's guarantee.
    unsafe { crate::copy::x86::copy_sse2::<true>(dst, src, len) };
}

/// Elsewhere: the ordinary copy.
///
/// # Safety
/// `src` and `dst` must be valid for `len` bytes and not overlap.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn copy_nt_unfenced(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller's guarantee.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_copy_moves_every_byte_at_any_alignment() {
        let src: Vec<u8> = (0..70_000u32).map(|i| (i * 7 + 3) as u8).collect();
        for (d_off, s_off, len) in [(0, 0, 65_536), (3, 5, 65_000), (15, 1, 4_097), (1, 0, 63)] {
            let mut dst = vec![0u8; 70_000];
            // SAFETY: both ranges lie inside their vectors, which do not overlap.
            unsafe { copy_nt(dst.as_mut_ptr().add(d_off), src.as_ptr().add(s_off), len) };
            assert_eq!(&dst[d_off..d_off + len], &src[s_off..s_off + len]);
            assert!(dst[..d_off].iter().all(|&b| b == 0));
            assert!(dst[d_off + len..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_size("32768K"), Some(32 << 20));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("x"), None);
        assert!(llc_bytes() >= 1 << 20);
    }
}
