//! Row dot products: one weight row (GGML blocks) against one activation row
//! already quantized by [`super::quantize`]. Integer products inside a block,
//! one float multiply per block, as llama.cpp does.
//!
//! Sums are carried in f64. Each block's product (an f16×f16 scale times an
//! integer) is exact in f64, so a row summed in pieces (tensor parallelism
//! splits rows across nodes) and the same row summed whole round to the
//! same f32: every layout gives the same activations as one node.
//!
//! The bodies here are plain Rust and the reference for the hand-written
//! kernels. [`dot_rows`] picks at run time: an AVX2 kernel (`avx2.rs`,
//! `avx2_k.rs`) where one exists, else these bodies compiled a second time
//! with AVX2 enabled, else these bodies as they are.

use half::{bf16, f16};

use super::dequant::{f16_at, f32_at, q3k_scales, scale_min_k4};
use crate::model::gguf::{GgmlType, QK_K};

/// Dots consecutive weight rows in `w` against `tokens` activation rows.
/// `acts` holds the activation rows back to back, each `act_row_bytes` long,
/// in `activation_type(dtype)`'s format. `out[r * tokens + t]` receives
/// dot(weight row r, activation row t).
pub fn dot_rows(
    dtype: GgmlType,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    let isa = Isa::detected().last().copied().unwrap_or(Isa::Portable);
    dot_rows_isa(isa, dtype, w, row_bytes, acts, act_row_bytes, tokens, out)
}

/// The kernel families, slowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    /// AVX2 with FMA and F16C.
    Avx2,
    /// The above plus AVX-512 VNNI on 256-bit vectors.
    Avx2Vnni,
}

impl Isa {
    /// Every family this CPU can run, slowest first (tests run them all).
    pub(crate) fn detected() -> &'static [Isa] {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                if has!("avx512vnni") && has!("avx512vl") {
                    return &[Isa::Portable, Isa::Avx2, Isa::Avx2Vnni];
                }
                return &[Isa::Portable, Isa::Avx2];
            }
        }
        &[Isa::Portable]
    }
}

/// [`dot_rows`] with the kernel family chosen by the caller. A family the
/// CPU lacks (not in [`Isa::detected`]) runs the portable bodies instead.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dot_rows_isa(
    isa: Isa,
    dtype: GgmlType,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa != Isa::Portable && Isa::detected().contains(&isa) {
            let vnni = isa == Isa::Avx2Vnni;
            // SAFETY: the CPU supports the features the function is built
            // for, and the VNNI kernels only run where it has those too.
            unsafe { dot_rows_avx2(dtype, vnni, w, row_bytes, acts, act_row_bytes, tokens, out) };
            return;
        }
    }
    dot_rows_portable(dtype, w, row_bytes, acts, act_row_bytes, tokens, out)
}

/// The hand-written AVX2 kernel for `dtype`, if there is one and the
/// buffers have the shapes it relies on (it reads through raw pointers).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn dot_rows_avx2(
    dtype: GgmlType,
    vnni: bool,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    use super::avx2::{plain, vnni as v, Q4_0, Q4_1, Q5_0, Q8_0};
    use super::avx2_k;
    type Rows = unsafe fn(&[u8], usize, &[u8], usize, usize, &mut [f64]);
    let pick = |p: Rows, q: Rows| if vnni { q } else { p };
    let kernel: Option<(Rows, usize, usize)> = match dtype {
        GgmlType::Q4_0 => Some((pick(plain::rows::<Q4_0>, v::rows::<Q4_0>), 18, 34)),
        GgmlType::Q4_1 => Some((pick(plain::rows::<Q4_1>, v::rows::<Q4_1>), 20, 36)),
        GgmlType::Q5_0 => Some((pick(plain::rows::<Q5_0>, v::rows::<Q5_0>), 22, 34)),
        GgmlType::Q8_0 => Some((pick(plain::rows::<Q8_0>, v::rows::<Q8_0>), 34, 34)),
        GgmlType::Q4K => Some((avx2_k::rows_q4k, 144, 292)),
        GgmlType::Q6K => Some((avx2_k::rows_q6k, 210, 292)),
        _ => None,
    };
    match kernel {
        Some((f, wb, ab))
            if row_bytes > 0
                && row_bytes.is_multiple_of(wb)
                && w.len().is_multiple_of(row_bytes)
                && act_row_bytes == row_bytes / wb * ab
                && acts.len() >= tokens * act_row_bytes
                && out.len() == w.len() / row_bytes * tokens =>
        {
            f(w, row_bytes, acts, act_row_bytes, tokens, out)
        }
        _ => dot_rows_portable(dtype, w, row_bytes, acts, act_row_bytes, tokens, out),
    }
}

#[inline(always)]
fn dot_rows_portable(
    dtype: GgmlType,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
        for (a, o) in acts.chunks_exact(act_row_bytes).zip(o.iter_mut()) {
            *o = dot_row(dtype, row, a);
        }
    }
}

