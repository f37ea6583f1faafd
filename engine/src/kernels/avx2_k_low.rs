//! Hand-written AVX2 kernels for the low-bit K-quants, Q2_K and Q3_K
//! weights against Q8_K activations (the bulk of Q2_K and Q3_K_* files).
//!
//! As in `avx2_k.rs`, each 256-value super-block is unpacked once into
//! eight vectors of 32 unsigned bytes and dotted with every token row;
//! each vector is two groups of 16, whose scales multiply the `maddubs`
//! pairs with one `madd`. Per super-block the integer sums are exact and
//! the float step is the portable body's f64 expression (`dot.rs`), in
//! the same order: results are bitwise equal to it.
//!
//! Every function here requires AVX2, FMA and F16C; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use std::mem::size_of;

use super::avx2::{f16_to_f32, hsum_epi32};
use super::avx2_k::{act_scale, group_pair_scales, prefetch_ahead, Q8K_BSUMS, Q8K_BYTES, Q8K_QS};
use super::blocks::{as_blocks, BlockQ2K, BlockQ3K};

/// The 2-bit fields of a Q2_K or Q3_K super-block's 64 bytes of `qs`:
/// vector k (values 32k..32k + 32) is bits `2(k % 4)..` of bytes
/// `32(k / 4)..32(k / 4) + 32`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn two_bit_fields(qs: &[u8; 64]) -> [__m256i; 8] {
    let three = _mm256_set1_epi8(3);
    let mut q = [_mm256_setzero_si256(); 8];
    for half in 0..2 {
        let mut v = _mm256_loadu_si256(qs.as_ptr().add(32 * half) as *const __m256i);
        for k in 0..4 {
            q[4 * half + k] = _mm256_and_si256(v, three);
            // Bits that cross into the next byte are masked off above.
            v = _mm256_srli_epi16(v, 2);
        }
    }
    q
}

/// A Q2_K super-block's quants, its group scales as `madd` factors, and
/// its sixteen minimums as i16 lanes (lined up with the activation's
/// group sums).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q2k_unpack(wb: &BlockQ2K) -> ([__m256i; 8], [__m256i; 8], __m256i) {
    let packed = _mm_loadu_si128(wb.scales.as_ptr() as *const __m128i);
    let low = _mm_and_si128(packed, _mm_set1_epi8(0x0f));
    let high = _mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0f));
    let scales = group_pair_scales(_mm256_cvtepu8_epi16(low));
    (two_bit_fields(&wb.qs), scales, _mm256_cvtepu8_epi16(high))
}

/// Q3_K's sixteen 6-bit scales, less 32, as i16 lanes (the values of
/// `dequant::q3k_scales`, four at a time): bytes 0-7 hold scales 0-7's low
/// four bits (low nibbles) and scales 8-15's (high nibbles); bytes 8-11
/// hold the top two bits, scale j's at bits `2(j / 4)` of byte `8 + j % 4`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q3k_scales(q: &[u8; 12]) -> __m256i {
    let word = |i: usize| u32::from_le_bytes([q[i], q[i + 1], q[i + 2], q[i + 3]]);
    let (a, b, c) = (word(0), word(4), word(8));
    const LOW4: u32 = 0x0f0f_0f0f;
    const TOP2: u32 = 0x0303_0303;
    let quads = _mm_setr_epi32(
        ((a & LOW4) | (c & TOP2) << 4) as i32,
        ((b & LOW4) | ((c >> 2) & TOP2) << 4) as i32,
        (((a >> 4) & LOW4) | ((c >> 4) & TOP2) << 4) as i32,
        (((b >> 4) & LOW4) | ((c >> 6) & TOP2) << 4) as i32,
    );
    _mm256_sub_epi16(_mm256_cvtepu8_epi16(quads), _mm256_set1_epi16(32))
}

/// A Q3_K super-block's quants as `low + 4 * high` (0..7), its group
/// scales as `madd` factors, and the sixteen scales as i16 lanes (for the
/// offset).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q3k_unpack(wb: &BlockQ3K) -> ([__m256i; 8], [__m256i; 8], __m256i) {
    let sc16 = q3k_scales(&wb.scales);
    (q3k_quants(wb), group_pair_scales(sc16), sc16)
}

