//! The K-quants with a scale per sixteen values (Q2_K, Q3_K, Q6_K) in the
//! eight-row batch kernel (`avx2_gemm_k.rs`), which runs them beside Q4_K
//! and Q5_K: the codes are unpacked as the row kernels do (unsigned: Q2_K
//! 0..3, Q3_K `low + 4·high` 0..7, Q6_K 0..63), four of each of eight
//! rows side by side, and each half of a 32-value group is widened by
//! `madd` with its own scale.
//!
//! `maddubs` pairs are added in i16 before each widening: four of Q2_K's
//! or Q3_K's (at most 4 x 2 x 7 x 128 = 7168), two of Q6_K's (4 x 63 x
//! 128 = 32256). Q3_K's offset of 4 and Q6_K's of 32 are taken off
//! afterwards with the activation's sums of sixteen; Q2_K's minimums go
//! through those sums as Q4_K's do. The float steps are the row kernels'
//! (`avx2_k_low.rs`, `avx2_k::rows_q6k`): `o += (a_d · d) · (acc -
//! offset·Σ scale·Σy)`, or Q4_K's `o += a_d · (d·acc - dmin·Σ min·Σy)`;
//! the results are the same bits.
//!
//! Every function here requires AVX2, FMA and F16C; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::avx2_gemm::{broadcast4, ROWS};
use super::avx2_gemm_k::{add_super_block as add_with_minimums, f16x8_to_f64, interleave_codes};
use super::avx2_gemm_k::{Super, Q2K, Q6K};
use super::avx2_k::{act_scale, q6k_quants, Q8K_BSUMS, Q8K_QS};
use super::avx2_k_low::{q3k_quants, two_bit_fields};
use super::blocks::{BlockQ2K, BlockQ3K, BlockQ6K};
use super::dequant::q3k_scales;

/// `maddubs` results added in i16 before one `madd` widens them.
const fn maddubs_per_widening(f: u8) -> usize {
    if f == Q6K {
        2
    } else {
        4
    }
}

/// log2 of the offset taken off format `f`'s unsigned codes (Q3_K, Q6_K).
const fn offset_shift(f: u8) -> i32 {
    if f == Q6K {
        5
    } else {
        2
    }
}

/// Each row's pair `(low, high)` of signed values as the i16 pair in its
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

/// Unpacks the super-blocks of format `F` at `blocks` (one per row) into
/// `into`: the codes; group j's first-half scales in `scales[j]` and
/// second-half ones in `high_scales[j]` (each as `(v, v)`); in `mins[j]`
/// the pair that multiplies the activation's two sums of sixteen (Q2_K's
/// minimums, else the scales, for the offset); the rows' `d` (and `dmin`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn pack<const F: u8>(blocks: [*const u8; ROWS], into: &mut Super) {
    let mut quants = [[_mm256_setzero_si256(); 8]; ROWS];
    let mut scales = [[0i8; 16]; ROWS];
    let mut mins = [[0i8; 16]; ROWS];
    let (mut d, mut dmin) = ([0u16; ROWS], [0u16; ROWS]);
    for r in 0..ROWS {
        match F {
            Q2K => {
                let wb = &*(blocks[r] as *const BlockQ2K);
                quants[r] = two_bit_fields(&wb.qs);
                scales[r] = wb.scales.map(|v| (v & 0x0f) as i8);
                mins[r] = wb.scales.map(|v| (v >> 4) as i8);
                (d[r], dmin[r]) = (wb.d.bits(), wb.dmin.bits());
            }
            Q6K => {
                let wb = &*(blocks[r] as *const BlockQ6K);
                quants[r] = q6k_quants(wb);
                scales[r] = wb.scales;
                d[r] = wb.d.bits();
            }
            _ => {
                let wb = &*(blocks[r] as *const BlockQ3K);
                quants[r] = q3k_quants(wb);
                scales[r] = q3k_scales(&wb.scales);
                d[r] = wb.d.bits();
            }
        }
    }
    interleave_codes(&quants, into);
    for j in 0..8 {
        let low = scales.map(|s| s[2 * j]);
        let high = scales.map(|s| s[2 * j + 1]);
        into.scales[j] = i16_pairs(low, low);
        into.high_scales[j] = i16_pairs(high, high);
        into.mins[j] = if F == Q2K {
            i16_pairs(mins.map(|m| m[2 * j]), mins.map(|m| m[2 * j + 1]))
        } else {
            i16_pairs(low, high)
        };
    }
    into.d = f16x8_to_f64(d);
    into.dmin = f16x8_to_f64(dmin);
}

/// The codes' products with the activation super-blocks at `a` (one per
/// token of a tile), each half-group's sum times its scale: one exact i32
/// per row and token.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scaled_sums<const F: u8, const T: usize>(
    s: &Super,
    a: &[*const u8; T],
) -> [__m256i; T] {
    let n = maddubs_per_widening(F);
    let mut acc = [_mm256_setzero_si256(); T];
    for j in 0..8 {
        for (half, scale) in [s.scales[j], s.high_scales[j]].into_iter().enumerate() {
            for first in (4 * half..4 * half + 4).step_by(n) {
                for (acc, a) in acc.iter_mut().zip(a) {
                    let y = a.add(Q8K_QS + 32 * j);
                    let mut p = _mm256_setzero_si256();
                    for g in first..first + n {
                        let q = s.codes[j * 8 + g];
                        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(q, broadcast4(y, g)));
                    }
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(p, scale));
                }
            }
        }
    }
    acc
}

/// A super-block's step for eight rows. Q2_K: Q4_K's, with its minimums.
/// Q3_K and Q6_K: the offset's term (each row's sixteen scales times the
/// activation's sums of sixteen, times the offset) off the scaled sums
/// `acc`, then `o += (a_d · d) · acc` in f64.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn add_super_block<const F: u8>(
    s: &Super,
    a: *const u8,
    acc: __m256i,
    o: &mut [__m256d; 2],
) {
    if F == Q2K {
        return add_with_minimums(s.d, s.dmin, &s.mins, a, acc, o);
    }
    // Group j's two activation sums of sixteen, as one i16 pair.
    let bsums = a.add(Q8K_BSUMS) as *const i32;
    let mut offset = _mm256_setzero_si256();
    for (j, both) in s.mins.iter().enumerate() {
        let pair = _mm256_set1_epi32(bsums.add(j).read_unaligned());
        offset = _mm256_add_epi32(offset, _mm256_madd_epi16(*both, pair));
    }
    let shift = _mm_cvtsi32_si128(offset_shift(F));
    let acc = _mm256_sub_epi32(acc, _mm256_sll_epi32(offset, shift));
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
