//! f32 weights to GGML blocks, for every weight type the engine runs. Used by
//! `synth` to write random models and by the kernel tests to build inputs.
//!
//! These are reference-quality quantizers: round to nearest with one scale (and
//! min) per block or sub-block, without llama.cpp's iterative search for the
//! best scales. They are a little less accurate than llama.cpp's, but they
//! produce exactly the layouts [`super::dequant`] reads, which is what matters
//! for a synthetic model or a kernel test.

use super::blocks::{
    as_blocks_mut, Bf16Le, Block, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
    BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, F16Le, F32Le, K_SCALE_SIZE, QK, QK_K,
};
use super::QuantType;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantizeError {
    #[error("{len} values are not a whole number of {dtype} blocks of {block_len}")]
    PartialBlock {
        dtype: QuantType,
        len: usize,
        block_len: usize,
    },
    #[error("{dtype} is an activation format, not a weight type")]
    NotAWeightType { dtype: QuantType },
    #[error("value {value} at index {index} is not finite")]
    NotFinite { index: usize, value: f32 },
    #[error(
        "value {value} at index {index} is too large for {dtype} (its scale would overflow f16)"
    )]
    OutOfRange {
        dtype: QuantType,
        index: usize,
        value: f32,
    },
    #[error("output holds {got} bytes but {len} {dtype} values need {want}")]
    OutputSize {
        dtype: QuantType,
        len: usize,
        got: usize,
        want: usize,
    },
}

/// Quantizes `x` (a whole number of blocks) to `dtype`.
pub fn quantize_weights(dtype: QuantType, x: &[f32]) -> Result<Vec<u8>, QuantizeError> {
    let want = row_bytes(dtype, x.len())?;
    let mut out = vec![0u8; want];
    quantize_weights_into(dtype, x, &mut out)?;
    Ok(out)
}

/// Like [`quantize_weights`], into a caller's buffer of exactly the right size,
/// so `synth` can quantize row after row without allocating.
pub fn quantize_weights_into(
    dtype: QuantType,
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
    quantize_blocks(dtype, x, out);
    Ok(())
}

