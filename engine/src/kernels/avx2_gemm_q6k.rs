//! Q6_K's parts of the eight-row batch kernel (`avx2_gemm_k.rs`), which
//! runs it beside Q4_K and Q5_K: the codes are unpacked as the row kernel
//! does (unsigned, 0..63), four of each of eight rows side by side, and
//! each sixteen values have a signed scale of their own.
//!
//! Two `maddubs` of such codes fill an i16 lane (4 x 63 x 128 = 32256), so
//! each pair is widened by `madd` with its half-group's scale: four
//! widenings per group of 32, where Q4_K's codes need one. The -32 offset
//! is taken off afterwards with the activation's sums of sixteen, and the
//! float step is the row kernel's (`avx2_k::rows_q6k`), `o += (a_d · d) ·
//! (acc - 32·Σ scale·Σy)` in f64: the results are the same bits.
//!
//! Every function here requires AVX2, FMA and F16C; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::avx2_gemm::{broadcast4, ROWS};
use super::avx2_gemm_k::{f16x8_to_f64, interleave_codes, Super};
use super::avx2_k::{act_scale, q6k_quants, Q8K_BSUMS, Q8K_QS};
use super::blocks::BlockQ6K;

/// Each row's pair `(low, high)` of signed scales as the i16 pair in its
/// lane, the form `madd` multiplies by.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn i16_pairs(low: [i8; ROWS], high: [i8; ROWS]) -> __m256i {
    let mut lanes = [0u32; ROWS];
    for (lane, (l, h)) in lanes.iter_mut().zip(low.into_iter().zip(high)) {
        *lane = l as i16 as u16 as u32 | (h as i16 as u16 as u32) << 16;
    }
    _mm256_loadu_si256(lanes.as_ptr() as *const __m256i)
}

/// Unpacks the super-blocks at `blocks` (one per row) into `into`: the
/// codes, group j's first-half scales in `scales[j]` and second-half ones
/// in `high_scales[j]` (each as `(v, v)`), both in `mins[j]` for the
/// offset, and the rows' `d`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn pack(blocks: [*const u8; ROWS], into: &mut Super) {
    let blocks = blocks.map(|b| &*(b as *const BlockQ6K));
    let mut quants = [[_mm256_setzero_si256(); 8]; ROWS];
    for (q, b) in quants.iter_mut().zip(blocks) {
        *q = q6k_quants(b);
    }
    interleave_codes(&quants, into);
    for j in 0..8 {
        let low = blocks.map(|b| b.scales[2 * j]);
        let high = blocks.map(|b| b.scales[2 * j + 1]);
        into.scales[j] = i16_pairs(low, low);
        into.high_scales[j] = i16_pairs(high, high);
        into.mins[j] = i16_pairs(low, high);
    }
    into.d = f16x8_to_f64(blocks.map(|b| b.d.bits()));
}

/// The codes' products with the activation super-blocks at `a` (one per
/// token of a tile), each pair of `maddubs` times its half-group's scale:
/// one exact i32 per row and token.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scaled_sums<const T: usize>(s: &Super, a: &[*const u8; T]) -> [__m256i; T] {
    let mut acc = [_mm256_setzero_si256(); T];
    for j in 0..8 {
        for (half, scale) in [s.scales[j], s.high_scales[j]].into_iter().enumerate() {
            for pair in 0..2 {
                let g = 4 * half + 2 * pair;
                let (q0, q1) = (s.codes[j * 8 + g], s.codes[j * 8 + g + 1]);
                for (acc, a) in acc.iter_mut().zip(a) {
                    let y = a.add(Q8K_QS + 32 * j);
                    let p = _mm256_add_epi16(
                        _mm256_maddubs_epi16(q0, broadcast4(y, g)),
                        _mm256_maddubs_epi16(q1, broadcast4(y, g + 1)),
                    );
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(p, scale));
                }
            }
        }
    }
    acc
}

/// A super-block's step for eight rows: the offset's term (each row's
/// sixteen scales times the activation's sums of sixteen, times 32) off
/// the scaled sums `acc`, then `o += (a_d · d) · acc` in f64.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn add_super_block(s: &Super, a: *const u8, acc: __m256i, o: &mut [__m256d; 2]) {
    // Group j's two activation sums of sixteen, as one i16 pair.
    let bsums = a.add(Q8K_BSUMS) as *const i32;
    let mut offset = _mm256_setzero_si256();
    for (j, both) in s.mins.iter().enumerate() {
        let pair = _mm256_set1_epi32(bsums.add(j).read_unaligned());
        offset = _mm256_add_epi32(offset, _mm256_madd_epi16(*both, pair));
    }
    let acc = _mm256_sub_epi32(acc, _mm256_slli_epi32::<5>(offset));
    let ad = _mm256_set1_pd(act_scale(a));
    let halves = [
        _mm256_castsi256_si128(acc),
        _mm256_extracti128_si256(acc, 1),
    ];
    for (h, acc) in halves.into_iter().enumerate() {
        let scale = _mm256_mul_pd(ad, s.d[h]);
        o[h] = _mm256_add_pd(o[h], _mm256_mul_pd(scale, _mm256_cvtepi32_pd(acc)));
    }
}
