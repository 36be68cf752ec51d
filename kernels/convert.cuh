/*
 * convert.cuh -- device conversions between f32 and the narrow float formats.
 *
 * These are the device twins of src/convert.rs and must give the same bits for every
 * input (NaN: the same class; the quiet NaN codes below are the ones convert.rs
 * produces). Any change in convert.rs must be made here too.
 *
 * - f16 <-> f32 uses the hardware conversions (cvt.f32.f16, cvt.rn.f16.f32): both are
 *   IEEE (exact widening; round to nearest even, overflow to infinity, subnormals
 *   kept), which is what convert.rs computes. A NaN is then rewritten to 0x7e00 with
 *   the input's sign, as convert.rs does.
 * - bf16 and fp8 are the integer algorithms of convert.rs, line by line. The float
 *   additions they contain use __fadd_rn/__fsub_rn (never contracted, never flushed).
 *
 * Header-free on purpose: NVRTC compiles this without cuda_fp16.h / cuda_bf16.h.
 */
#ifndef TUTTI_CONVERT_CUH
#define TUTTI_CONVERT_CUH

__device__ __forceinline__ float tt_f32(unsigned int bits) { return __uint_as_float(bits); }

__device__ __forceinline__ unsigned int tt_bits(float f) { return __float_as_uint(f); }

/* f16 bits -> f32 (exact). */
__device__ __forceinline__ float tt_f16_to_f32(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

/* f32 -> f16 bits, round to nearest even; overflow gives infinity, NaN gives 0x7e00. */
__device__ __forceinline__ unsigned short tt_f32_to_f16(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    const unsigned int bits = tt_bits(f);
    const unsigned int sign = bits & 0x80000000u;
    const unsigned int u = bits ^ sign;
    return u > 0x7f800000u ? (unsigned short)(0x7e00u | (sign >> 16)) : h;
}

/* bf16 bits -> f32 (exact). */
__device__ __forceinline__ float tt_bf16_to_f32(unsigned short h) {
    return tt_f32((unsigned int)h << 16);
}

/* f32 -> bf16 bits, round to nearest even; NaN stays NaN (quieted). */
__device__ __forceinline__ unsigned short tt_f32_to_bf16(float f) {
    const unsigned int u = tt_bits(f);
    const unsigned int rounded = (u + (0x7fffu + ((u >> 16) & 1u))) >> 16;
    const unsigned int nan = (u >> 16) | 0x40u;
    const bool is_nan = (u & 0x7fffffffu) > 0x7f800000u;
    return (unsigned short)(is_nan ? nan : rounded);
}

/* f8e4m3 (E4M3FN) bits -> f32 (exact). 0x7f and 0xff are NaN; there is no infinity. */
__device__ __forceinline__ float tt_e4m3_to_f32(unsigned char v) {
    const unsigned int b = v;
    const unsigned int sign = (b & 0x80u) << 24;
    const unsigned int exp = (b >> 3) & 0xfu;
    const unsigned int mant = b & 0x7u;
    const unsigned int normal = ((exp + 120u) << 23) | (mant << 20);
    /* Subnormal: mant * 2^-9 = 2^-6 * (1 + mant/8) - 2^-6. */
    const unsigned int subnormal =
        tt_bits(__fsub_rn(tt_f32((121u << 23) | (mant << 20)), tt_f32(121u << 23)));
    unsigned int o;
    if (exp == 0xfu && mant == 0x7u) {
        o = 0x7fc00000u;
    } else if (exp == 0u) {
        o = subnormal;
    } else {
        o = normal;
    }
    return tt_f32(o | sign);
}

/* f32 -> f8e4m3 (E4M3FN) bits, round to nearest even, torch's rules: magnitudes above
 * 464, infinities and NaN all give NaN (0x7f with the input's sign). */
__device__ __forceinline__ unsigned char tt_f32_to_e4m3(float f) {
    const unsigned int FP8_MAX = 1087u << 20; /* 480.0 */
    const unsigned int DENORM_MAGIC = 141u << 23;
    const unsigned int bits = tt_bits(f);
    const unsigned int sign = bits & 0x80000000u;
    const unsigned int u = bits ^ sign;
    const unsigned int sub = tt_bits(__fadd_rn(tt_f32(u), tt_f32(DENORM_MAGIC))) - DENORM_MAGIC;
    const unsigned int mant_odd = (u >> 20) & 1u;
    /* (7 - 127) << 23 as u32 */
    const unsigned int normal = (u + (0u - (120u << 23)) + 0x7ffffu + mant_odd) >> 20;
    unsigned int o;
    if (u >= FP8_MAX) {
        o = 0x7fu;
    } else if (u < (121u << 23)) {
        o = sub;
    } else {
        o = normal;
    }
    return (unsigned char)((o & 0xffu) | (sign >> 24));
}

/* f8e5m2 bits -> f32 (exact): an e5m2 value is the top byte of an f16. */
__device__ __forceinline__ float tt_e5m2_to_f32(unsigned char b) {
    return tt_f16_to_f32((unsigned short)((unsigned int)b << 8));
}

/* f32 -> f8e5m2 bits, round to nearest even, torch's rules: magnitudes >= 61440 give
 * infinity, NaN gives 0x7f with the input's sign. */
__device__ __forceinline__ unsigned char tt_f32_to_e5m2(float f) {
    const unsigned int F32_INF = 255u << 23;
    const unsigned int FP8_MAX = 143u << 23; /* 65536.0 */
    const unsigned int DENORM_MAGIC = 134u << 23;
    const unsigned int bits = tt_bits(f);
    const unsigned int sign = bits & 0x80000000u;
    const unsigned int u = bits ^ sign;
    const unsigned int big = u > F32_INF ? 0x7fu : 0x7cu;
    const unsigned int sub = tt_bits(__fadd_rn(tt_f32(u), tt_f32(DENORM_MAGIC))) - DENORM_MAGIC;
    const unsigned int mant_odd = (u >> 21) & 1u;
    /* (15 - 127) << 23 as u32 */
    const unsigned int normal = (u + (0u - (112u << 23)) + 0xfffffu + mant_odd) >> 21;
    unsigned int o;
    if (u >= FP8_MAX) {
        o = big;
    } else if (u < (113u << 23)) {
        o = sub;
    } else {
        o = normal;
    }
    return (unsigned char)((o & 0xffu) | (sign >> 24));
}

#endif /* TUTTI_CONVERT_CUH */