fn row_bytes(dtype: QuantType, len: usize) -> Result<usize, QuantizeError> {
    if dtype.is_activation_only() {
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
fn magnitude_limit(dtype: QuantType) -> f32 {
    let levels = match dtype {
        QuantType::F32 | QuantType::BF16 => return f32::MAX,
        QuantType::F16 => return 65504.0,
        // The block minimum itself is stored as f16.
        QuantType::Q4_1 | QuantType::Q5_1 => 1.0,
        QuantType::Q4_0 => 8.0,
        QuantType::Q5_0 => 16.0,
        QuantType::Q8_0 | QuantType::Q8_1 | QuantType::Q8K => 127.0,
        // Super-block scale = largest sub-block scale / sub-scale levels.
        QuantType::Q2K => 3.0 * 15.0 / 2.0,
        QuantType::Q3K => 4.0 * 32.0,
        QuantType::Q4K => 15.0 * 63.0 / 2.0,
        QuantType::Q5K => 31.0 * 63.0 / 2.0,
        QuantType::Q6K => 32.0 * 127.0,
    };
    60000.0 * levels
}

/// Stores `v` rounded to f16 in `slot` and returns the rounded value.
fn store_f16(slot: &mut F16Le, v: f32) -> f32 {
    *slot = F16Le::from_f32(v);
    slot.to_f32()
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

fn quantize_blocks(dtype: QuantType, x: &[f32], out: &mut [u8]) {
    match dtype {
        QuantType::F32 => each(x, out, |x, o: &mut F32Le| *o = F32Le::from_f32(x[0])),
        QuantType::F16 => each(x, out, |x, o: &mut F16Le| *o = F16Le::from_f32(x[0])),
        QuantType::BF16 => each(x, out, |x, o: &mut Bf16Le| *o = Bf16Le::from_f32(x[0])),
        QuantType::Q4_0 => each(x, out, |x, o: &mut BlockQ4_0| {
            let q = symmetric_32(x, &mut o.d, 4);
            pack_nibbles(&q, &mut o.qs);
        }),
        QuantType::Q5_0 => each(x, out, |x, o: &mut BlockQ5_0| {
            let q = symmetric_32(x, &mut o.d, 5);
            pack_nibbles(&q, &mut o.qs);
            o.qh = fifth_bits(&q);
        }),
        QuantType::Q4_1 => each(x, out, |x, o: &mut BlockQ4_1| {
            let q = affine_32(x, &mut o.d, &mut o.m, 4);
            pack_nibbles(&q, &mut o.qs);
        }),
        QuantType::Q5_1 => each(x, out, |x, o: &mut BlockQ5_1| {
            let q = affine_32(x, &mut o.d, &mut o.m, 5);
            pack_nibbles(&q, &mut o.qs);
            o.qh = fifth_bits(&q);
        }),
        QuantType::Q8_0 => each(x, out, |x, o: &mut BlockQ8_0| {
            let d = store_f16(
                &mut o.d,
                x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0,
            );
            let id = inv(d);
            for (o, &v) in o.qs.iter_mut().zip(x) {
                *o = level(v * id, -127, 127) as i8;
            }
        }),
        QuantType::Q2K => each(x, out, q2k),
        QuantType::Q3K => each(x, out, q3k),
        QuantType::Q4K => each(x, out, |x, o: &mut BlockQ4K| {
            let q = q45k(x, &mut o.d, &mut o.dmin, &mut o.scales, 15);
            pack_k_nibbles(&q, &mut o.qs);
        }),
        QuantType::Q5K => each(x, out, |x, o: &mut BlockQ5K| {
            let q = q45k(x, &mut o.d, &mut o.dmin, &mut o.scales, 31);
            pack_k_nibbles(&q, &mut o.qs);
            // The fifth bit of element e is qh[e % 32] bit (e / 32).
            o.qh.fill(0);
            for (e, &v) in q.iter().enumerate() {
                o.qh[e % 32] |= ((v >> 4) & 1) << (e / 32);
            }
        }),
        QuantType::Q6K => each(x, out, q6k),
        // Refused by `row_bytes` before any block is quantized.
        QuantType::Q8_1 | QuantType::Q8K => {}
    }
}

/// Runs `block` on each `B::VALUES` inputs with the block they fill.
#[inline(always)]
fn each<B: Block>(x: &[f32], out: &mut [u8], block: impl Fn(&[f32], &mut B)) {
    for (xb, ob) in x.chunks_exact(B::VALUES).zip(as_blocks_mut::<B>(out)) {
        block(xb, ob);
    }
}

/// Packs 32 levels into `qs` nibbles: elements 0..16 low, 16..32 high.
fn pack_nibbles(q: &[u8; QK], qs: &mut [u8; QK / 2]) {
    for j in 0..16 {
        qs[j] = (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4);
    }
}

/// The fifth bit of each of 32 levels, bit `j` for element `j` (as `qh`).
fn fifth_bits(q: &[u8; QK]) -> [u8; 4] {
    let mut h = 0u32;
    for (j, &v) in q.iter().enumerate() {
        h |= ((v as u32 >> 4) & 1) << j;
    }
    h.to_le_bytes()
}

/// Q4_0 / Q5_0: `x = d * (q - 2^(bits-1))`. The value of largest magnitude maps
/// to the most negative level, as llama.cpp does, so the full range is used.
fn symmetric_32(x: &[f32], d: &mut F16Le, bits: u32) -> [u8; QK] {
    let half = 1i32 << (bits - 1);
    let d = store_f16(d, signed_absmax(x) / -(half as f32));
    let id = inv(d);
    let mut q = [0u8; QK];
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = level(v * id + half as f32, 0, 2 * half - 1) as u8;
    }
    q
}

/// Q4_1 / Q5_1: `x = d * q + m` with m the block minimum.
fn affine_32(x: &[f32], d: &mut F16Le, m: &mut F16Le, bits: u32) -> [u8; QK] {
    let top = (1i32 << bits) - 1;
    let (lo, hi) = min_max(x);
    let d = store_f16(d, (hi - lo) / top as f32);
    let m = store_f16(m, lo);
    let id = inv(d);
    let mut q = [0u8; QK];
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = level((v - m) * id, 0, top) as u8;
    }
    q
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

// Q2_K: a low-nibble scale and high-nibble min per group of 16. Element
// e = half*128 + shift*32 + r sits in qs[half*32 + r] at bits 2*shift.
fn q2k(x: &[f32], out: &mut BlockQ2K) {
    let mut scales = [0.0f32; 16];
    let mut mins = [0.0f32; 16];
    for g in 0..16 {
        (scales[g], mins[g]) = group_scale_min(&x[g * 16..g * 16 + 16], 3);
    }
    let d = store_f16(
        &mut out.d,
        scales.iter().fold(0.0f32, |a, &b| a.max(b)) / 15.0,
    );
    let dmin = store_f16(
        &mut out.dmin,
        mins.iter().fold(0.0f32, |a, &b| a.max(b)) / 15.0,
    );
    let (ls, lm) = sub_scales(&scales, &mins, d, dmin, 15);
    let mut q = [0u8; QK_K];
    for g in 0..16 {
        out.scales[g] = ls[g] | (lm[g] << 4);
        let r = g * 16..g * 16 + 16;
        affine_levels(
            &x[r.clone()],
            d * ls[g] as f32,
            dmin * lm[g] as f32,
            3,
            &mut q[r],
        );
    }
    out.qs.fill(0);
    for (e, &v) in q.iter().enumerate() {
        let (half, shift, r) = (e / 128, (e % 128) / 32, e % 32);
        out.qs[half * 32 + r] |= v << (2 * shift);
    }
}

// Q3_K: sixteen 6-bit signed scales. Levels are q in -4..=3 stored as q+4:
// low two bits in qs (as Q2_K), the third bit in hmask[r] bit (half*4 + shift).
fn q3k(x: &[f32], out: &mut BlockQ3K) {
    let mut scales = [0.0f32; 16];
    for (g, s) in scales.iter_mut().enumerate() {
        *s = signed_absmax(&x[g * 16..g * 16 + 16]) / -4.0;
    }
    let d = store_f16(&mut out.d, signed_absmax(&scales) / -32.0);
    let id = inv(d);
    let mut packed = [0u8; K_SCALE_SIZE];
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
    out.scales = packed;
    out.hmask.fill(0);
    out.qs.fill(0);
    for (e, &v) in q.iter().enumerate() {
        let (half, shift, r) = (e / 128, (e % 128) / 32, e % 32);
        out.qs[half * 32 + r] |= (v & 3) << (2 * shift);
        if v & 4 != 0 {
            out.hmask[r] |= 1 << (half * 4 + shift);
        }
    }
}

/// Packs eight 6-bit (scale, min) pairs the way `scale_min_k4` unpacks them.
fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8], q: &mut [u8; K_SCALE_SIZE]) {
    q.fill(0);
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

/// Q4_K / Q5_K (`top` 15 or 31): eight groups of 32, each with a 6-bit
/// scale and min. Stores the super-block scales and the packed group
/// scales; returns the levels for the caller to pack.
fn q45k(
    x: &[f32],
    d_slot: &mut F16Le,
    dmin_slot: &mut F16Le,
    packed: &mut [u8; K_SCALE_SIZE],
    top: i32,
) -> [u8; QK_K] {
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    for g in 0..8 {
        (scales[g], mins[g]) = group_scale_min(&x[g * 32..g * 32 + 32], top);
    }
    let d = store_f16(d_slot, scales.iter().fold(0.0f32, |a, &b| a.max(b)) / 63.0);
    let dmin = store_f16(dmin_slot, mins.iter().fold(0.0f32, |a, &b| a.max(b)) / 63.0);
    let (ls, lm) = sub_scales(&scales, &mins, d, dmin, 63);
    pack_scale_min_k4(&ls, &lm, packed);
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
    q
}

/// Q4_K/Q5_K nibbles: chunk c holds groups 2c (low nibbles) and 2c+1 (high).
fn pack_k_nibbles(q: &[u8; QK_K], qs: &mut [u8; QK_K / 2]) {
    for c in 0..4 {
        for l in 0..32 {
            qs[c * 32 + l] = (q[c * 64 + l] & 0x0f) | ((q[c * 64 + 32 + l] & 0x0f) << 4);
        }
    }
}

// Q6_K: sixteen i8 group scales. Levels q in -32..=31 stored as q+32.
// Within each half of 128: element quad*32 + l has its low nibble in
// ql[half*64 + l + 32*(quad & 1)] (low nibble for quad < 2, else high) and its
// top two bits in qh[half*32 + l] at bits 2*quad.
fn q6k(x: &[f32], out: &mut BlockQ6K) {
    let mut scales = [0.0f32; 16];
    for (g, s) in scales.iter_mut().enumerate() {
        *s = signed_absmax(&x[g * 16..g * 16 + 16]) / -32.0;
    }
    let d = store_f16(
        &mut out.d,
        scales.iter().fold(0.0f32, |m, s| m.max(s.abs())) / 127.0,
    );
    let id = inv(d);
    let mut q = [0u8; QK_K];
    for g in 0..16 {
        let l = level(scales[g] * id, -128, 127);
        out.scales[g] = l as i8;
        let idl = inv(d * l as f32);
        for (qi, &v) in q[g * 16..g * 16 + 16]
            .iter_mut()
            .zip(&x[g * 16..g * 16 + 16])
        {
            *qi = (level(v * idl, -32, 31) + 32) as u8;
        }
    }
    out.ql.fill(0);
    out.qh.fill(0);
    for (e, &v) in q.iter().enumerate() {
        let (half, quad, l) = (e / 128, (e % 128) / 32, e % 32);
        let lo_at = half * 64 + l + 32 * (quad & 1);
        out.ql[lo_at] |= if quad < 2 { v & 0x0f } else { (v & 0x0f) << 4 };
        out.qh[half * 32 + l] |= (v >> 4) << (2 * quad);
    }
}
