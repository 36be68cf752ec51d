/*
 * reduce.cu -- tutti's CUDA reduction kernels: one entry point per valid (step, dtype)
 * pair, the n-source fold of each pair (what the collectives' rank-order reduction
 * launches), and the final passes of Avg and PreMulSum. The ABI (names, parameters, launch
 * configuration, alignment, numerics) is documented in tutti_kernels.h.
 *
 * Compiled by nvcc (fatbin) or NVRTC (PTX), with --fmad=false --ftz=false
 * --prec-div=true: the arithmetic below also uses the explicitly rounded intrinsics
 * (__fadd_rn, __fmul_rn, __fdiv_rn, __dadd_rn, ...) so that no contraction or
 * approximation can change a result even under other flags. The CPU kernels
 * (src/cpu/combine.rs, src/cpu/scale.rs) define every result; these must match them
 * bit for bit.
 *
 * No host headers and no CUDA headers: NVRTC compiles this file as is.
 */
#include "tutti_kernels.h"
#include "convert.cuh"

typedef unsigned long long tt_u64;
typedef long long tt_i64;

/* Element types. The narrow floats are bit patterns; complex is (re, im). */
struct tt_f16 { unsigned short bits; };
struct tt_bf16 { unsigned short bits; };
struct tt_e4m3 { unsigned char bits; };
struct tt_e5m2 { unsigned char bits; };
struct tt_c64 { float re, im; };
struct tt_c128 { double re, im; };

/* ---------------------------------------------------------------- integers -------- */

/* Sum and Prod wrap: computed in the unsigned type U of the same width (signed
 * overflow is undefined in C++), then converted back (modular). */
#define TT_INT_OPS(T, U)                                                                  \
    __device__ __forceinline__ T tt_sum(T a, T b) { return (T)(U)((U)a + (U)b); }         \
    __device__ __forceinline__ T tt_prod(T a, T b) { return (T)(U)((U)a * (U)b); }        \
    __device__ __forceinline__ T tt_min(T a, T b) { return b < a ? b : a; }               \
    __device__ __forceinline__ T tt_max(T a, T b) { return b > a ? b : a; }               \
    __device__ __forceinline__ T tt_band(T a, T b) { return (T)(a & b); }                 \
    __device__ __forceinline__ T tt_bor(T a, T b) { return (T)(a | b); }                  \
    __device__ __forceinline__ T tt_bxor(T a, T b) { return (T)(a ^ b); }

TT_INT_OPS(signed char, unsigned char)
TT_INT_OPS(unsigned char, unsigned char)
TT_INT_OPS(int, unsigned int)
TT_INT_OPS(unsigned int, unsigned int)
TT_INT_OPS(long long, unsigned long long)
TT_INT_OPS(unsigned long long, unsigned long long)

/* Avg: exact truncating division. Signed values divide their magnitude (which fits the
 * unsigned type even for the minimum value) and restore the sign, so any world size up
 * to 2^64 - 1 is exact. 32-bit division when both operands fit (cheaper on the GPU). */
__device__ __forceinline__ tt_u64 tt_udiv(tt_u64 x, tt_u64 n) {
    if (((x | n) >> 32) == 0) {
        return (tt_u64)((unsigned int)x / (unsigned int)n);
    }
    return x / n;
}

__device__ __forceinline__ tt_i64 tt_sdiv(tt_i64 x, tt_u64 n) {
    const bool neg = x < 0;
    const tt_u64 mag = neg ? 0ull - (tt_u64)x : (tt_u64)x;
    const tt_u64 q = tt_udiv(mag, n);
    return (tt_i64)(neg ? 0ull - q : q);
}


/* ---------------------------------------------------------------- f32, f64 -------- */

__device__ __forceinline__ bool tt_isnan(float x) { return x != x; }
__device__ __forceinline__ bool tt_isnan(double x) { return x != x; }

/* Rust's f32::NAN and f64::NAN. */
__device__ __forceinline__ float tt_nan_f32() { return __uint_as_float(0x7fc00000u); }
__device__ __forceinline__ double tt_nan_f64() { return __longlong_as_double(0x7ff8000000000000ll); }

