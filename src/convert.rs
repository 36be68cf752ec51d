//! Bit-exact conversions between f32 and the narrow float formats (f16, bf16, fp8).
//!
//! All conversions to a narrow format round to nearest, ties to even. They are written
//! without data-dependent branches (every candidate is computed, then one is
//! selected) so that loops calling them vectorize. The CUDA kernels implement the
//! same functions (`kernels/convert.cuh`); any change here must be made there too.
//!
//! NaN payloads are not preserved: a NaN becomes the format's quiet NaN with the
//! input's sign.

/// f16 bits -> f32 (exact).
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let shifted_exp: u32 = 0x7c00 << 13;
    let magic = f32::from_bits(113 << 23);
    let mut o = (h & 0x7fff) << 13;
    let exp = shifted_exp & o;
    o = o.wrapping_add((127 - 15) << 23);
    let inf_nan = o.wrapping_add((128 - 16) << 23);
    let subnormal = (f32::from_bits(o.wrapping_add(1 << 23)) - magic).to_bits();
    let o = if exp == shifted_exp {
        inf_nan
    } else if exp == 0 {
        subnormal
    } else {
        o
    };
    f32::from_bits(o | ((h & 0x8000) << 16))
}

/// f32 -> f16 bits, round to nearest even; overflow gives infinity, NaN gives 0x7e00.
#[inline(always)]
pub(crate) fn f32_to_f16(f: f32) -> u16 {
    const F32_INF: u32 = 255 << 23;
    const F16_MAX: u32 = (127 + 16) << 23;
    const DENORM_MAGIC: u32 = ((127 - 15) + (23 - 10) + 1) << 23;
    let bits = f.to_bits();
    let sign = bits & 0x8000_0000;
    let u = bits ^ sign;
    let big = if u > F32_INF { 0x7e00 } else { 0x7c00 };
    let sub = (f32::from_bits(u) + f32::from_bits(DENORM_MAGIC))
        .to_bits()
        .wrapping_sub(DENORM_MAGIC);
    let mant_odd = (u >> 13) & 1;
    let normal = u
        .wrapping_add(((15i32 - 127) << 23) as u32)
        .wrapping_add(0xfff)
        .wrapping_add(mant_odd)
        >> 13;
    let o = if u >= F16_MAX {
        big
    } else if u < (113 << 23) {
        sub
    } else {
        normal
    };
    (o | (sign >> 16)) as u16
}

/// bf16 bits -> f32 (exact).
#[inline(always)]
pub(crate) fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// f32 -> bf16 bits, round to nearest even; NaN stays NaN (quieted).
#[inline(always)]
pub(crate) fn f32_to_bf16(f: f32) -> u16 {
    let u = f.to_bits();
    let rounded = u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16;
    let nan = (u >> 16) | 0x40;
    let is_nan = (u & 0x7fff_ffff) > 0x7f80_0000;
    (if is_nan { nan } else { rounded }) as u16
}

/// f8e4m3 (E4M3FN) bits -> f32 (exact). 0x7f and 0xff are NaN; there is no infinity.
#[inline(always)]
pub(crate) fn e4m3_to_f32(b: u8) -> f32 {
    let b = u32::from(b);
    let sign = (b & 0x80) << 24;
    let exp = (b >> 3) & 0xf;
    let mant = b & 0x7;
    let normal = ((exp + 120) << 23) | (mant << 20);
    // Subnormal: mant * 2^-9 = 2^-6 * (1 + mant/8) - 2^-6.
    let subnormal = (f32::from_bits((121 << 23) | (mant << 20)) - f32::from_bits(121 << 23)).to_bits();
    let o = if exp == 0xf && mant == 0x7 {
        0x7fc0_0000
    } else if exp == 0 {
        subnormal
    } else {
        normal
    };
    f32::from_bits(o | sign)
}

/// f32 -> f8e4m3 (E4M3FN) bits, round to nearest even, torch's rules: magnitudes
/// above 464 (the midpoint between 448, the largest finite value, and the NaN code),
/// infinities and NaN all give NaN (0x7f with the input's sign).
#[inline(always)]
pub(crate) fn f32_to_e4m3(f: f32) -> u8 {
    const FP8_MAX: u32 = 1087 << 20; // 480.0
    const DENORM_MAGIC: u32 = 141 << 23;
    let bits = f.to_bits();
    let sign = bits & 0x8000_0000;
    let u = bits ^ sign;
    let sub = (f32::from_bits(u) + f32::from_bits(DENORM_MAGIC))
        .to_bits()
        .wrapping_sub(DENORM_MAGIC);
    let mant_odd = (u >> 20) & 1;
    let normal = u
        .wrapping_add(((7i32 - 127) << 23) as u32)
        .wrapping_add(0x7ffff)
        .wrapping_add(mant_odd)
        >> 20;
    let o = if u >= FP8_MAX {
        0x7f
    } else if u < (121 << 23) {
        sub
    } else {
        normal
    };
    ((o & 0xff) | (sign >> 24)) as u8
}

/// f8e5m2 bits -> f32 (exact): an e5m2 value is the top byte of an f16.
#[inline(always)]
pub(crate) fn e5m2_to_f32(b: u8) -> f32 {
    f16_to_f32(u16::from(b) << 8)
}

/// f32 -> f8e5m2 bits, round to nearest even, torch's rules: magnitudes >= 61440
/// give infinity, NaN gives 0x7f with the input's sign.
#[inline(always)]
pub(crate) fn f32_to_e5m2(f: f32) -> u8 {
    const F32_INF: u32 = 255 << 23;
    const FP8_MAX: u32 = 143 << 23; // 65536.0
    const DENORM_MAGIC: u32 = 134 << 23;
    let bits = f.to_bits();
    let sign = bits & 0x8000_0000;
    let u = bits ^ sign;
    let big = if u > F32_INF { 0x7f } else { 0x7c };
    let sub = (f32::from_bits(u) + f32::from_bits(DENORM_MAGIC))
        .to_bits()
        .wrapping_sub(DENORM_MAGIC);
    let mant_odd = (u >> 21) & 1;
    let normal = u
        .wrapping_add(((15i32 - 127) << 23) as u32)
        .wrapping_add(0xfffff)
        .wrapping_add(mant_odd)
        >> 21;
    let o = if u >= FP8_MAX {
        big
    } else if u < (113 << 23) {
        sub
    } else {
        normal
    };
    ((o & 0xff) | (sign >> 24)) as u8
}
