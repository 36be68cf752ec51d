//! The kernel image `build.rs` embedded in this build, and the kernels' entry points.

use std::sync::LazyLock;

use crate::{DataType, StepOp};

/// How the CUDA kernels of this build were produced (see `build.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelImageKind {
    /// nvcc built a fatbin: SASS for sm_80 and sm_90 plus compute_90 PTX (and a
    /// compute_80 PTX text, kept for inspection).
    Fatbin,
    /// NVRTC compiled PTX for compute_80 at build time; the driver JIT-compiles it.
    /// When ptxas was found too, SASS for sm_80 and sm_90 is embedded as well and
    /// preferred on those GPUs (it loads on drivers older than the PTX).
    Ptx,
    /// No compiler was found at build time: the CUDA source is embedded and compiled
    /// with NVRTC (libnvrtc on the loader's path) the first time the kernels load.
    Source,
}

/// Facts about the kernels embedded in this build.
#[derive(Clone, Copy, Debug)]
pub struct KernelImage {
    /// What was embedded.
    pub kind: KernelImageKind,
    /// The compiler and its version (`nvcc 12.4`, `NVRTC 12.9`); empty for
    /// [`KernelImageKind::Source`].
    pub compiler: &'static str,
    /// The architectures in the image (`sm_80,sm_90,compute_90` for a fatbin,
    /// `compute_80` or `compute_80,sm_80,sm_90` for PTX); empty for
    /// [`KernelImageKind::Source`].
    pub arch: &'static str,
    /// One line saying how the kernels were built (the line `build.rs` prints).
    pub how: &'static str,
}

#[cfg(tutti_kernels = "fatbin")]
const KIND: KernelImageKind = KernelImageKind::Fatbin;
#[cfg(tutti_kernels = "ptx")]
const KIND: KernelImageKind = KernelImageKind::Ptx;
#[cfg(not(any(tutti_kernels = "fatbin", tutti_kernels = "ptx")))]
const KIND: KernelImageKind = KernelImageKind::Source;

#[cfg(tutti_kernels = "fatbin")]
const FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tutti_kernels.fatbin"));
#[cfg(not(tutti_kernels = "fatbin"))]
const FATBIN: &[u8] = &[];

#[cfg(any(tutti_kernels = "fatbin", tutti_kernels = "ptx"))]
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/tutti_kernels.ptx"));
#[cfg(not(any(tutti_kernels = "fatbin", tutti_kernels = "ptx")))]
const PTX: &str = "";

#[cfg(tutti_cubins)]
const CUBIN_SM80: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tutti_kernels.sm_80.cubin"));
#[cfg(tutti_cubins)]
const CUBIN_SM90: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tutti_kernels.sm_90.cubin"));
#[cfg(not(tutti_cubins))]
const CUBIN_SM80: &[u8] = &[];
#[cfg(not(tutti_cubins))]
const CUBIN_SM90: &[u8] = &[];

/// The kernels' CUDA source: `kernels/reduce.cu` with its includes inlined.
const SOURCE: &str = include_str!(concat!(env!("OUT_DIR"), "/tutti_kernels.cu"));

/// What `build.rs` embedded in this build.
pub fn kernel_image() -> KernelImage {
    KernelImage {
        kind: KIND,
        compiler: env!("TUTTI_KERNELS_COMPILER"),
        arch: env!("TUTTI_KERNELS_ARCH"),
        how: env!("TUTTI_KERNELS_HOW"),
    }
}

/// The kernels' CUDA source (`kernels/reduce.cu` with `tutti_kernels.h` and
/// `convert.cuh` inlined, `#line` directives naming the original files). Always
/// embedded: it is what NVRTC compiles at first use when the build had no compiler.
pub fn kernel_source() -> &'static str {
    SOURCE
}

/// The PTX text compiled at build time (compute_80), when there is one.
pub fn kernel_ptx() -> Option<&'static str> {
    (!PTX.is_empty()).then_some(PTX)
}