/// One weight row against one activation row.
#[inline(always)]
pub fn dot_row(dtype: GgmlType, w: &[u8], a: &[u8]) -> f64 {
    match dtype {
        GgmlType::Q4_0 => dot_q4_0(w, a),
        GgmlType::Q4_1 => dot_q4_1(w, a),
        GgmlType::Q5_0 => dot_q5_0(w, a),
        GgmlType::Q5_1 => dot_q5_1(w, a),
        GgmlType::Q8_0 => dot_q8_0(w, a),
        GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => {
            dot_k(dtype, w, a)
        }
        GgmlType::F32 => dot_f32(w, a),
        GgmlType::F16 => dot_f16(w, a),
        GgmlType::BF16 => dot_bf16(w, a),
        // Activation-only formats never appear as weights (the loader refuses them).
        GgmlType::Q8_1 | GgmlType::Q8K => 0.0,
    }
}

/// The product of two f16 block scales, exact in f32 and widened.
#[inline(always)]
fn scale(w: &[u8], wat: usize, a: &[u8], aat: usize) -> f64 {
    (f16_at(w, wat) * f16_at(a, aat)) as f64
}

#[inline(always)]
fn i8s(b: &[u8]) -> impl Iterator<Item = i32> + '_ {
    b.iter().map(|&v| v as i8 as i32)
}

#[inline(always)]
fn dot_q4_0(w: &[u8], a: &[u8]) -> f64 {
    let mut sum = 0.0f64;
    for (wb, ab) in w.chunks_exact(18).zip(a.chunks_exact(34)) {
        let (qs, y) = (&wb[2..18], &ab[2..34]);
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += ((qs[j] & 0x0f) as i32 - 8) * (y[j] as i8 as i32)
                + ((qs[j] >> 4) as i32 - 8) * (y[j + 16] as i8 as i32);
        }
        sum += sumi as f64 * scale(wb, 0, ab, 0);
    }
    sum
}

#[inline(always)]
fn dot_q4_1(w: &[u8], a: &[u8]) -> f64 {
    let mut sum = 0.0f64;
    for (wb, ab) in w.chunks_exact(20).zip(a.chunks_exact(36)) {
        let (qs, y) = (&wb[4..20], &ab[4..36]);
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += (qs[j] & 0x0f) as i32 * (y[j] as i8 as i32)
                + (qs[j] >> 4) as i32 * (y[j + 16] as i8 as i32);
        }
        sum += sumi as f64 * scale(wb, 0, ab, 0) + scale(wb, 2, ab, 2);
    }
    sum
}

#[inline(always)]
fn dot_q5_0(w: &[u8], a: &[u8]) -> f64 {
    let mut sum = 0.0f64;
    for (wb, ab) in w.chunks_exact(22).zip(a.chunks_exact(34)) {
        let qh = u32::from_le_bytes([wb[2], wb[3], wb[4], wb[5]]);
        let (qs, y) = (&wb[6..22], &ab[2..34]);
        let mut sumi = 0i32;
        for j in 0..16 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((qs[j] & 0x0f) as u32 | h0) as i32 - 16;
            let x1 = ((qs[j] >> 4) as u32 | h1) as i32 - 16;
            sumi += x0 * (y[j] as i8 as i32) + x1 * (y[j + 16] as i8 as i32);
        }
        sum += sumi as f64 * scale(wb, 0, ab, 0);
    }
    sum
}

#[inline(always)]
fn dot_q5_1(w: &[u8], a: &[u8]) -> f64 {
    let mut sum = 0.0f64;
    for (wb, ab) in w.chunks_exact(24).zip(a.chunks_exact(36)) {
        let qh = u32::from_le_bytes([wb[4], wb[5], wb[6], wb[7]]);
        let (qs, y) = (&wb[8..24], &ab[4..36]);
        let mut sumi = 0i32;
        for j in 0..16 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((qs[j] & 0x0f) as u32 | h0) as i32;
            let x1 = ((qs[j] >> 4) as u32 | h1) as i32;
            sumi += x0 * (y[j] as i8 as i32) + x1 * (y[j + 16] as i8 as i32);
        }
        sum += sumi as f64 * scale(wb, 0, ab, 0) + scale(wb, 2, ab, 2);
    }
    sum
}

#[inline(always)]
fn dot_q8_0(w: &[u8], a: &[u8]) -> f64 {
    let mut sum = 0.0f64;
    for (wb, ab) in w.chunks_exact(34).zip(a.chunks_exact(34)) {
        let sumi: i32 = i8s(&wb[2..34])
            .zip(i8s(&ab[2..34]))
            .map(|(x, y)| x * y)
            .sum();
        sum += sumi as f64 * scale(wb, 0, ab, 0);
    }
    sum
}

