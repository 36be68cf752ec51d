//! Bulk copies that avoid the slow cases of the C library's `memcpy` on this CPU.
//!
//! glibc copies a few KiB and more with `rep movsb` on CPUs that advertise fast
//! string moves (ERMS/FSRM). On AMD Zen 3 (EPYC family 25 model 1, measured with
//! 256 KiB copies in L2, bench/RESULTS.md) that instruction runs at ~2 GB/s instead of
//! ~35 GB/s when the destination lies 1 to 63 bytes past the source modulo 4 KiB
//! (16 bytes: 2.1 GB/s; 48: 17 GB/s), while a loop of vector loads and stores runs at
//! full speed at every relation. That relation is the common one between a
//! page-aligned window or FIFO slot and a buffer from `malloc` of 128 KiB or more
//! (mapped by `mmap`, its data 16 bytes past a page): the review's p2p bandwidth
//! "collapse from 128 KiB messages" on that CPU.
//!
//! [`copy`] therefore measures once per process (about a millisecond, on the first
//! large copy) whether the C library's copy is slow at that relation; where it is, such
//! copies go through a vector loop, and every other copy stays with the C library,
//! whose choices (`rep movsb`, non-temporal stores for huge copies) win elsewhere.
//! `TUTTI_COPY=libc` never uses the loop, `TUTTI_COPY=vector` uses it for every copy of
//! [`MIN_BYTES`] or more; unset or `auto`: the measurement decides.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Copies shorter than this always use the C library (its `rep movsb` threshold is
/// a few KiB; below it glibc uses vector moves itself).
pub const MIN_BYTES: usize = 2048;

/// Destination offsets past the source, modulo a page, that the slow case covers.
const NEAR: std::ops::Range<usize> = 1..64;

/// Bytes per trial of the probe: in L2 on every CPU seen, and long enough for
/// `rep movsb`.
const PROBE_BYTES: usize = 64 << 10;

/// How [`copy`] chooses between the C library and the vector loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyPolicy {
    /// Always the C library (`TUTTI_COPY=libc`).
    Libc,
    /// The vector loop for every copy of [`MIN_BYTES`] or more (`TUTTI_COPY=vector`).
    Vector,
    /// The vector loop where the destination lies 1..63 bytes past the source modulo
    /// 4 KiB, the C library elsewhere: what the probe picks where that case is slow.
    NearAlias,
}

impl CopyPolicy {
    fn uses_loop(self, dst: usize, src: usize, len: usize) -> bool {
        len >= MIN_BYTES
            && match self {
                CopyPolicy::Libc => false,
                CopyPolicy::Vector => true,
                CopyPolicy::NearAlias => NEAR.contains(&(dst.wrapping_sub(src) & 4095)),
            }
    }
}

/// The policy of this process: `TUTTI_COPY`, else measured on first use.
pub fn policy() -> CopyPolicy {
    chosen().0
}

/// The start-up measurement behind [`policy`], when it measured (`TUTTI_COPY` unset or
/// `auto`); for reports such as the benchmark's header.
pub fn measured() -> Option<Probe> {
    chosen().1
}

fn chosen() -> (CopyPolicy, Option<Probe>) {
    static CHOSEN: OnceLock<(CopyPolicy, Option<Probe>)> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let forced = std::env::var("TUTTI_COPY").ok();
        match forced.as_deref().map(str::trim) {
            Some("libc") => (CopyPolicy::Libc, None),
            Some("vector") => (CopyPolicy::Vector, None),
            Some("auto") | Some("") | None => {
                let p = probe();
                (p.policy(), Some(p))
            }
            Some(other) => {
                tracing::warn!(
                    value = other,
                    "TUTTI_COPY expects libc, vector or auto; measuring instead"
                );
                let p = probe();
                (p.policy(), Some(p))
            }
        }
    })
}

/// What the start-up measurement found: the best of several trials of each copy, at
/// the relation of the slow case.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// The C library's copy of [`PROBE_BYTES`], destination 16 bytes past the source
    /// modulo 4 KiB.
    pub libc: Duration,
    /// The vector loop, same buffers.
    pub vector: Duration,
}

impl Probe {
    /// The C library's copy at the slow case's relation, in GB/s.
    pub fn libc_gbps(&self) -> f64 {
        gbps(self.libc)
    }

    /// The vector loop at the same relation, in GB/s.
    pub fn vector_gbps(&self) -> f64 {
        gbps(self.vector)
    }