__device__ __forceinline__ float tt_sum(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float tt_prod(float a, float b) { return __fmul_rn(a, b); }
/* NaN-propagating; keeps a on ties (so min(+0, -0) = +0, as the CPU kernel). */
__device__ __forceinline__ float tt_min(float a, float b) {
    const float m = b < a ? b : a;
    return (tt_isnan(a) || tt_isnan(b)) ? tt_nan_f32() : m;
}
__device__ __forceinline__ float tt_max(float a, float b) {
    const float m = b > a ? b : a;
    return (tt_isnan(a) || tt_isnan(b)) ? tt_nan_f32() : m;
}

__device__ __forceinline__ double tt_sum(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double tt_prod(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double tt_min(double a, double b) {
    const double m = b < a ? b : a;
    return (tt_isnan(a) || tt_isnan(b)) ? tt_nan_f64() : m;
}
__device__ __forceinline__ double tt_max(double a, double b) {
    const double m = b > a ? b : a;
    return (tt_isnan(a) || tt_isnan(b)) ? tt_nan_f64() : m;
}

/* The final passes' parameters, converted once per thread: Avg divides by (float)n
 * or (double)n (Rust: n as f32, n as f64, both round to nearest), Scale multiplies by
 * (float)s or s. */
struct TtDiv {
    tt_u64 n;
    float nf;
    double nd;
};
struct TtMul {
    float sf;
    double sd;
};

__device__ __forceinline__ float tt_avg(float x, TtDiv d) { return __fdiv_rn(x, d.nf); }
__device__ __forceinline__ double tt_avg(double x, TtDiv d) { return __ddiv_rn(x, d.nd); }
__device__ __forceinline__ float tt_scale(float x, TtMul m) { return __fmul_rn(x, m.sf); }
__device__ __forceinline__ double tt_scale(double x, TtMul m) { return __dmul_rn(x, m.sd); }

__device__ __forceinline__ signed char tt_avg(signed char x, TtDiv d) { return (signed char)tt_sdiv(x, d.n); }
__device__ __forceinline__ unsigned char tt_avg(unsigned char x, TtDiv d) { return (unsigned char)tt_udiv(x, d.n); }
__device__ __forceinline__ int tt_avg(int x, TtDiv d) { return (int)tt_sdiv(x, d.n); }
__device__ __forceinline__ unsigned int tt_avg(unsigned int x, TtDiv d) { return (unsigned int)tt_udiv(x, d.n); }
__device__ __forceinline__ long long tt_avg(long long x, TtDiv d) { return tt_sdiv(x, d.n); }
__device__ __forceinline__ unsigned long long tt_avg(unsigned long long x, TtDiv d) { return tt_udiv(x, d.n); }

/* ------------------------------------------------------- f16, bf16, fp8 ------------ */

/* Widen both operands to f32, combine in f32, round back to nearest even. */
#define TT_NARROW_OPS(T, TO_F32, FROM_F32)                                                 \
    __device__ __forceinline__ float tt_widen(T x) { return TO_F32(x.bits); }             \
    __device__ __forceinline__ T tt_narrow(float v, T) {                                   \
        T r;                                                                               \
        r.bits = FROM_F32(v);                                                              \
        return r;                                                                          \
    }                                                                                      \
    __device__ __forceinline__ T tt_sum(T a, T b) {                                        \
        return tt_narrow(tt_sum(tt_widen(a), tt_widen(b)), a);                             \
    }                                                                                      \
    __device__ __forceinline__ T tt_prod(T a, T b) {                                       \
        return tt_narrow(tt_prod(tt_widen(a), tt_widen(b)), a);                            \
    }                                                                                      \
    __device__ __forceinline__ T tt_min(T a, T b) {                                        \
        return tt_narrow(tt_min(tt_widen(a), tt_widen(b)), a);                             \
    }                                                                                      \
    __device__ __forceinline__ T tt_max(T a, T b) {                                        \
        return tt_narrow(tt_max(tt_widen(a), tt_widen(b)), a);                             \
    }                                                                                      \
    __device__ __forceinline__ T tt_avg(T x, TtDiv d) {                                    \
        return tt_narrow(tt_avg(tt_widen(x), d), x);                                       \
    }                                                                                      \
    __device__ __forceinline__ T tt_scale(T x, TtMul m) {                                  \
        return tt_narrow(tt_scale(tt_widen(x), m), x);                                     \
    }

TT_NARROW_OPS(tt_f16, tt_f16_to_f32, tt_f32_to_f16)
TT_NARROW_OPS(tt_bf16, tt_bf16_to_f32, tt_f32_to_bf16)
TT_NARROW_OPS(tt_e4m3, tt_e4m3_to_f32, tt_f32_to_e4m3)
TT_NARROW_OPS(tt_e5m2, tt_e5m2_to_f32, tt_f32_to_e5m2)

/* ---------------------------------------------------------------- complex --------- */

#define TT_COMPLEX_OPS(C, R, ADD, SUB, MUL)                                                \
    __device__ __forceinline__ C tt_make(R re, R im, C) {                                  \
        C r;                                                                               \
        r.re = re;                                                                         \
        r.im = im;                                                                         \
        return r;                                                                          \
    }                                                                                      \
    __device__ __forceinline__ C tt_sum(C a, C b) {                                        \
        return tt_make(ADD(a.re, b.re), ADD(a.im, b.im), a);                               \
    }                                                                                      \
    /* (a.re*b.re - a.im*b.im) + (a.re*b.im + a.im*b.re)i, every product rounded. */       \
    __device__ __forceinline__ C tt_prod(C a, C b) {                                       \
        return tt_make(SUB(MUL(a.re, b.re), MUL(a.im, b.im)),                              \
                       ADD(MUL(a.re, b.im), MUL(a.im, b.re)), a);                          \
    }

TT_COMPLEX_OPS(tt_c64, float, __fadd_rn, __fsub_rn, __fmul_rn)
TT_COMPLEX_OPS(tt_c128, double, __dadd_rn, __dsub_rn, __dmul_rn)

/* ---------------------------------------------------------------- functors -------- */

struct TtSum { template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return tt_sum(a, b); } };
struct TtProd { template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return tt_prod(a, b); } };
struct TtMin { template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return tt_min(a, b); } };
struct TtMax { template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return tt_max(a, b); } };
struct TtBAnd { template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return tt_band(a, b); } };
struct TtBOr { template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return tt_bor(a, b); } };
struct TtBXor { template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return tt_bxor(a, b); } };