/// The fatbin built by nvcc, when there is one.
pub(crate) fn kernel_fatbin() -> Option<&'static [u8]> {
    (!FATBIN.is_empty()).then_some(FATBIN)
}

/// The SASS image (cubin) that runs on a device of compute capability
/// `major.minor`, when the build assembled one (with ptxas, next to NVRTC's PTX):
/// sm_80's runs on every 8.x device, sm_90's on 9.x. Returns the image and its name.
pub(crate) fn kernel_cubin(major: i32, _minor: i32) -> Option<(&'static [u8], &'static str)> {
    let (bin, name) = match major {
        8 => (CUBIN_SM80, "sm_80"),
        9 => (CUBIN_SM90, "sm_90"),
        _ => return None,
    };
    (!bin.is_empty()).then_some((bin, name))
}

/// The entry point of the binary step `step` on `dtype` (`tutti_sum_f32`), or `None`
/// when the pair is invalid (see [`StepOp::supports`]).
pub fn step_kernel_name(dtype: DataType, step: StepOp) -> Option<String> {
    step.supports(dtype)
        .then(|| format!("tutti_{}_{}", step.name(), dtype.short_name()))
}

/// The entry point of the n-source fold of `step` on `dtype` (`tutti_fold_sum_f32`),
/// or `None` when the pair is invalid.
pub fn fold_kernel_name(dtype: DataType, step: StepOp) -> Option<String> {
    step.supports(dtype)
        .then(|| format!("tutti_fold_{}_{}", step.name(), dtype.short_name()))
}

/// The entry point of `Avg`'s final pass on `dtype` (`tutti_avg_i32`).
pub fn avg_kernel_name(dtype: DataType) -> String {
    format!("tutti_avg_{}", dtype.short_name())
}

/// The entry point of `PreMulSum`'s final pass on `dtype` (`tutti_scale_bf16`), or
/// `None` for integers (PreMulSum is not defined for them).
pub fn scale_kernel_name(dtype: DataType) -> Option<String> {
    (!dtype.is_integer()).then(|| format!("tutti_scale_{}", dtype.short_name()))
}

static ENTRY_POINTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut names = Vec::new();
    for dtype in DataType::ALL {
        names.extend(
            StepOp::ALL
                .iter()
                .filter_map(|&step| step_kernel_name(dtype, step)),
        );
        names.push(avg_kernel_name(dtype));
        names.extend(scale_kernel_name(dtype));
        names.extend(
            StepOp::ALL
                .iter()
                .filter_map(|&step| fold_kernel_name(dtype, step)),
        );
    }
    names
});

/// Every kernel entry point, in dtype order (the functions declared in
/// `kernels/tutti_kernels.h`): 70 binary steps, 14 `avg` and 8 `scale` passes, and
/// 70 n-source folds.
pub fn entry_points() -> &'static [String] {
    &ENTRY_POINTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_point_matrix() {
        assert_eq!(entry_points().len(), 162);
        assert_eq!(
            step_kernel_name(DataType::F32, StepOp::Sum).as_deref(),
            Some("tutti_sum_f32")
        );
        assert_eq!(
            step_kernel_name(DataType::U64, StepOp::BXor).as_deref(),
            Some("tutti_bxor_u64")
        );
        assert_eq!(step_kernel_name(DataType::C64, StepOp::Min), None);
        assert_eq!(step_kernel_name(DataType::F16, StepOp::BAnd), None);
        assert_eq!(scale_kernel_name(DataType::I8), None);
        assert_eq!(avg_kernel_name(DataType::C128), "tutti_avg_c128");
        assert_eq!(
            fold_kernel_name(DataType::BF16, StepOp::Max).as_deref(),
            Some("tutti_fold_max_bf16")
        );
        assert_eq!(fold_kernel_name(DataType::C128, StepOp::Min), None);
    }
}