/// K-quants: unpack each super-block to 256 small integers plus per-group
/// integer scales (and mins), then take integer dots per group.
#[inline(always)]
fn dot_k(dtype: GgmlType, w: &[u8], a: &[u8]) -> f64 {
    let bb = dtype.block_bytes();
    let mut q = [0i8; QK_K];
    let mut sum = 0.0f64;
    for (wb, ab) in w.chunks_exact(bb).zip(a.chunks_exact(292)) {
        let dy = f32_at(ab, 0) as f64;
        let y = &ab[4..4 + QK_K];
        let bsum =
            |g: usize| i16::from_le_bytes([ab[4 + QK_K + 2 * g], ab[5 + QK_K + 2 * g]]) as i32;
        match dtype {
            GgmlType::Q2K => {
                let scales = &wb[0..16];
                let qs = &wb[16..80];
                for (e, v) in q.iter_mut().enumerate() {
                    let (half, r) = (e / 128, e % 128);
                    *v = ((qs[half * 32 + r % 32] >> (2 * (r / 32))) & 3) as i8;
                }
                let (mut acc, mut mins) = (0i32, 0i32);
                for (g, &sc) in scales.iter().enumerate() {
                    acc += (sc & 0x0f) as i32 * group_dot(&q, y, g * 16, 16);
                    mins += (sc >> 4) as i32 * bsum(g);
                }
                sum +=
                    dy * (f16_at(wb, 80) as f64 * acc as f64 - f16_at(wb, 82) as f64 * mins as f64);
            }
            GgmlType::Q3K => {
                let hmask = &wb[0..32];
                let qs = &wb[32..96];
                let scales = q3k_scales(&wb[96..108]);
                for (e, v) in q.iter_mut().enumerate() {
                    let (half, r) = (e / 128, e % 128);
                    let low = ((qs[half * 32 + r % 32] >> (2 * (r / 32))) & 3) as i8;
                    let bit = 1u8 << (half * 4 + r / 32);
                    *v = low - if hmask[r % 32] & bit != 0 { 0 } else { 4 };
                }
                let mut acc = 0i32;
                for (g, &s) in scales.iter().enumerate() {
                    acc += s as i32 * group_dot(&q, y, g * 16, 16);
                }
                sum += dy * f16_at(wb, 108) as f64 * acc as f64;
            }
            GgmlType::Q4K | GgmlType::Q5K => {
                let scales = &wb[4..16];
                let (qh, qs) = if dtype == GgmlType::Q5K {
                    (Some(&wb[16..48]), &wb[48..176])
                } else {
                    (None, &wb[16..144])
                };
                for (e, v) in q.iter_mut().enumerate() {
                    let (chunk, hi, l) = (e / 64, (e % 64) / 32, e % 32);
                    let byte = qs[chunk * 32 + l];
                    let mut x = if hi == 0 { byte & 0x0f } else { byte >> 4 };
                    if let Some(qh) = qh {
                        if qh[l] & (1 << (e / 32)) != 0 {
                            x += 16;
                        }
                    }
                    *v = x as i8;
                }
                let (mut acc, mut mins) = (0i32, 0i32);
                for j in 0..8 {
                    let (sc, m) = scale_min_k4(j, scales);
                    acc += sc as i32 * group_dot(&q, y, j * 32, 32);
                    mins += m as i32 * (bsum(2 * j) + bsum(2 * j + 1));
                }
                sum +=
                    dy * (f16_at(wb, 0) as f64 * acc as f64 - f16_at(wb, 2) as f64 * mins as f64);
            }
            GgmlType::Q6K => {
                let (ql, qh, sc) = (&wb[0..128], &wb[128..192], &wb[192..208]);
                for (e, v) in q.iter_mut().enumerate() {
                    let (half, r) = (e / 128, e % 128);
                    let (quad, l) = (r / 32, r % 32);
                    let lo = ql[half * 64 + l + 32 * (quad & 1)];
                    let lo = if quad < 2 { lo & 0x0f } else { lo >> 4 };
                    let hi = (qh[half * 32 + l] >> (2 * quad)) & 3;
                    *v = (lo | (hi << 4)) as i8 - 32;
                }
                let mut acc = 0i32;
                for (g, &s) in sc.iter().enumerate() {
                    acc += (s as i8) as i32 * group_dot(&q, y, g * 16, 16);
                }
                sum += dy * f16_at(wb, 208) as f64 * acc as f64;
            }
            _ => {}
        }
    }
    sum
}

#[inline(always)]
fn group_dot(q: &[i8; QK_K], y: &[u8], start: usize, len: usize) -> i32 {
    q[start..start + len]
        .iter()
        .zip(&y[start..start + len])
        .map(|(&a, &b)| a as i32 * (b as i8) as i32)
        .sum()
}

#[inline(always)]
fn dot_f32(w: &[u8], a: &[u8]) -> f64 {
    w.chunks_exact(4)
        .zip(a.chunks_exact(4))
        .map(|(x, y)| f32_at(x, 0) as f64 * f32_at(y, 0) as f64)
        .sum()
}

#[inline(always)]
fn dot_f16(w: &[u8], a: &[u8]) -> f64 {
    w.chunks_exact(2)
        .zip(a.chunks_exact(4))
        .map(|(x, y)| f16::from_le_bytes([x[0], x[1]]).to_f64() * f32_at(y, 0) as f64)
        .sum()
}

#[inline(always)]
fn dot_bf16(w: &[u8], a: &[u8]) -> f64 {
    w.chunks_exact(2)
        .zip(a.chunks_exact(4))
        .map(|(x, y)| bf16::from_le_bytes([x[0], x[1]]).to_f64() * f32_at(y, 0) as f64)
        .sum()
}
