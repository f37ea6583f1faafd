//! f32 weights to GGML blocks, for every weight type the engine runs. Used by
//! `synth` to write random models and by the kernel tests to build inputs.
//!
//! These are reference-quality quantizers: round to nearest with one scale (and
//! min) per block or sub-block, without llama.cpp's iterative search for the
//! best scales. They are a little less accurate than llama.cpp's, but they
//! produce exactly the layouts [`super::dequant`] reads, which is what matters
//! for a synthetic model or a kernel test.

use half::{bf16, f16};

use crate::model::gguf::{GgmlType, QK_K};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantizeError {
    #[error("{len} values are not a whole number of {dtype} blocks of {block_len}")]
    PartialBlock {
        dtype: GgmlType,
        len: usize,
        block_len: usize,
    },
    #[error("{dtype} is an activation format, not a weight type")]
    NotAWeightType { dtype: GgmlType },
    #[error("value {value} at index {index} is not finite")]
    NotFinite { index: usize, value: f32 },
    #[error(
        "value {value} at index {index} is too large for {dtype} (its scale would overflow f16)"
    )]
    OutOfRange {
        dtype: GgmlType,
        index: usize,
        value: f32,
    },
    #[error("output holds {got} bytes but {len} {dtype} values need {want}")]
    OutputSize {
        dtype: GgmlType,
        len: usize,
        got: usize,
        want: usize,
    },
}

/// Quantizes `x` (a whole number of blocks) to `dtype`.
pub fn quantize_weights(dtype: GgmlType, x: &[f32]) -> Result<Vec<u8>, QuantizeError> {
    let want = row_bytes(dtype, x.len())?;
    let mut out = vec![0u8; want];
    quantize_weights_into(dtype, x, &mut out)?;
    Ok(out)
}

/// Like [`quantize_weights`], into a caller's buffer of exactly the right size,
/// so `synth` can quantize row after row without allocating.
pub fn quantize_weights_into(
    dtype: GgmlType,
    x: &[f32],
    out: &mut [u8],
) -> Result<(), QuantizeError> {
    let want = row_bytes(dtype, x.len())?;
    if out.len() != want {
        return Err(QuantizeError::OutputSize {
            dtype,
            len: x.len(),
            got: out.len(),
            want,
        });
    }
    if let Some(index) = x.iter().position(|v| !v.is_finite()) {
        return Err(QuantizeError::NotFinite {
            index,
            value: x[index],
        });
    }
    let limit = magnitude_limit(dtype);
    if let Some(index) = x.iter().position(|v| v.abs() > limit) {
        return Err(QuantizeError::OutOfRange {
            dtype,
            index,
            value: x[index],
        });
    }
    let (bl, bb) = (dtype.block_len(), dtype.block_bytes());
    for (xb, ob) in x.chunks_exact(bl).zip(out.chunks_exact_mut(bb)) {
        quantize_block(dtype, xb, ob);
    }
    Ok(())
}

fn row_bytes(dtype: GgmlType, len: usize) -> Result<usize, QuantizeError> {
    if matches!(dtype, GgmlType::Q8_1 | GgmlType::Q8K) {
        return Err(QuantizeError::NotAWeightType { dtype });
    }
    dtype.row_bytes(len).ok_or(QuantizeError::PartialBlock {
        dtype,
        len,
        block_len: dtype.block_len(),
    })
}

/// The largest magnitude whose stored f16 values (scales, and the minimum of
/// Q4_1/Q5_1) still fit: f16 tops out at 65504, and a block's scale is its
/// range (at most twice its largest magnitude) over the levels it spans.
/// Conservative by a margin so rounding never tips a scale into infinity.
fn magnitude_limit(dtype: GgmlType) -> f32 {
    let levels = match dtype {
        GgmlType::F32 | GgmlType::BF16 => return f32::MAX,
        GgmlType::F16 => return 65504.0,
        // The block minimum itself is stored as f16.
        GgmlType::Q4_1 | GgmlType::Q5_1 => 1.0,
        GgmlType::Q4_0 => 8.0,
        GgmlType::Q5_0 => 16.0,
        GgmlType::Q8_0 | GgmlType::Q8_1 | GgmlType::Q8K => 127.0,
        // Super-block scale = largest sub-block scale / sub-scale levels.
        GgmlType::Q2K => 3.0 * 15.0 / 2.0,
        GgmlType::Q3K => 4.0 * 32.0,
        GgmlType::Q4K => 15.0 * 63.0 / 2.0,
        GgmlType::Q5K => 31.0 * 63.0 / 2.0,
        GgmlType::Q6K => 32.0 * 127.0,
    };
    60000.0 * levels
}

