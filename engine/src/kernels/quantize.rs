//! Quantizes activations once per matmul input, into the block format the
//! weight type's dot product expects (llama.cpp's `vec_dot_type`): Q8_0 for
//! Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants. Rounding follows
//! llama.cpp's reference quantizers so results stay comparable with it.

use super::blocks::{as_blocks_mut, Block, BlockQ8K, BlockQ8_0, BlockQ8_1, F16Le, F32Le, I16Le};
use super::QuantType;

/// The activation format a weight type multiplies against.
pub fn activation_type(weight: QuantType) -> QuantType {
    match weight {
        QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Q8_0 => QuantType::Q8_0,
        QuantType::Q4_1 | QuantType::Q5_1 => QuantType::Q8_1,
        QuantType::Q2K | QuantType::Q3K | QuantType::Q4K | QuantType::Q5K | QuantType::Q6K => {
            QuantType::Q8K
        }
        // Float weights multiply f32 activations directly.
        QuantType::F32 | QuantType::F16 | QuantType::BF16 | QuantType::Q8_1 | QuantType::Q8K => {
            QuantType::F32
        }
    }
}

/// Quantizes one row `x` into `out` (which must hold exactly its blocks).
pub fn quantize_row(target: QuantType, x: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, all the function enables.
        return unsafe { quantize_row_avx2(target, x, out) };
    }
    quantize_row_body(target, x, out)
}

/// The same body compiled for AVX2, where rounding is one instruction per
/// eight values (the x86-64 baseline has none, and calls libm per value).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_avx2(target: QuantType, x: &[f32], out: &mut [u8]) {
    quantize_row_body(target, x, out)
}

/// Runs `$block` on each block's values and the block it fills. A macro
/// rather than a helper taking the block function: a function or closure
/// passed as `impl Fn` is compiled on its own, without the AVX2 copy's
/// features, and would round with libm again.
macro_rules! each_block {
    ($x:expr, $out:expr, $ty:ty, $block:ident) => {
        for (xb, ob) in $x
            .chunks_exact(<$ty>::VALUES)
            .zip(as_blocks_mut::<$ty>($out))
        {
            $block(xb, ob);
        }
    };
}

#[inline(always)]
fn quantize_row_body(target: QuantType, x: &[f32], out: &mut [u8]) {
    match target {
        QuantType::Q8_0 => each_block!(x, out, BlockQ8_0, quantize_q8_0_block),
        QuantType::Q8_1 => each_block!(x, out, BlockQ8_1, quantize_q8_1_block),
        QuantType::Q8K => each_block!(x, out, BlockQ8K, quantize_q8_k_block),
        QuantType::F32 => {
            for (v, o) in x.iter().zip(as_blocks_mut::<F32Le>(out)) {
                *o = F32Le::from_f32(*v);
            }
        }
        other => unreachable_format(other),
    }
}

#[cold]
fn unreachable_format(t: QuantType) {
    // activation_type never yields these; a caller passing one is a bug in
    // this crate, and producing zeros would hide it, so be loud in debug.
    debug_assert!(false, "{t} is not an activation format");
}

/// `v` rounded to the nearest whole number, halves away from zero (what
/// `f32::round` gives), then to i8 as `as i8` casts (saturating, NaN to 0).
/// `round` is a libm call per value on x86 and the saturating cast a
/// compare and two moves; this form vectorizes. Taking the whole part off
/// `v` is exact, so the half test is too.
#[inline(always)]
fn round_to_i8(v: f32) -> i8 {
    let whole = v.trunc();
    let r = if (v - whole).abs() >= 0.5 {
        whole + 1.0f32.copysign(v)
    } else {
        whole
    };
    let r = if r.is_nan() {
        0.0
    } else {
        r.clamp(-128.0, 127.0)
    };
    // SAFETY: r is a whole number in i8's range, so it converts exactly.
    unsafe { r.to_int_unchecked::<i32>() as i8 }
}

#[inline(always)]
fn absmax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

#[inline(always)]
fn quantize_q8_0_block(x: &[f32], out: &mut BlockQ8_0) {
    let d = absmax(x) / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.d = F16Le::from_f32(d);
    for (o, v) in out.qs.iter_mut().zip(x) {
        *o = round_to_i8(v * id);
    }
}

#[inline(always)]
fn quantize_q8_1_block(x: &[f32], out: &mut BlockQ8_1) {
    let d = absmax(x) / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (o, v) in out.qs.iter_mut().zip(x) {
        let q = round_to_i8(v * id);
        sum += q as i32;
        *o = q;
    }
    out.d = F16Le::from_f32(d);
    out.s = F16Le::from_f32(sum as f32 * d);
}

#[inline(always)]
fn quantize_q8_k_block(x: &[f32], out: &mut BlockQ8K) {
    // The value of largest magnitude maps to -127, as in llama.cpp.
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        out.d = F32Le::default();
        out.qs.fill(0);
        out.bsums.fill(I16Le::default());
        return;
    }
    let iscale = -127.0 / max;
    for (o, v) in out.qs.iter_mut().zip(x) {
        *o = round_to_i8(iscale * v);
    }
    for (sum, group) in out.bsums.iter_mut().zip(out.qs.chunks_exact(16)) {
        let s: i32 = group.iter().map(|&q| q as i32).sum();
        *sum = I16Le::from_i16(s as i16);
    }
    out.d = F32Le::from_f32(1.0 / iscale);
}

#[cfg(test)]
mod tests {
    use super::round_to_i8;

    #[test]
    fn round_to_i8_is_round_then_a_saturating_cast() {
        let mut v = -140.0f32;
        while v < 140.0 {
            for x in [v, v + 0.5, v - 0.5, f32::from_bits((v + 0.5).to_bits() + 1)] {
                assert_eq!(round_to_i8(x), x.round() as i8, "{x}");
            }
            v += 0.25;
        }
        for x in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.49999997,
            -0.49999997,
            -0.0,
        ] {
            assert_eq!(round_to_i8(x), x.round() as i8, "{x}");
        }
    }
}
