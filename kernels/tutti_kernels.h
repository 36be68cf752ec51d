/*
 * tutti_kernels.h -- the C ABI of tutti's CUDA reduction kernels.
 *
 * The kernels are built by tutti's build.rs (nvcc fatbin, or NVRTC PTX, or NVRTC at
 * first use) and loaded by name through the CUDA driver API (cuModuleGetFunction).
 * This header documents every entry point; kernels/reduce.cu includes it, so a
 * definition that does not match its declaration here is a compile error.
 *
 * NAMING
 *   tutti_<step>_<dtype>    dst[i] = a[i] <step> b[i]              for i in [0, count)
 *   tutti_fold_<step>_<dtype>
 *                           dst[i] = src[0][i] <step> src[1][i] <step> ... <step> src[n-1][i],
 *                           folded left to right (the same roundings as n-1 binary steps)
 *   tutti_avg_<dtype>       buf[i] = buf[i] / world_size           (the final pass of Avg)
 *   tutti_scale_<dtype>     buf[i] = buf[i] * scalar               (the final pass of PreMulSum)
 *
 *   <dtype>: i8 u8 i32 u32 i64 u64 f16 bf16 f32 f64 f8e4m3 f8e5m2 c64 c128
 *            (DataType::short_name in src/dtype.rs; enum tutti_dtype below holds the
 *            stable discriminants)
 *   <step>:  sum prod min max band bor bxor (StepOp::name in src/op.rs; enum
 *            tutti_step below)
 *
 *   Only valid pairs exist (StepOp::supports): integers x {sum, prod, min, max, band,
 *   bor, bxor}; f16 bf16 f32 f64 f8e4m3 f8e5m2 x {sum, prod, min, max}; c64 c128 x
 *   {sum, prod}. tutti_avg_* exists for all 14 dtypes; tutti_scale_* for the six
 *   real float types and the two complex types; tutti_fold_* exists for every valid
 *   (step, dtype) pair, like the binary steps. 162 entry points in all.
 *
 * PARAMETERS
 *   dst, a, b, buf    device pointers to `count` elements of the dtype. `dst` may equal
 *                     `a` (in place: a op= b) or `b`; otherwise the three ranges must
 *                     not overlap.
 *   srcs              (fold) up to TUTTI_FOLD_MAX source pointers and their number n,
 *                     1 <= n <= TUTTI_FOLD_MAX, passed by value. `dst` may equal
 *                     src[0] (to continue a fold over more than TUTTI_FOLD_MAX sources:
 *                     fold the first ones into dst, then dst and the next ones); no other
 *                     source may overlap `dst`. Sources may overlap each other.
 *   count             number of elements (not bytes). 0 is allowed (nothing happens).
 *   world_size        the number of ranks whose values were summed; must be >= 1.
 *   scalar            the PreMulSum scalar, finite. Applied as (float)scalar for f32,
 *                     f16, bf16, fp8 and c64, as double for f64 and c128.
 *
 * LAUNCH CONFIGURATION
 *   Any 1-D grid and any block size up to 1024 threads (the kernels are declared with
 *   __launch_bounds__(1024)); no shared memory; every kernel is a grid-stride loop, so
 *   correctness never depends on the grid size. For bandwidth tutti launches 256
 *   threads per block and min(ceil(bytes / (16 * 4 * 256)), 8 * SM count) blocks:
 *   each thread moves up to four 16-byte vectors per iteration.
 *
 * ALIGNMENT
 *   Any byte alignment is accepted:
 *   - when all pointers have the same offset modulo 16 and that offset is a multiple
 *     of the element size, the leading elements up to the first 16-byte boundary are
 *     done one by one, then 16-byte vector loads and stores (uint4) are used, and the
 *     tail is done one by one (16-byte aligned pointers are the common case);
 *   - else, when every pointer is aligned to the element's alignment, element by
 *     element;
 *   - else byte by byte (slow, but correct).
 *
 * NUMERICS (the same rules as the CPU kernels, src/op.rs; results are bit-identical
 * to tutti::cpu, NaN payloads excepted)
 *   - integers wrap (two's complement); min/max are the usual order;
 *   - integer avg: the exact quotient truncated toward zero (signed: of the magnitude);
 *   - f32 and f64 combine with IEEE round-to-nearest-even, no FMA contraction, no
 *     flush-to-zero; min/max propagate NaN (result: the canonical quiet NaN
 *     0x7fc00000 / 0x7ff8000000000000) and keep `a` on ties (so min(+0, -0) = +0);
 *   - f16, bf16 and fp8 widen both operands to f32, combine in f32, and round back to
 *     nearest even (fp8 overflow as in torch: f8e4m3 -> NaN above 464, f8e5m2 -> inf
 *     from 61440); avg and scale also run in f32;
 *   - c64/c128: sum, avg and scale act on each part; prod is
 *     (a.re*b.re - a.im*b.im, a.re*b.im + a.im*b.re), each product rounded.
 *
 * ELEMENT LAYOUT
 *   f16/bf16 are 16-bit patterns, fp8 8-bit patterns (OCP E4M3FN / E5M2), c64 is
 *   {float re, im}, c128 is {double re, im} (num_complex::Complex layout).
 */