fn put_f16(out: &mut [u8], at: usize, v: f32) -> f32 {
    let h = f16::from_f32(v);
    out[at..at + 2].copy_from_slice(&h.to_le_bytes());
    h.to_f32()
}

fn inv(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// The value of largest magnitude, with its sign.
fn signed_absmax(x: &[f32]) -> f32 {
    x.iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Rounds `v` to the nearest integer (halves away from zero) in `lo..=hi`.
/// Not `f32::round`: without SSE4.1 that is a libm call per value, and
/// quantizing is most of what `synth` spends its time on. The cast truncates
/// (and saturates), so adding a signed half first rounds.
#[inline(always)]
fn level(v: f32, lo: i32, hi: i32) -> i32 {
    ((v + 0.5f32.copysign(v)) as i32).clamp(lo, hi)
}

fn quantize_block(dtype: GgmlType, x: &[f32], out: &mut [u8]) {
    match dtype {
        GgmlType::F32 => out.copy_from_slice(&x[0].to_le_bytes()),
        GgmlType::F16 => out.copy_from_slice(&f16::from_f32(x[0]).to_le_bytes()),
        GgmlType::BF16 => out.copy_from_slice(&bf16::from_f32(x[0]).to_le_bytes()),
        GgmlType::Q4_0 => symmetric_32(x, out, 4),
        GgmlType::Q5_0 => symmetric_32(x, out, 5),
        GgmlType::Q4_1 => affine_32(x, out, 4),
        GgmlType::Q5_1 => affine_32(x, out, 5),
        GgmlType::Q8_0 => {
            let d = put_f16(out, 0, x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0);
            let id = inv(d);
            for (o, &v) in out[2..34].iter_mut().zip(x) {
                *o = level(v * id, -127, 127) as i8 as u8;
            }
        }
        GgmlType::Q2K => q2k(x, out),
        GgmlType::Q3K => q3k(x, out),
        GgmlType::Q4K => q45k(x, out, false),
        GgmlType::Q5K => q45k(x, out, true),
        GgmlType::Q6K => q6k(x, out),
        // Refused by `row_bytes` before any block is quantized.
        GgmlType::Q8_1 | GgmlType::Q8K => {}
    }
}

/// Packs 32 levels of `bits` (4 or 5) into `qs[16]` (low nibbles: elements
/// 0..16, high nibbles: 16..32) and, for 5 bits, the `qh` bit mask.
fn pack_32(q: &[u8; 32], qs: &mut [u8], qh: Option<&mut [u8]>) {
    for j in 0..16 {
        qs[j] = (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4);
    }
    if let Some(qh) = qh {
        let mut h = 0u32;
        for (j, &v) in q.iter().enumerate() {
            h |= ((v as u32 >> 4) & 1) << j;
        }
        qh.copy_from_slice(&h.to_le_bytes());
    }
}

/// Q4_0 / Q5_0: `x = d * (q - 2^(bits-1))`. The value of largest magnitude maps
/// to the most negative level, as llama.cpp does, so the full range is used.
fn symmetric_32(x: &[f32], out: &mut [u8], bits: u32) {
    let half = 1i32 << (bits - 1);
    let d = put_f16(out, 0, signed_absmax(x) / -(half as f32));
    let id = inv(d);
    let mut q = [0u8; 32];
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = level(v * id + half as f32, 0, 2 * half - 1) as u8;
    }
    if bits == 4 {
        pack_32(&q, &mut out[2..18], None);
    } else {
        let (qh, qs) = out[2..22].split_at_mut(4);
        pack_32(&q, qs, Some(qh));
    }
}

/// Q4_1 / Q5_1: `x = d * q + m` with m the block minimum.
fn affine_32(x: &[f32], out: &mut [u8], bits: u32) {
    let top = (1i32 << bits) - 1;
    let (lo, hi) = min_max(x);
    let d = put_f16(out, 0, (hi - lo) / top as f32);
    let m = put_f16(out, 2, lo);
    let id = inv(d);
    let mut q = [0u8; 32];
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = level((v - m) * id, 0, top) as u8;
    }
    if bits == 4 {
        pack_32(&q, &mut out[4..20], None);
    } else {
        let (qh, qs) = out[4..24].split_at_mut(4);
        pack_32(&q, qs, Some(qh));
    }
}

