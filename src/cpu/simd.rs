//! Runtime selection of the widest SIMD instruction set the CPU has.
//!
//! The kernels are plain loops written so that LLVM vectorizes them. Each loop is
//! compiled three times on x86-64: for the baseline (SSE2), for x86-64-v3 (AVX2,
//! FMA, F16C) and for AVX-512; [`run`] calls the widest one the CPU supports, as
//! detected once at first use. `TUTTI_CPU_SIMD=baseline|avx2|avx512` lowers the
//! choice (for benchmarks and for testing every path); it never raises it above
//! what the CPU has.

use std::sync::OnceLock;

/// An instruction-set level the CPU kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// The target's baseline (SSE2 on x86-64; whatever the target has elsewhere).
    Baseline,
    /// AVX2 + FMA + F16C (x86-64-v3).
    Avx2,
    /// AVX-512 F/BW/DQ/VL on top of AVX2.
    Avx512,
}

impl SimdLevel {
    /// Lower-case name (`baseline`, `avx2`, `avx512`).
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Baseline => "baseline",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

/// The widest level this CPU supports.
pub fn detected_simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && avx2_detected()
        {
            return SimdLevel::Avx512;
        }
        if avx2_detected() {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Baseline
}

#[cfg(target_arch = "x86_64")]
fn avx2_detected() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
        && std::arch::is_x86_feature_detected!("bmi1")
        && std::arch::is_x86_feature_detected!("bmi2")
        && std::arch::is_x86_feature_detected!("lzcnt")
        && std::arch::is_x86_feature_detected!("popcnt")
}

/// The level the kernels use: the detected one, lowered by `TUTTI_CPU_SIMD`.
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let detected = detected_simd_level();
        let wanted = match std::env::var("TUTTI_CPU_SIMD").ok().as_deref() {
            None | Some("") => detected,
            Some("baseline") | Some("scalar") | Some("sse2") => SimdLevel::Baseline,
            Some("avx2") => SimdLevel::Avx2,
            Some("avx512") => SimdLevel::Avx512,
            Some(other) => {
                tracing::warn!(
                    value = other,
                    "TUTTI_CPU_SIMD is not one of baseline, avx2, avx512; using {}",
                    detected.name()
                );
                detected
            }
        };
        let level = wanted.min(detected);
        tracing::debug!(level = level.name(), "CPU reduction kernels");
        level
    })
}

/// A loop to run under the selected instruction set. `run` must be
/// `#[inline(always)]` so that it is compiled inside each target-feature wrapper.
pub(crate) trait Kernel {
    fn run(self);
}

/// Runs `k` compiled for the widest instruction set in use (see [`simd_level`]).
#[inline]
pub(crate) fn run<K: Kernel>(k: K) {
    #[cfg(target_arch = "x86_64")]
    match simd_level() {
        // SAFETY: simd_level() never exceeds detected_simd_level(), which checked
        // at run time that this CPU has every feature run_avx512 is compiled with.
        SimdLevel::Avx512 => return unsafe { run_avx512(k) },
        // SAFETY: as above, for the features of run_avx2.
        SimdLevel::Avx2 => return unsafe { run_avx2(k) },
        SimdLevel::Baseline => {}
    }
    k.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,lzcnt,popcnt")]
fn run_avx2<K: Kernel>(k: K) {
    k.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(
    enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi1,bmi2,lzcnt,popcnt"
)]
fn run_avx512<K: Kernel>(k: K) {
    k.run()
}
