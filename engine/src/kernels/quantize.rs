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
    match target {
        QuantType::Q8_0 => each(x, out, quantize_q8_0_block),
        QuantType::Q8_1 => each(x, out, quantize_q8_1_block),
        QuantType::Q8K => each(x, out, quantize_q8_k_block),
        QuantType::F32 => each(x, out, |x, o: &mut F32Le| *o = F32Le::from_f32(x[0])),
        other => unreachable_format(other),
    }
}

/// Runs `block` on each `B::VALUES` inputs with the block they fill.
#[inline(always)]
fn each<B: Block>(x: &[f32], out: &mut [u8], block: impl Fn(&[f32], &mut B)) {
    for (xb, ob) in x.chunks_exact(B::VALUES).zip(as_blocks_mut::<B>(out)) {
        block(xb, ob);
    }
}

#[cold]
fn unreachable_format(t: QuantType) {
    // activation_type never yields these; a caller passing one is a bug in
    // this crate, and producing zeros would hide it, so be loud in debug.
    debug_assert!(false, "{t} is not an activation format");
}

fn absmax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

fn quantize_q8_0_block(x: &[f32], out: &mut BlockQ8_0) {
    let d = absmax(x) / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.d = F16Le::from_f32(d);
    for (o, v) in out.qs.iter_mut().zip(x) {
        *o = (v * id).round() as i8;
    }
}

fn quantize_q8_1_block(x: &[f32], out: &mut BlockQ8_1) {
    let d = absmax(x) / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (o, v) in out.qs.iter_mut().zip(x) {
        let q = (v * id).round() as i8;
        sum += q as i32;
        *o = q;
    }
    out.d = F16Le::from_f32(d);
    out.s = F16Le::from_f32(sum as f32 * d);
}

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
        *o = (iscale * v).round().min(127.0) as i8;
    }
    for (sum, group) in out.bsums.iter_mut().zip(out.qs.chunks_exact(16)) {
        let s: i32 = group.iter().map(|&q| q as i32).sum();
        *sum = I16Le::from_i16(s as i16);
    }
    out.d = F32Le::from_f32(1.0 / iscale);
}