/// Per-group (scale, min) for `x = scale * q - min` with `q` in `0..=top`;
/// the min is clamped at zero from below, as the K-quant formats store it
/// unsigned.
fn group_scale_min(x: &[f32], top: i32) -> (f32, f32) {
    let (lo, hi) = min_max(x);
    let lo = lo.min(0.0);
    ((hi - lo) / top as f32, -lo)
}

/// Quantizes the per-group scales and mins of an affine K-quant against the
/// super-block scales `d` and `dmin` (stored as f16 by the caller), returning
/// the integer sub-scales and sub-mins in `0..=sub_top`.
fn sub_scales<const G: usize>(
    scales: &[f32; G],
    mins: &[f32; G],
    d: f32,
    dmin: f32,
    sub_top: i32,
) -> ([u8; G], [u8; G]) {
    let (id, idmin) = (inv(d), inv(dmin));
    let mut ls = [0u8; G];
    let mut lm = [0u8; G];
    for g in 0..G {
        ls[g] = level(scales[g] * id, 0, sub_top) as u8;
        lm[g] = level(mins[g] * idmin, 0, sub_top) as u8;
    }
    (ls, lm)
}

/// Levels for `x = dl * q - ml`, `q` in `0..=top`.
fn affine_levels(x: &[f32], dl: f32, ml: f32, top: i32, q: &mut [u8]) {
    let id = inv(dl);
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = level((v + ml) * id, 0, top) as u8;
    }
}

// Q2_K: scales[16] (low nibble scale, high nibble min) | qs[64] | d | dmin.
// Element e = half*128 + shift*32 + r sits in qs[half*32 + r] at bits 2*shift.
fn q2k(x: &[f32], out: &mut [u8]) {
    let mut scales = [0.0f32; 16];
    let mut mins = [0.0f32; 16];
    for g in 0..16 {
        (scales[g], mins[g]) = group_scale_min(&x[g * 16..g * 16 + 16], 3);
    }
    let d = put_f16(out, 80, scales.iter().fold(0.0f32, |a, &b| a.max(b)) / 15.0);
    let dmin = put_f16(out, 82, mins.iter().fold(0.0f32, |a, &b| a.max(b)) / 15.0);
    let (ls, lm) = sub_scales(&scales, &mins, d, dmin, 15);
    let mut q = [0u8; QK_K];
    for g in 0..16 {
        out[g] = ls[g] | (lm[g] << 4);
        let r = g * 16..g * 16 + 16;
        affine_levels(
            &x[r.clone()],
            d * ls[g] as f32,
            dmin * lm[g] as f32,
            3,
            &mut q[r],
        );
    }
    let qs = &mut out[16..80];
    qs.fill(0);
    for (e, &v) in q.iter().enumerate() {
        let (half, shift, r) = (e / 128, (e % 128) / 32, e % 32);
        qs[half * 32 + r] |= v << (2 * shift);
    }
}

// Q3_K: hmask[32] | qs[64] | scales[12] (sixteen 6-bit signed) | d.
// Levels are q in -4..=3 stored as q+4: low two bits in qs (as Q2_K), the
// third bit in hmask[r] bit (half*4 + shift).
fn q3k(x: &[f32], out: &mut [u8]) {
    let mut scales = [0.0f32; 16];
    for (g, s) in scales.iter_mut().enumerate() {
        *s = signed_absmax(&x[g * 16..g * 16 + 16]) / -4.0;
    }
    let d = put_f16(out, 108, signed_absmax(&scales) / -32.0);
    let id = inv(d);
    let mut packed = [0u8; 12];
    let mut q = [0u8; QK_K];
    for g in 0..16 {
        let l = level(scales[g] * id, -32, 31);
        let stored = (l + 32) as u8;
        if g < 8 {
            packed[g] |= stored & 0x0f;
        } else {
            packed[g - 8] |= (stored & 0x0f) << 4;
        }
        packed[8 + g % 4] |= (stored >> 4) << (2 * (g / 4));
        let idl = inv(d * l as f32);
        for (qi, &v) in q[g * 16..g * 16 + 16]
            .iter_mut()
            .zip(&x[g * 16..g * 16 + 16])
        {
            *qi = (level(v * idl, -4, 3) + 4) as u8;
        }
    }
    out[96..108].copy_from_slice(&packed);
    out[..96].fill(0);
    let (hmask, qs) = out[..96].split_at_mut(32);
    for (e, &v) in q.iter().enumerate() {
        let (half, shift, r) = (e / 128, (e % 128) / 32, e % 32);
        qs[half * 32 + r] |= (v & 3) << (2 * shift);
        if v & 4 != 0 {
            hmask[r] |= 1 << (half * 4 + shift);
        }
    }
}