#ifndef TUTTI_KERNELS_H
#define TUTTI_KERNELS_H

/* Version of this ABI; bumped on any incompatible change of names or parameters. */
#define TUTTI_KERNELS_ABI_VERSION 1

/* Data type discriminants (DataType in src/dtype.rs). */
enum tutti_dtype {
    TUTTI_I8 = 0,
    TUTTI_U8 = 1,
    TUTTI_I32 = 2,
    TUTTI_U32 = 3,
    TUTTI_I64 = 4,
    TUTTI_U64 = 5,
    TUTTI_F16 = 6,
    TUTTI_BF16 = 7,
    TUTTI_F32 = 8,
    TUTTI_F64 = 9,
    TUTTI_F8E4M3 = 10,
    TUTTI_F8E5M2 = 11,
    TUTTI_C64 = 12,
    TUTTI_C128 = 13
};

/* Step op discriminants (StepOp in src/op.rs). */
enum tutti_step {
    TUTTI_SUM = 0,
    TUTTI_PROD = 1,
    TUTTI_MIN = 2,
    TUTTI_MAX = 3,
    TUTTI_BAND = 4,
    TUTTI_BOR = 5,
    TUTTI_BXOR = 6
};

/* The sources of a fold, passed by value (72 bytes). */
#define TUTTI_FOLD_MAX 8
struct tutti_fold_srcs {
    const void* src[TUTTI_FOLD_MAX];
    unsigned long long n;
};

/* Prototypes, for CUDA translation units (nvcc or NVRTC). Host code loads the kernels
 * by name with cuModuleGetFunction and passes the parameters listed here. */
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

#define TUTTI_KERNEL extern "C" __global__ void __launch_bounds__(1024)

/* i8 */
TUTTI_KERNEL tutti_sum_i8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_i8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_min_i8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_max_i8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_band_i8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_bor_i8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_bxor_i8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_i8(void* buf, unsigned long long count, unsigned long long world_size);