    /// The loop where the C library is at least 1.5 times slower at that relation
    /// (Zen 3: ~15 times; elsewhere the two are within a few per cent).
    pub fn policy(&self) -> CopyPolicy {
        if self.libc.as_secs_f64() > 1.5 * self.vector.as_secs_f64() {
            CopyPolicy::NearAlias
        } else {
            CopyPolicy::Libc
        }
    }
}

fn gbps(t: Duration) -> f64 {
    (4 * PROBE_BYTES) as f64 / t.as_secs_f64().max(1e-12) / 1e9
}

/// Times the C library's copy and the vector loop at the slow case's relation.
pub fn probe() -> Probe {
    // Two page-aligned areas inside one allocation: source at a page, destination
    // 16 bytes past another.
    let mut area = vec![0u8; 2 * PROBE_BYTES + 3 * 4096];
    let base = area.as_mut_ptr();
    let skip = base.align_offset(4096);
    let src_off = skip;
    let dst_off = skip + PROBE_BYTES + 4096 + 16;
    let (src_part, dst_part) = area.split_at_mut(dst_off);
    let src = &src_part[src_off..src_off + PROBE_BYTES];
    let dst = &mut dst_part[..PROBE_BYTES];
    let best = |f: &mut dyn FnMut(&mut [u8], &[u8]), dst: &mut [u8]| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..4 {
                    f(dst, src);
                    std::hint::black_box(&mut *dst);
                }
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    let libc = best(&mut |d, s| d.copy_from_slice(s), dst);
    // SAFETY: `d` and `s` are distinct slices of equal length.
    let vector = best(
        &mut |d, s| unsafe { vector_copy(d.as_mut_ptr(), s.as_ptr(), s.len()) },
        dst,
    );
    let p = Probe { libc, vector };
    tracing::debug!(?p, policy = ?p.policy(), "copy probe");
    p
}

/// `dst[..len] = src[..len]`, by the C library or the vector loop as [`policy`]
/// chooses.
///
/// # Safety
/// `src` and `dst` must be valid for `len` bytes and must not overlap.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    if len >= MIN_BYTES && policy().uses_loop(dst as usize, src as usize, len) {
        // SAFETY: the caller's guarantee.
        unsafe { vector_copy(dst, src, len) }
    } else {
        // SAFETY: the caller's guarantee.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) }
    }
}

/// `dst.copy_from_slice(src)` through [`copy`].
///
/// # Panics
/// If the lengths differ (as `copy_from_slice`): a bug in the caller.
pub fn copy_slice(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_slice: lengths differ");
    // SAFETY: two live slices of equal length; `&mut` excludes overlap.
    unsafe { copy(dst.as_mut_ptr(), src.as_ptr(), src.len()) }
}