/// Packs eight 6-bit (scale, min) pairs the way `scale_min_k4` unpacks them.
fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8], q: &mut [u8]) {
    q[..12].fill(0);
    for j in 0..8 {
        if j < 4 {
            q[j] = ls[j] & 63;
            q[j + 4] = lm[j] & 63;
        } else {
            q[j + 4] = (ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4);
            q[j - 4] |= (ls[j] >> 4) << 6;
            q[j] |= (lm[j] >> 4) << 6;
        }
    }
}

// Q4_K: d | dmin | scales[12] | qs[128];  Q5_K: d | dmin | scales[12] | qh[32] | qs[128].
// Eight groups of 32; chunk c holds groups 2c (low nibbles) and 2c+1 (high).
// Q5_K's fifth bit of element e is qh[e % 32] bit (e / 32).
fn q45k(x: &[f32], out: &mut [u8], five: bool) {
    let top = if five { 31 } else { 15 };
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    for g in 0..8 {
        (scales[g], mins[g]) = group_scale_min(&x[g * 32..g * 32 + 32], top);
    }
    let d = put_f16(out, 0, scales.iter().fold(0.0f32, |a, &b| a.max(b)) / 63.0);
    let dmin = put_f16(out, 2, mins.iter().fold(0.0f32, |a, &b| a.max(b)) / 63.0);
    let (ls, lm) = sub_scales(&scales, &mins, d, dmin, 63);
    pack_scale_min_k4(&ls, &lm, &mut out[4..16]);
    let mut q = [0u8; QK_K];
    for g in 0..8 {
        let r = g * 32..g * 32 + 32;
        affine_levels(
            &x[r.clone()],
            d * ls[g] as f32,
            dmin * lm[g] as f32,
            top,
            &mut q[r],
        );
    }
    let qs_at = if five { 48 } else { 16 };
    if five {
        let qh = &mut out[16..48];
        qh.fill(0);
        for (e, &v) in q.iter().enumerate() {
            qh[e % 32] |= ((v >> 4) & 1) << (e / 32);
        }
    }
    let qs = &mut out[qs_at..qs_at + 128];
    for c in 0..4 {
        for l in 0..32 {
            qs[c * 32 + l] = (q[c * 64 + l] & 0x0f) | ((q[c * 64 + 32 + l] & 0x0f) << 4);
        }
    }
}

// Q6_K: ql[128] | qh[64] | scales[16] (i8) | d. Levels q in -32..=31 stored
// as q+32. Within each half of 128: element quad*32 + l has its low nibble in
// ql[half*64 + l + 32*(quad & 1)] (low nibble for quad < 2, else high) and its
// top two bits in qh[half*32 + l] at bits 2*quad.
fn q6k(x: &[f32], out: &mut [u8]) {
    let mut scales = [0.0f32; 16];
    for (g, s) in scales.iter_mut().enumerate() {
        *s = signed_absmax(&x[g * 16..g * 16 + 16]) / -32.0;
    }
    let d = put_f16(
        out,
        208,
        scales.iter().fold(0.0f32, |m, s| m.max(s.abs())) / 127.0,
    );
    let id = inv(d);
    let mut q = [0u8; QK_K];
    for g in 0..16 {
        let l = level(scales[g] * id, -128, 127);
        out[192 + g] = l as i8 as u8;
        let idl = inv(d * l as f32);
        for (qi, &v) in q[g * 16..g * 16 + 16]
            .iter_mut()
            .zip(&x[g * 16..g * 16 + 16])
        {
            *qi = (level(v * idl, -32, 31) + 32) as u8;
        }
    }
    out[..192].fill(0);
    for (e, &v) in q.iter().enumerate() {
        let (half, quad, l) = (e / 128, (e % 128) / 32, e % 32);
        let lo_at = half * 64 + l + 32 * (quad & 1);
        out[lo_at] |= if quad < 2 { v & 0x0f } else { (v & 0x0f) << 4 };
        out[128 + half * 32 + l] |= (v >> 4) << (2 * quad);
    }
}