/// A Q3_K super-block's quants as `low + 4 * high` (0..7), eight vectors
/// of 32 in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q3k_quants(wb: &BlockQ3K) -> [__m256i; 8] {
    let four = _mm256_set1_epi8(4);
    let mut q = two_bit_fields(&wb.qs);
    // Vector k's high bits are bit k of hmask's 32 bytes; bit 0 of each
    // byte is moved to bit 2 (4) and the rest shifted down.
    let mut bits = _mm256_loadu_si256(wb.hmask.as_ptr() as *const __m256i);
    for qk in q.iter_mut() {
        let high = _mm256_and_si256(_mm256_slli_epi16(bits, 2), four);
        *qk = _mm256_or_si256(*qk, high);
        bits = _mm256_srli_epi16(bits, 1);
    }
    q
}

/// `Σ_k madd(maddubs(q[k], y[k]), sc[k])` as eight i32 lanes, added as a
/// tree (integer sums are exact in any order): a chain of eight adds
/// would make every token of a batch wait on the one before.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scaled_lanes(
    q: &[__m256i; 8],
    sc: &[__m256i; 8],
    y: &[__m256i; 8],
) -> __m256i {
    let mut p = [_mm256_setzero_si256(); 8];
    for k in 0..8 {
        p[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], y[k]), sc[k]);
    }
    let quads = [
        _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3])),
        _mm256_add_epi32(_mm256_add_epi32(p[4], p[5]), _mm256_add_epi32(p[6], p[7])),
    ];
    _mm256_add_epi32(quads[0], quads[1])
}

/// The super-block's products with the activation super-block at `a`:
/// `Σ_k madd(maddubs(q[k], y[k]), sc[k])`, an exact i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scaled_sum(q: &[__m256i; 8], sc: &[__m256i; 8], a: *const u8) -> i32 {
    let mut accv = _mm256_setzero_si256();
    for k in 0..8 {
        let y = _mm256_loadu_si256(a.add(Q8K_QS + 32 * k) as *const __m256i);
        let p = _mm256_maddubs_epi16(q[k], y);
        accv = _mm256_add_epi32(accv, _mm256_madd_epi16(p, sc[k]));
    }
    hsum_epi32(accv)
}

/// The activation's sixteen group sums times `per_group`, summed.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group_sums_times(a: *const u8, per_group: __m256i) -> i32 {
    let bs = _mm256_loadu_si256(a.add(Q8K_BSUMS) as *const __m256i);
    hsum_epi32(_mm256_madd_epi16(bs, per_group))
}

/// Q2_K weights: sixteen bytes of 4-bit scales (low nibble) and minimums
/// (high), 64 bytes of 2-bit quants, f16 d and dmin. Quants are 0..3, so
/// a `maddubs` pair is at most 2 x 3 x 128.
///
/// # Safety
/// As `avx2::rows`: AVX2/FMA/F16C, whole rows, `tokens` activation rows
/// with as many super-blocks as a weight row, `out` rows × tokens.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows_q2k(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
        o.fill(0.0);
        for (i, wb) in as_blocks::<BlockQ2K>(row).iter().enumerate() {
            prefetch_ahead((wb as *const BlockQ2K).cast(), size_of::<BlockQ2K>());
            let d = f16_to_f32(wb.d.bits()) as f64;
            let dmin = f16_to_f32(wb.dmin.bits()) as f64;
            let (q, sc, mins) = q2k_unpack(wb);
            for (t, o) in o.iter_mut().enumerate() {
                let a = acts.as_ptr().add(t * act_row_bytes + i * Q8K_BYTES);
                let acc = scaled_sum(&q, &sc, a);
                let msum = group_sums_times(a, mins);
                *o += act_scale(a) * (d * acc as f64 - dmin * msum as f64);
            }
        }
    }
}

/// Q3_K weights: 32 bytes of high bits (`hmask`), 64 bytes of low bit
/// pairs, twelve bytes of sixteen signed 6-bit scales, f16 d. A value is
/// its two low bits, less 4 where its high bit is clear (-4..3); here it
/// is unpacked as `low + 4 * high` (0..7) and `4 Σ scale·Σy` taken off
/// with the activation's group sums.
///
/// # Safety
/// As [`rows_q2k`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows_q3k(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
        o.fill(0.0);
        for (i, wb) in as_blocks::<BlockQ3K>(row).iter().enumerate() {
            prefetch_ahead((wb as *const BlockQ3K).cast(), size_of::<BlockQ3K>());
            let d = f16_to_f32(wb.d.bits()) as f64;
            let (q, sc, sc16) = q3k_unpack(wb);
            for (t, o) in o.iter_mut().enumerate() {
                let a = acts.as_ptr().add(t * act_row_bytes + i * Q8K_BYTES);
                let acc = scaled_sum(&q, &sc, a) - 4 * group_sums_times(a, sc16);
                *o += act_scale(a) * d * acc as f64;
            }
        }
    }
}