/* u8 */
TUTTI_KERNEL tutti_sum_u8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_u8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_min_u8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_max_u8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_band_u8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_bor_u8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_bxor_u8(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_u8(void* buf, unsigned long long count, unsigned long long world_size);

/* i32 */
TUTTI_KERNEL tutti_sum_i32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_i32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_min_i32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_max_i32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_band_i32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_bor_i32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_bxor_i32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_i32(void* buf, unsigned long long count, unsigned long long world_size);

/* u32 */
TUTTI_KERNEL tutti_sum_u32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_u32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_min_u32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_max_u32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_band_u32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_bor_u32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_bxor_u32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_u32(void* buf, unsigned long long count, unsigned long long world_size);

/* i64 */
TUTTI_KERNEL tutti_sum_i64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_i64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_min_i64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_max_i64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_band_i64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_bor_i64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_bxor_i64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_i64(void* buf, unsigned long long count, unsigned long long world_size);

/* u64 */
TUTTI_KERNEL tutti_sum_u64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_u64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_min_u64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_max_u64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_band_u64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_bor_u64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_bxor_u64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_u64(void* buf, unsigned long long count, unsigned long long world_size);

/* f16 */
TUTTI_KERNEL tutti_sum_f16(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_f16(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_min_f16(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_max_f16(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_f16(void* buf, unsigned long long count, unsigned long long world_size);
TUTTI_KERNEL tutti_scale_f16(void* buf, unsigned long long count, double scalar);

/* bf16 */
TUTTI_KERNEL tutti_sum_bf16(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_bf16(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_min_bf16(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_max_bf16(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_bf16(void* buf, unsigned long long count, unsigned long long world_size);
TUTTI_KERNEL tutti_scale_bf16(void* buf, unsigned long long count, double scalar);

/* f32 */
TUTTI_KERNEL tutti_sum_f32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_f32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_min_f32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_max_f32(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_f32(void* buf, unsigned long long count, unsigned long long world_size);
TUTTI_KERNEL tutti_scale_f32(void* buf, unsigned long long count, double scalar);

/* f64 */
TUTTI_KERNEL tutti_sum_f64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_f64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_min_f64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_max_f64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_f64(void* buf, unsigned long long count, unsigned long long world_size);
TUTTI_KERNEL tutti_scale_f64(void* buf, unsigned long long count, double scalar);

/* f8e4m3 */
TUTTI_KERNEL tutti_sum_f8e4m3(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_f8e4m3(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_min_f8e4m3(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_max_f8e4m3(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_f8e4m3(void* buf, unsigned long long count, unsigned long long world_size);
TUTTI_KERNEL tutti_scale_f8e4m3(void* buf, unsigned long long count, double scalar);

/* f8e5m2 */
TUTTI_KERNEL tutti_sum_f8e5m2(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_f8e5m2(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_min_f8e5m2(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_max_f8e5m2(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_f8e5m2(void* buf, unsigned long long count, unsigned long long world_size);
TUTTI_KERNEL tutti_scale_f8e5m2(void* buf, unsigned long long count, double scalar);

/* c64 */
TUTTI_KERNEL tutti_sum_c64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_c64(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_c64(void* buf, unsigned long long count, unsigned long long world_size);
TUTTI_KERNEL tutti_scale_c64(void* buf, unsigned long long count, double scalar);

/* c128 */
TUTTI_KERNEL tutti_sum_c128(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_prod_c128(void* dst, const void* a, const void* b, unsigned long long count);
TUTTI_KERNEL tutti_avg_c128(void* buf, unsigned long long count, unsigned long long world_size);
TUTTI_KERNEL tutti_scale_c128(void* buf, unsigned long long count, double scalar);

/* n-source folds (see NAMING and PARAMETERS) */
TUTTI_KERNEL tutti_fold_sum_i8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_i8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_min_i8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_max_i8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_band_i8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_bor_i8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_bxor_i8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_u8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_u8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_min_u8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_max_u8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_band_u8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_bor_u8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_bxor_u8(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_i32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_i32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_min_i32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_max_i32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_band_i32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_bor_i32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_bxor_i32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_u32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_u32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_min_u32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_max_u32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_band_u32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_bor_u32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_bxor_u32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_i64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_i64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_min_i64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_max_i64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_band_i64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_bor_i64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_bxor_i64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_u64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_u64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_min_u64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_max_u64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_band_u64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_bor_u64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_bxor_u64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_f16(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_f16(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_min_f16(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_max_f16(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_bf16(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_bf16(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_min_bf16(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_max_bf16(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_f32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_f32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_min_f32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_max_f32(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_f64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_f64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_min_f64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_max_f64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_f8e4m3(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_f8e4m3(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_min_f8e4m3(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_max_f8e4m3(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_f8e5m2(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_f8e5m2(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_min_f8e5m2(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_max_f8e5m2(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_c64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_c64(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_sum_c128(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
TUTTI_KERNEL tutti_fold_prod_c128(void* dst, struct tutti_fold_srcs srcs, unsigned long long count);
#endif /* __CUDACC__ || __CUDACC_RTC__ */

#endif /* TUTTI_KERNELS_H */
