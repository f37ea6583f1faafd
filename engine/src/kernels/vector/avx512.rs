//! Attention's weighted sums and scores in 512-bit vectors, for CPUs whose
//! AVX-512 units are as wide as their registers (AMD's Zen 5 has four pipes
//! of 512 bits, so twice the multiplies and adds a cycle of 256-bit code).
//! Each output gets the same multiplies and adds in the same order as the
//! portable loops, so the same bits.

use std::arch::x86_64::*;

use super::avx::tree_sums;
use super::SCORE_TILE;

const LANES: usize = 16;

/// The whole blocks of 32 outputs `0..whole` of `out`, as
/// [`super::weighted_blocks`]: 128 outputs (eight registers) at a time,
/// then 64, then 32, so each row's load feeds as many independent sums as
/// the head size allows.
///
/// # Safety
/// AVX-512F, `whole <= out.len()`, a multiple of 32, and `rows` holds
/// `weights.len()` rows of `out.len()` values.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn weighted_blocks(out: &mut [f32], weights: &[f32], rows: &[f32], whole: usize) {
    debug_assert!(whole <= out.len() && whole.is_multiple_of(32));
    debug_assert!(rows.len() >= weights.len() * out.len());
    let mut d0 = 0;
    while d0 + 8 * LANES <= whole {
        block::<8>(out, weights, rows, d0);
        d0 += 8 * LANES;
    }
    if d0 + 4 * LANES <= whole {
        block::<4>(out, weights, rows, d0);
        d0 += 4 * LANES;
    }
    if d0 + 2 * LANES <= whole {
        block::<2>(out, weights, rows, d0);
    }
}

/// Outputs `d0..d0 + N * 16` kept in `N` registers while every row passes.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block<const N: usize>(out: &mut [f32], weights: &[f32], rows: &[f32], d0: usize) {
    let n = out.len();
    let o = out.as_mut_ptr().add(d0);
    let mut acc = [_mm512_setzero_ps(); N];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = _mm512_loadu_ps(o.add(i * LANES));
    }
    for (j, &w) in weights.iter().enumerate() {
        let row = rows.as_ptr().add(j * n + d0);
        let w = _mm512_set1_ps(w);
        for (i, a) in acc.iter_mut().enumerate() {
            let v = _mm512_loadu_ps(row.add(i * LANES));
            *a = _mm512_add_ps(*a, _mm512_mul_ps(w, v));
        }
    }
    for (i, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(o.add(i * LANES), *a);
    }
}

/// [`super::scores_tile`] for two queries at once: each register holds one
/// key's eight lane sums for `qa` in its low half and for `qb` in its high
/// half, so one multiply and one add serve both queries. The lanes, their
/// order and the final tree are the 256-bit kernel's, so the same bits.
///
/// # Safety
/// AVX-512F; `qa` and `qb` of one length, a multiple of 8, and `keys`
/// holds [`SCORE_TILE`] rows of that length.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scores_pair(
    qa: &[f32],
    qb: &[f32],
    keys: &[f32],
    scale: f32,
    out: &mut [[f32; SCORE_TILE]; 2],
) {
    let hd = qa.len();
    debug_assert!(qb.len() == hd && hd.is_multiple_of(8));
    debug_assert!(keys.len() >= SCORE_TILE * hd);
    let scale = _mm256_set1_ps(scale);
    for group in 0..SCORE_TILE / 8 {
        let rows = keys.as_ptr().add(group * 8 * hd);
        let mut acc = [_mm512_setzero_ps(); 8];
        for c in (0..hd).step_by(8) {
            let q = both(
                _mm256_loadu_ps(qa.as_ptr().add(c)),
                _mm256_loadu_ps(qb.as_ptr().add(c)),
            );
            for (j, a) in acc.iter_mut().enumerate() {
                let k = _mm256_loadu_ps(rows.add(j * hd + c));
                *a = _mm512_add_ps(*a, _mm512_mul_ps(q, both(k, k)));
            }
        }
        let low = acc.map(|a| _mm512_castps512_ps256(a));
        let high = acc.map(|a| _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a))));
        for (o, lanes) in out.iter_mut().zip([low, high]) {
            let sums = _mm256_mul_ps(tree_sums(&lanes), scale);
            _mm256_storeu_ps(o.as_mut_ptr().add(group * 8), sums);
        }
    }
}

/// `a` in the low eight lanes and `b` in the high eight.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn both(a: __m256, b: __m256) -> __m512 {
    let wide = _mm512_castpd256_pd512(_mm256_castps_pd(a));
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(wide, _mm256_castps_pd(b)))
}