/// The vector loop: AVX2 where the CPU has it, SSE2 otherwise, stores aligned to
/// their width after a short head.
///
/// # Safety
/// As [`copy`].
unsafe fn vector_copy(dst: *mut u8, src: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the caller's guarantee; AVX2 is present.
            unsafe { x86::copy_avx2(dst, src, len) };
        } else {
            // SAFETY: the caller's guarantee; SSE2 is part of x86_64.
            unsafe { x86::copy_sse2::<false>(dst, src, len) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: the caller's guarantee.
    unsafe {
        std::ptr::copy_nonoverlapping(src, dst, len)
    };
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm_store_si128, _mm_stream_si128, _mm256_loadu_si256,
        _mm256_store_si256,
    };

    /// # Safety
    /// `src` and `dst` valid for `len` bytes, not overlapping; AVX2 present.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn copy_avx2(dst: *mut u8, src: *const u8, len: usize) {
        let head = dst.align_offset(32).min(len);
        // SAFETY: every access stays inside the caller's ranges; the stores go to
        // 32-byte aligned addresses (after `head`).
        unsafe {
            std::ptr::copy_nonoverlapping(src, dst, head);
            let mut i = head;
            while i + 128 <= len {
                let s = src.add(i) as *const __m256i;
                let d = dst.add(i) as *mut __m256i;
                let (a, b) = (_mm256_loadu_si256(s), _mm256_loadu_si256(s.add(1)));
                let (c, e) = (_mm256_loadu_si256(s.add(2)), _mm256_loadu_si256(s.add(3)));
                _mm256_store_si256(d, a);
                _mm256_store_si256(d.add(1), b);
                _mm256_store_si256(d.add(2), c);
                _mm256_store_si256(d.add(3), e);
                i += 128;
            }
            std::ptr::copy_nonoverlapping(src.add(i), dst.add(i), len - i);
        }
    }

    /// The SSE2 loop: ordinary stores, or streaming (non-temporal) ones when
    /// `STREAM` (then without the fence: [`crate::window`]'s output copies fence
    /// after their last one).
    ///
    /// # Safety
    /// `src` and `dst` valid for `len` bytes, not overlapping.
    pub(crate) unsafe fn copy_sse2<const STREAM: bool>(dst: *mut u8, src: *const u8, len: usize) {
        let head = dst.align_offset(16).min(len);
        // SAFETY: every access stays inside the caller's ranges; the stores go to
        // 16-byte aligned addresses (after `head`); SSE2 is part of x86_64.
        unsafe {
            std::ptr::copy_nonoverlapping(src, dst, head);
            let mut i = head;
            while i + 64 <= len {
                let s = src.add(i) as *const __m128i;
                let d = dst.add(i) as *mut __m128i;
                let v = [
                    _mm_loadu_si128(s),
                    _mm_loadu_si128(s.add(1)),
                    _mm_loadu_si128(s.add(2)),
                    _mm_loadu_si128(s.add(3)),
                ];
                for (k, v) in v.into_iter().enumerate() {
                    if STREAM {
                        _mm_stream_si128(d.add(k), v);
                    } else {
                        _mm_store_si128(d.add(k), v);
                    }
                }
                i += 64;
            }
            std::ptr::copy_nonoverlapping(src.add(i), dst.add(i), len - i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type CopyFn = unsafe fn(*mut u8, *const u8, usize);

    /// The SSE2 loop (the one CPUs without AVX2 run).
    ///
    /// # Safety
    /// As [`copy`].
    unsafe fn sse2(dst: *mut u8, src: *const u8, len: usize) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller's guarantee.
        unsafe {
            x86::copy_sse2::<false>(dst, src, len)
        };
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: the caller's guarantee.
        unsafe {
            std::ptr::copy_nonoverlapping(src, dst, len)
        };
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8)
            .collect()
    }

    #[test]
    fn every_copy_moves_every_byte_at_any_alignment_and_length() {
        let src = pattern(80_000);
        for (d_off, s_off, len) in [
            (0, 0, 65_536),
            (16, 0, 65_536),
            (3, 5, 65_000),
            (15, 1, 4_097),
            (1, 0, 63),
            (31, 0, 2_048),
            (0, 17, 2_175),
            (7, 9, 0),
        ] {
            let mut want = vec![0u8; 80_000];
            want[d_off..d_off + len].copy_from_slice(&src[s_off..s_off + len]);
            let copies: [(&str, CopyFn); 3] =
                [("copy", copy), ("vector", vector_copy), ("sse2", sse2)];
            for (name, f) in copies {
                let mut dst = vec![0u8; 80_000];
                // SAFETY: both ranges lie inside their vectors, which do not overlap.
                unsafe { f(dst.as_mut_ptr().add(d_off), src.as_ptr().add(s_off), len) };
                assert!(dst == want, "{name}: dst+{d_off} src+{s_off} len {len}");
            }
        }
    }

    #[test]
    fn copy_slice_copies_and_policy_picks_the_loop_only_for_near_aliased_large_copies() {
        let src = pattern(10_000);
        let mut dst = vec![0u8; 10_000];
        copy_slice(&mut dst, &src);
        assert_eq!(dst, src);
        let p = CopyPolicy::NearAlias;
        assert!(p.uses_loop(4096 + 16, 0, 4096));
        assert!(p.uses_loop(16, 4096 * 3, 1 << 20));
        assert!(p.uses_loop(63, 0, MIN_BYTES));
        assert!(!p.uses_loop(64, 0, 1 << 20));
        assert!(!p.uses_loop(0, 0, 1 << 20));
        assert!(!p.uses_loop(0, 16, 1 << 20), "source past the destination");
        assert!(!p.uses_loop(16, 0, MIN_BYTES - 1));
        assert!(CopyPolicy::Vector.uses_loop(0, 0, MIN_BYTES));
        assert!(!CopyPolicy::Libc.uses_loop(16, 0, 1 << 20));
    }

    #[test]
    fn the_probe_times_both_copies() {
        let p = probe();
        assert!(
            p.libc > Duration::ZERO && p.vector > Duration::ZERO,
            "{p:?}"
        );
    }
}
