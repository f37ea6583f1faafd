//! Quantizes activations once per matmul input, into the block format the
//! weight type's dot product expects (llama.cpp's `vec_dot_type`): Q8_0 for
//! Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants. Rounding follows
//! llama.cpp's reference quantizers so results stay comparable with it.

use half::f16;

use crate::model::gguf::{GgmlType, QK_K};

/// The activation format a weight type multiplies against.
pub fn activation_type(weight: GgmlType) -> GgmlType {
    match weight {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => GgmlType::Q8_0,
        GgmlType::Q4_1 | GgmlType::Q5_1 => GgmlType::Q8_1,
        GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => {
            GgmlType::Q8K
        }
        // Float weights multiply f32 activations directly.
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_1 | GgmlType::Q8K => {
            GgmlType::F32
        }
    }
}

/// Quantizes one row `x` into `out` (which must hold exactly its blocks).
pub fn quantize_row(target: GgmlType, x: &[f32], out: &mut [u8]) {
    match target {
        GgmlType::Q8_0 => {
            for (xb, ob) in x.chunks_exact(32).zip(out.chunks_exact_mut(34)) {
                quantize_q8_0_block(xb, ob)
            }
        }
        GgmlType::Q8_1 => {
            for (xb, ob) in x.chunks_exact(32).zip(out.chunks_exact_mut(36)) {
                quantize_q8_1_block(xb, ob)
            }
        }
        GgmlType::Q8K => {
            for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(292)) {
                quantize_q8_k_block(xb, ob)
            }
        }
        GgmlType::F32 => {
            for (v, o) in x.iter().zip(out.chunks_exact_mut(4)) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        other => unreachable_format(other),
    }
}

#[cold]
fn unreachable_format(t: GgmlType) {
    // activation_type never yields these; a caller passing one is a bug in
    // this crate, and producing zeros would hide it, so be loud in debug.
    debug_assert!(false, "{t} is not an activation format");
}

fn absmax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

fn quantize_q8_0_block(x: &[f32], out: &mut [u8]) {
    let d = absmax(x) / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[0..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    for (o, v) in out[2..34].iter_mut().zip(x) {
        *o = ((v * id).round() as i8) as u8;
    }
}

fn quantize_q8_1_block(x: &[f32], out: &mut [u8]) {
    let d = absmax(x) / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (o, v) in out[4..36].iter_mut().zip(x) {
        let q = (v * id).round() as i8;
        sum += q as i32;
        *o = q as u8;
    }
    out[0..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    out[2..4].copy_from_slice(&f16::from_f32(sum as f32 * d).to_le_bytes());
}

fn quantize_q8_k_block(x: &[f32], out: &mut [u8]) {
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
        out.fill(0);
        return;
    }
    let iscale = -127.0 / max;
    for (o, v) in out[4..4 + QK_K].iter_mut().zip(x) {
        *o = ((iscale * v).round().min(127.0) as i8) as u8;
    }
    for g in 0..QK_K / 16 {
        let s: i32 = out[4 + g * 16..4 + g * 16 + 16]
            .iter()
            .map(|&q| q as i8 as i32)
            .sum();
        let at = 4 + QK_K + 2 * g;
        out[at..at + 2].copy_from_slice(&(s as i16).to_le_bytes());
    }
    out[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
}
