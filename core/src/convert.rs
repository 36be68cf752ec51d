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
pub fn f16_to_f32(h: u16) -> f32 {
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
pub fn f32_to_f16(f: f32) -> u16 {
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
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// f32 -> bf16 bits, round to nearest even; NaN stays NaN (quieted).
#[inline(always)]
pub fn f32_to_bf16(f: f32) -> u16 {
    let u = f.to_bits();
    let rounded = u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16;
    let nan = (u >> 16) | 0x40;
    let is_nan = (u & 0x7fff_ffff) > 0x7f80_0000;
    (if is_nan { nan } else { rounded }) as u16
}

/// f8e4m3 (E4M3FN) bits -> f32 (exact). 0x7f and 0xff are NaN; there is no infinity.
#[inline(always)]
pub fn e4m3_to_f32(b: u8) -> f32 {
    let b = u32::from(b);
    let sign = (b & 0x80) << 24;
    let exp = (b >> 3) & 0xf;
    let mant = b & 0x7;
    let normal = ((exp + 120) << 23) | (mant << 20);
    // Subnormal: mant * 2^-9 = 2^-6 * (1 + mant/8) - 2^-6.
    let subnormal =
        (f32::from_bits((121 << 23) | (mant << 20)) - f32::from_bits(121 << 23)).to_bits();
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
pub fn f32_to_e4m3(f: f32) -> u8 {
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
pub fn e5m2_to_f32(b: u8) -> f32 {
    f16_to_f32(u16::from(b) << 8)
}

/// f32 -> f8e5m2 bits, round to nearest even, torch's rules: magnitudes >= 61440
/// give infinity, NaN gives 0x7f with the input's sign.
#[inline(always)]
pub fn f32_to_e5m2(f: f32) -> u8 {
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

#[cfg(test)]
mod tests {
    //! Exhaustive checks against the `half` crate (an independent implementation of
    //! the IEEE conversions) and against fp8 values decoded from the format's spec.
    use super::*;
    use half::{bf16, f16};

    fn same(a: f32, b: f32) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
    }

    #[test]
    fn f16_to_f32_matches_half_for_every_bit_pattern() {
        for h in 0..=u16::MAX {
            let want = f16::from_bits(h).to_f32();
            assert!(same(f16_to_f32(h), want), "0x{h:04x}");
        }
    }

    /// f32 values that exercise rounding: every f16 value, the midpoints between
    /// neighbours (ties), and one f32 ulp either side of each midpoint.
    fn rounding_probes_f16() -> Vec<f32> {
        let mut v = Vec::new();
        for h in 0..0x7c00u16 {
            let a = f16::from_bits(h).to_f32();
            let b = f16::from_bits(h + 1).to_f32();
            let mid = ((a as f64 + b as f64) / 2.0) as f32;
            for x in [
                a,
                mid,
                f32::from_bits(mid.to_bits() + 1),
                f32::from_bits(mid.to_bits() - 1),
            ] {
                v.push(x);
                v.push(-x);
            }
        }
        v.extend([
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            65504.0,
            65519.99,
            65520.0,
            1e9,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-40,
        ]);
        v
    }

    #[test]
    fn f32_to_f16_rounds_like_half() {
        for x in rounding_probes_f16() {
            let got = f16::from_bits(f32_to_f16(x)).to_f32();
            let want = f16::from_f32(x).to_f32();
            assert!(same(got, want), "{x:e}: got {got:e}, want {want:e}");
        }
    }

    #[test]
    fn bf16_round_trips_and_rounds_like_half() {
        for h in 0..=u16::MAX {
            assert!(
                same(bf16_to_f32(h), bf16::from_bits(h).to_f32()),
                "0x{h:04x}"
            );
        }
        let mut probes = vec![f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MAX, -0.0];
        for h in (0..0x7f80u32).step_by(7) {
            let base = h << 16;
            for d in [0u32, 0x7fff, 0x8000, 0x8001, 0xffff] {
                probes.push(f32::from_bits(base + d));
                probes.push(-f32::from_bits(base + d));
            }
        }
        for x in probes {
            let got = bf16_to_f32(f32_to_bf16(x));
            let want = bf16::from_f32(x).to_f32();
            assert!(same(got, want), "{x:e}: got {got:e}, want {want:e}");
        }
    }

    /// fp8 value of `code` decoded from the spec with f64 arithmetic.
    fn fp8_spec(code: u8, exp_bits: u32, man_bits: u32, bias: i32, fn_variant: bool) -> f64 {
        let sign = if code & 0x80 != 0 { -1.0 } else { 1.0 };
        let e = ((code & 0x7f) >> man_bits) as i32;
        let m = (code as u32 & ((1 << man_bits) - 1)) as f64;
        let emax = (1 << exp_bits) - 1;
        if fn_variant && e == emax && m as u32 == (1 << man_bits) - 1 {
            return f64::NAN;
        }
        if !fn_variant && e == emax {
            return if m == 0.0 {
                sign * f64::INFINITY
            } else {
                f64::NAN
            };
        }
        let scale = (1u64 << man_bits) as f64;
        if e == 0 {
            sign * (m / scale) * 2f64.powi(1 - bias)
        } else {
            sign * (1.0 + m / scale) * 2f64.powi(e - bias)
        }
    }

    /// Nearest-even encoding by brute force over every finite code.
    fn fp8_encode_ref(x: f32, e4m3: bool) -> u8 {
        let (eb, mb, bias) = if e4m3 { (4, 3, 7) } else { (5, 2, 15) };
        let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
        let a = (x as f64).abs();
        if x.is_nan() {
            return 0x7f | sign;
        }
        if e4m3 && a > 464.0 {
            return 0x7f | sign;
        }
        if !e4m3 && a >= 61440.0 {
            return 0x7c | sign;
        }
        let max_code = if e4m3 { 0x7e } else { 0x7b };
        let mut best = 0u8;
        let mut best_d = f64::INFINITY;
        for c in 0..=max_code {
            let v = fp8_spec(c, eb, mb, bias, e4m3);
            let d = (v - a).abs();
            if d < best_d || (d == best_d && c % 2 == 0) {
                best = c;
                best_d = d;
            }
        }
        best | sign
    }

    #[test]
    fn fp8_decoding_matches_the_spec_for_every_code() {
        for c in 0..=u8::MAX {
            let want = fp8_spec(c, 4, 3, 7, true) as f32;
            assert!(same(e4m3_to_f32(c), want), "e4m3 0x{c:02x}");
            let want = fp8_spec(c, 5, 2, 15, false) as f32;
            assert!(same(e5m2_to_f32(c), want), "e5m2 0x{c:02x}");
        }
    }

    #[test]
    fn fp8_encoding_rounds_to_nearest_even_with_torch_overflow_rules() {
        let mut probes: Vec<f32> = vec![
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            448.0,
            464.0,
            465.0,
            480.0,
            57344.0,
            61439.0,
            61440.0,
            1e6,
            1e-12,
        ];
        for c in 0..=u8::MAX {
            for dec in [e4m3_to_f32 as fn(u8) -> f32, e5m2_to_f32] {
                let a = dec(c);
                let b = dec(c.wrapping_add(1));
                if a.is_finite() && b.is_finite() {
                    let mid = ((a as f64 + b as f64) / 2.0) as f32;
                    probes.extend([
                        a,
                        mid,
                        f32::from_bits(mid.to_bits() + 1),
                        f32::from_bits(mid.to_bits().saturating_sub(1)),
                    ]);
                }
            }
        }
        for x in probes {
            assert_eq!(f32_to_e4m3(x), fp8_encode_ref(x, true), "e4m3 of {x:e}");
            assert_eq!(f32_to_e5m2(x), fp8_encode_ref(x, false), "e5m2 of {x:e}");
        }
    }
}