struct TtAvg {
    TtDiv d;
    template <class T> __device__ __forceinline__ T operator()(T x) const { return tt_avg(x, d); }
};
struct TtScale {
    TtMul m;
    template <class T> __device__ __forceinline__ T operator()(T x) const { return tt_scale(x, m); }
};

/* ---------------------------------------------------------------- loops ----------- */

/* Vectors per thread per grid-stride iteration (loads in flight). */
#define TT_UNROLL 4

template <class T> union TtVec {
    uint4 v;
    T e[16 / sizeof(T)];
};

template <class T> __device__ __forceinline__ T tt_load_bytes(const unsigned char* p) {
    union {
        T t;
        unsigned char c[sizeof(T)];
    } u;
#pragma unroll
    for (unsigned int k = 0; k < sizeof(T); ++k) u.c[k] = p[k];
    return u.t;
}

template <class T> __device__ __forceinline__ void tt_store_bytes(unsigned char* p, T t) {
    union {
        T t;
        unsigned char c[sizeof(T)];
    } u;
    u.t = t;
#pragma unroll
    for (unsigned int k = 0; k < sizeof(T); ++k) p[k] = u.c[k];
}

__device__ __forceinline__ tt_u64 tt_thread() { return (tt_u64)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ tt_u64 tt_threads() { return (tt_u64)gridDim.x * blockDim.x; }

/* dst[i] = op(a[i], b[i]) for i < count. */
template <class T, class Op>
__device__ __forceinline__ void tt_binary(void* dst_, const void* a_, const void* b_, tt_u64 count, Op op) {
    const tt_u64 N = 16 / sizeof(T);
    const tt_u64 tid = tt_thread();
    const tt_u64 nthreads = tt_threads();
    const tt_u64 pd = (tt_u64)dst_, pa = (tt_u64)a_, pb = (tt_u64)b_;
    const tt_u64 mis = pd & 15;
    if ((pa & 15) == mis && (pb & 15) == mis && mis % sizeof(T) == 0) {
        T* d = (T*)dst_;
        const T* a = (const T*)a_;
        const T* b = (const T*)b_;
        tt_u64 head = ((16 - mis) & 15) / sizeof(T);
        if (head > count) head = count;
        for (tt_u64 i = tid; i < head; i += nthreads) d[i] = op(a[i], b[i]);
        const tt_u64 nvec = (count - head) / N;
        uint4* dv = (uint4*)(d + head);
        const uint4* av = (const uint4*)(a + head);
        const uint4* bv = (const uint4*)(b + head);
        for (tt_u64 v0 = tid; v0 < nvec; v0 += nthreads * TT_UNROLL) {
            TtVec<T> x[TT_UNROLL], y[TT_UNROLL];
#pragma unroll
            for (int u = 0; u < TT_UNROLL; ++u) {
                const tt_u64 v = v0 + (tt_u64)u * nthreads;
                if (v < nvec) {
                    x[u].v = av[v];
                    y[u].v = bv[v];
                }
            }
#pragma unroll
            for (int u = 0; u < TT_UNROLL; ++u) {
                const tt_u64 v = v0 + (tt_u64)u * nthreads;
                if (v < nvec) {
#pragma unroll
                    for (tt_u64 k = 0; k < N; ++k) x[u].e[k] = op(x[u].e[k], y[u].e[k]);
                    dv[v] = x[u].v;
                }
            }
        }
        for (tt_u64 i = head + nvec * N + tid; i < count; i += nthreads) d[i] = op(a[i], b[i]);
        return;
    }
    if (((pd | pa | pb) % __alignof__(T)) == 0) {
        T* d = (T*)dst_;
        const T* a = (const T*)a_;
        const T* b = (const T*)b_;
        for (tt_u64 i = tid; i < count; i += nthreads) d[i] = op(a[i], b[i]);
        return;
    }
    unsigned char* d = (unsigned char*)dst_;
    const unsigned char* a = (const unsigned char*)a_;
    const unsigned char* b = (const unsigned char*)b_;
    for (tt_u64 i = tid; i < count; i += nthreads) {
        const tt_u64 o = i * sizeof(T);
        tt_store_bytes<T>(d + o, op(tt_load_bytes<T>(a + o), tt_load_bytes<T>(b + o)));
    }
}

/* buf[i] = f(buf[i]) for i < count. */
template <class T, class F>
__device__ __forceinline__ void tt_unary(void* buf_, tt_u64 count, F f) {
    const tt_u64 N = 16 / sizeof(T);
    const tt_u64 tid = tt_thread();
    const tt_u64 nthreads = tt_threads();
    const tt_u64 p = (tt_u64)buf_;
    const tt_u64 mis = p & 15;
    if (mis % sizeof(T) == 0) {
        T* d = (T*)buf_;
        tt_u64 head = ((16 - mis) & 15) / sizeof(T);
        if (head > count) head = count;
        for (tt_u64 i = tid; i < head; i += nthreads) d[i] = f(d[i]);
        const tt_u64 nvec = (count - head) / N;
        uint4* dv = (uint4*)(d + head);
        for (tt_u64 v0 = tid; v0 < nvec; v0 += nthreads * TT_UNROLL) {
            TtVec<T> x[TT_UNROLL];
#pragma unroll
            for (int u = 0; u < TT_UNROLL; ++u) {
                const tt_u64 v = v0 + (tt_u64)u * nthreads;
                if (v < nvec) x[u].v = dv[v];
            }
#pragma unroll
            for (int u = 0; u < TT_UNROLL; ++u) {
                const tt_u64 v = v0 + (tt_u64)u * nthreads;
                if (v < nvec) {
#pragma unroll
                    for (tt_u64 k = 0; k < N; ++k) x[u].e[k] = f(x[u].e[k]);
                    dv[v] = x[u].v;
                }
            }
        }
        for (tt_u64 i = head + nvec * N + tid; i < count; i += nthreads) d[i] = f(d[i]);
        return;
    }
    if (p % __alignof__(T) == 0) {
        T* d = (T*)buf_;
        for (tt_u64 i = tid; i < count; i += nthreads) d[i] = f(d[i]);
        return;
    }
    unsigned char* d = (unsigned char*)buf_;
    for (tt_u64 i = tid; i < count; i += nthreads) {
        const tt_u64 o = i * sizeof(T);
        tt_store_bytes<T>(d + o, f(tt_load_bytes<T>(d + o)));
    }
}

/* dst[i] = src[0][i] op src[1][i] op ... op src[n-1][i] for i < count, folded left to
 * right (each step rounds exactly as the binary kernels and the CPU fold do). Source
 * indices are compile-time constants (unrolled loops guarded by k < n), so the
 * parameter struct is never indexed at run time (no local-memory copy). */
template <class T, class Op>
__device__ __forceinline__ T tt_fold_at(const tutti_fold_srcs& s, unsigned int n, tt_u64 i, Op op) {
    T acc = ((const T*)s.src[0])[i];
#pragma unroll
    for (unsigned int k = 1; k < TUTTI_FOLD_MAX; ++k) {
        if (k < n) acc = op(acc, ((const T*)s.src[k])[i]);
    }
    return acc;
}

template <class T, class Op>
__device__ __forceinline__ T tt_fold_bytes_at(const tutti_fold_srcs& s, unsigned int n, tt_u64 o, Op op) {
    T acc = tt_load_bytes<T>((const unsigned char*)s.src[0] + o);
#pragma unroll
    for (unsigned int k = 1; k < TUTTI_FOLD_MAX; ++k) {
        if (k < n) acc = op(acc, tt_load_bytes<T>((const unsigned char*)s.src[k] + o));
    }
    return acc;
}

template <class T, class Op>
__device__ __forceinline__ void tt_fold(void* dst_, const tutti_fold_srcs& s, tt_u64 count, Op op) {
    const tt_u64 N = 16 / sizeof(T);
    /* Vectors in flight per thread: 16 one-byte floats per vector make the fp8
     * conversions long, so they keep two (no register spills). */
    const int U = sizeof(T) == 1 ? 2 : TT_UNROLL;
    const tt_u64 tid = tt_thread();
    const tt_u64 nthreads = tt_threads();
    unsigned int n = (unsigned int)s.n;
    if (n < 1) n = 1;
    if (n > TUTTI_FOLD_MAX) n = TUTTI_FOLD_MAX;
    const tt_u64 pd = (tt_u64)dst_;
    const tt_u64 mis = pd & 15;
    bool same = mis % sizeof(T) == 0;
    tt_u64 any = pd;
#pragma unroll
    for (unsigned int k = 0; k < TUTTI_FOLD_MAX; ++k) {
        if (k < n) {
            const tt_u64 p = (tt_u64)s.src[k];
            same = same && (p & 15) == mis;
            any |= p;
        }
    }
    if (same) {
        T* d = (T*)dst_;
        tt_u64 head = ((16 - mis) & 15) / sizeof(T);
        if (head > count) head = count;
        for (tt_u64 i = tid; i < head; i += nthreads) d[i] = tt_fold_at<T>(s, n, i, op);
        const tt_u64 nvec = (count - head) / N;
        uint4* dv = (uint4*)(d + head);
        for (tt_u64 v0 = tid; v0 < nvec; v0 += nthreads * U) {
            TtVec<T> x[U];
            const uint4* s0 = (const uint4*)((const T*)s.src[0] + head);
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const tt_u64 v = v0 + (tt_u64)u * nthreads;
                if (v < nvec) x[u].v = s0[v];
            }
#pragma unroll
            for (unsigned int k = 1; k < TUTTI_FOLD_MAX; ++k) {
                if (k < n) {
                    const uint4* sk = (const uint4*)((const T*)s.src[k] + head);
                    TtVec<T> y[U];
#pragma unroll
                    for (int u = 0; u < U; ++u) {
                        const tt_u64 v = v0 + (tt_u64)u * nthreads;
                        if (v < nvec) y[u].v = sk[v];
                    }
#pragma unroll
                    for (int u = 0; u < U; ++u) {
#pragma unroll
                        for (tt_u64 e = 0; e < N; ++e) x[u].e[e] = op(x[u].e[e], y[u].e[e]);
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const tt_u64 v = v0 + (tt_u64)u * nthreads;
                if (v < nvec) dv[v] = x[u].v;
            }
        }
        for (tt_u64 i = head + nvec * N + tid; i < count; i += nthreads) d[i] = tt_fold_at<T>(s, n, i, op);
        return;
    }
    if (any % __alignof__(T) == 0) {
        T* d = (T*)dst_;
        for (tt_u64 i = tid; i < count; i += nthreads) d[i] = tt_fold_at<T>(s, n, i, op);
        return;
    }
    unsigned char* d = (unsigned char*)dst_;
    for (tt_u64 i = tid; i < count; i += nthreads) {
        const tt_u64 o = i * sizeof(T);
        tt_store_bytes<T>(d + o, tt_fold_bytes_at<T>(s, n, o, op));
    }
}

/* ---------------------------------------------------------------- entry points ---- */

#define TT_STEP(NAME, OP, T)                                                               \
    TUTTI_KERNEL NAME(void* dst, const void* a, const void* b, unsigned long long count) {  \
        tt_binary<T>(dst, a, b, count, OP());                                              \
    }

#define TT_FOLD(NAME, OP, T)                                                               \
    TUTTI_KERNEL NAME(void* dst, struct tutti_fold_srcs srcs, unsigned long long count) {   \
        tt_fold<T>(dst, srcs, count, OP());                                                \
    }

#define TT_AVG(NAME, T)                                                                    \
    TUTTI_KERNEL NAME(void* buf, unsigned long long count, unsigned long long world_size) { \
        TtAvg f;                                                                           \
        f.d.n = world_size;                                                                \
        f.d.nf = (float)world_size;                                                        \
        f.d.nd = (double)world_size;                                                       \
        tt_unary<T>(buf, count, f);                                                        \
    }

#define TT_SCALE(NAME, T)                                                                  \
    TUTTI_KERNEL NAME(void* buf, unsigned long long count, double scalar) {                 \
        TtScale f;                                                                         \
        f.m.sf = (float)scalar;                                                            \
        f.m.sd = scalar;                                                                   \
        tt_unary<T>(buf, count, f);                                                        \
    }

/* Complex avg and scale act on each part: the buffer is 2 * count reals of type R. */
#define TT_COMPLEX_AVG(NAME, R)                                                            \
    TUTTI_KERNEL NAME(void* buf, unsigned long long count, unsigned long long world_size) { \
        TtAvg f;                                                                           \
        f.d.n = world_size;                                                                \
        f.d.nf = (float)world_size;                                                        \
        f.d.nd = (double)world_size;                                                       \
        tt_unary<R>(buf, 2 * count, f);                                                    \
    }

#define TT_COMPLEX_SCALE(NAME, R)                                                          \
    TUTTI_KERNEL NAME(void* buf, unsigned long long count, double scalar) {                 \
        TtScale f;                                                                         \
        f.m.sf = (float)scalar;                                                            \
        f.m.sd = scalar;                                                                   \
        tt_unary<R>(buf, 2 * count, f);                                                    \
    }

/* Integers: every step. */
#define TT_INT_KERNELS(SUM, PROD, MIN, MAX, BAND, BOR, BXOR, AVG, T)                       \
    TT_STEP(SUM, TtSum, T)                                                                 \
    TT_STEP(PROD, TtProd, T)                                                               \
    TT_STEP(MIN, TtMin, T)                                                                 \
    TT_STEP(MAX, TtMax, T)                                                                 \
    TT_STEP(BAND, TtBAnd, T)                                                               \
    TT_STEP(BOR, TtBOr, T)                                                                 \
    TT_STEP(BXOR, TtBXor, T)                                                               \
    TT_AVG(AVG, T)

/* The folds of one dtype (names spelled out, as above, so that grep finds them). */
#define TT_INT_FOLDS(SUM, PROD, MIN, MAX, BAND, BOR, BXOR, T)                              \
    TT_FOLD(SUM, TtSum, T)                                                                 \
    TT_FOLD(PROD, TtProd, T)                                                               \
    TT_FOLD(MIN, TtMin, T)                                                                 \
    TT_FOLD(MAX, TtMax, T)                                                                 \
    TT_FOLD(BAND, TtBAnd, T)                                                               \
    TT_FOLD(BOR, TtBOr, T)                                                                 \
    TT_FOLD(BXOR, TtBXor, T)

#define TT_FLOAT_FOLDS(SUM, PROD, MIN, MAX, T)                                             \
    TT_FOLD(SUM, TtSum, T)                                                                 \
    TT_FOLD(PROD, TtProd, T)                                                               \
    TT_FOLD(MIN, TtMin, T)                                                                 \
    TT_FOLD(MAX, TtMax, T)

#define TT_COMPLEX_FOLDS(SUM, PROD, T)                                                     \
    TT_FOLD(SUM, TtSum, T)                                                                 \
    TT_FOLD(PROD, TtProd, T)

/* Real floats: sum, prod, min, max, avg, scale. */
#define TT_FLOAT_KERNELS(SUM, PROD, MIN, MAX, AVG, SCALE, T)                               \
    TT_STEP(SUM, TtSum, T)                                                                 \
    TT_STEP(PROD, TtProd, T)                                                               \
    TT_STEP(MIN, TtMin, T)                                                                 \
    TT_STEP(MAX, TtMax, T)                                                                 \
    TT_AVG(AVG, T)                                                                         \
    TT_SCALE(SCALE, T)

/* Complex: sum, prod, avg, scale (R: the type of one part). */
#define TT_COMPLEX_KERNELS(SUM, PROD, AVG, SCALE, T, R)                                    \
    TT_STEP(SUM, TtSum, T)                                                                 \
    TT_STEP(PROD, TtProd, T)                                                               \
    TT_COMPLEX_AVG(AVG, R)                                                                 \
    TT_COMPLEX_SCALE(SCALE, R)

TT_INT_KERNELS(tutti_sum_i8, tutti_prod_i8, tutti_min_i8, tutti_max_i8, tutti_band_i8, tutti_bor_i8, tutti_bxor_i8, tutti_avg_i8, signed char)
TT_INT_KERNELS(tutti_sum_u8, tutti_prod_u8, tutti_min_u8, tutti_max_u8, tutti_band_u8, tutti_bor_u8, tutti_bxor_u8, tutti_avg_u8, unsigned char)
TT_INT_KERNELS(tutti_sum_i32, tutti_prod_i32, tutti_min_i32, tutti_max_i32, tutti_band_i32, tutti_bor_i32, tutti_bxor_i32, tutti_avg_i32, int)
TT_INT_KERNELS(tutti_sum_u32, tutti_prod_u32, tutti_min_u32, tutti_max_u32, tutti_band_u32, tutti_bor_u32, tutti_bxor_u32, tutti_avg_u32, unsigned int)
TT_INT_KERNELS(tutti_sum_i64, tutti_prod_i64, tutti_min_i64, tutti_max_i64, tutti_band_i64, tutti_bor_i64, tutti_bxor_i64, tutti_avg_i64, long long)
TT_INT_KERNELS(tutti_sum_u64, tutti_prod_u64, tutti_min_u64, tutti_max_u64, tutti_band_u64, tutti_bor_u64, tutti_bxor_u64, tutti_avg_u64, unsigned long long)

TT_FLOAT_KERNELS(tutti_sum_f16, tutti_prod_f16, tutti_min_f16, tutti_max_f16, tutti_avg_f16, tutti_scale_f16, tt_f16)
TT_FLOAT_KERNELS(tutti_sum_bf16, tutti_prod_bf16, tutti_min_bf16, tutti_max_bf16, tutti_avg_bf16, tutti_scale_bf16, tt_bf16)
TT_FLOAT_KERNELS(tutti_sum_f32, tutti_prod_f32, tutti_min_f32, tutti_max_f32, tutti_avg_f32, tutti_scale_f32, float)
TT_FLOAT_KERNELS(tutti_sum_f64, tutti_prod_f64, tutti_min_f64, tutti_max_f64, tutti_avg_f64, tutti_scale_f64, double)
TT_FLOAT_KERNELS(tutti_sum_f8e4m3, tutti_prod_f8e4m3, tutti_min_f8e4m3, tutti_max_f8e4m3, tutti_avg_f8e4m3, tutti_scale_f8e4m3, tt_e4m3)
TT_FLOAT_KERNELS(tutti_sum_f8e5m2, tutti_prod_f8e5m2, tutti_min_f8e5m2, tutti_max_f8e5m2, tutti_avg_f8e5m2, tutti_scale_f8e5m2, tt_e5m2)

TT_COMPLEX_KERNELS(tutti_sum_c64, tutti_prod_c64, tutti_avg_c64, tutti_scale_c64, tt_c64, float)
TT_COMPLEX_KERNELS(tutti_sum_c128, tutti_prod_c128, tutti_avg_c128, tutti_scale_c128, tt_c128, double)

TT_INT_FOLDS(tutti_fold_sum_i8, tutti_fold_prod_i8, tutti_fold_min_i8, tutti_fold_max_i8, tutti_fold_band_i8, tutti_fold_bor_i8, tutti_fold_bxor_i8, signed char)
TT_INT_FOLDS(tutti_fold_sum_u8, tutti_fold_prod_u8, tutti_fold_min_u8, tutti_fold_max_u8, tutti_fold_band_u8, tutti_fold_bor_u8, tutti_fold_bxor_u8, unsigned char)
TT_INT_FOLDS(tutti_fold_sum_i32, tutti_fold_prod_i32, tutti_fold_min_i32, tutti_fold_max_i32, tutti_fold_band_i32, tutti_fold_bor_i32, tutti_fold_bxor_i32, int)
TT_INT_FOLDS(tutti_fold_sum_u32, tutti_fold_prod_u32, tutti_fold_min_u32, tutti_fold_max_u32, tutti_fold_band_u32, tutti_fold_bor_u32, tutti_fold_bxor_u32, unsigned int)
TT_INT_FOLDS(tutti_fold_sum_i64, tutti_fold_prod_i64, tutti_fold_min_i64, tutti_fold_max_i64, tutti_fold_band_i64, tutti_fold_bor_i64, tutti_fold_bxor_i64, long long)
TT_INT_FOLDS(tutti_fold_sum_u64, tutti_fold_prod_u64, tutti_fold_min_u64, tutti_fold_max_u64, tutti_fold_band_u64, tutti_fold_bor_u64, tutti_fold_bxor_u64, unsigned long long)
TT_FLOAT_FOLDS(tutti_fold_sum_f16, tutti_fold_prod_f16, tutti_fold_min_f16, tutti_fold_max_f16, tt_f16)
TT_FLOAT_FOLDS(tutti_fold_sum_bf16, tutti_fold_prod_bf16, tutti_fold_min_bf16, tutti_fold_max_bf16, tt_bf16)
TT_FLOAT_FOLDS(tutti_fold_sum_f32, tutti_fold_prod_f32, tutti_fold_min_f32, tutti_fold_max_f32, float)
TT_FLOAT_FOLDS(tutti_fold_sum_f64, tutti_fold_prod_f64, tutti_fold_min_f64, tutti_fold_max_f64, double)
TT_FLOAT_FOLDS(tutti_fold_sum_f8e4m3, tutti_fold_prod_f8e4m3, tutti_fold_min_f8e4m3, tutti_fold_max_f8e4m3, tt_e4m3)
TT_FLOAT_FOLDS(tutti_fold_sum_f8e5m2, tutti_fold_prod_f8e5m2, tutti_fold_min_f8e5m2, tutti_fold_max_f8e5m2, tt_e5m2)
TT_COMPLEX_FOLDS(tutti_fold_sum_c64, tutti_fold_prod_c64, tt_c64)
TT_COMPLEX_FOLDS(tutti_fold_sum_c128, tutti_fold_prod_c128, tt_c128)
