//! Prefill for Q4_K weights interleaved at load, on AVX-512 with VNNI:
//! sixteen rows at a time, two groups of eight side by side in one
//! 512-bit vector, as `avx512_gemm.rs` does for Q4_0 and Q4_1. The
//! eight-row kernel (`avx2_gemm_k.rs`) spends one 256-bit `vpdpbusd` on
//! eight rows, four codes and one token; here one covers sixteen rows.
//!
//! The integers are the eight-row kernel's: a 32-value group's codes
//! times the activation's bytes, summed into i32 by `vpdpbusd`, times
//! the group's 6-bit scale (`mullo`); the minimums' term, each group's
//! minimum times the activation's two sums of sixteen, by `vpdpwssd`
//! (VNNI's `madd` and add in one, on the i16 pair `(min, min)`). Both
//! are exact, and the float step is the row kernel's expression
//! `o += a_d * (d * acc - dmin * msum)` in f64, in the same order: the
//! results are the same bits.
//!
//! Every function here requires AVX2, FMA, F16C, AVX-512F, AVX-512VL and
//! AVX-512 VNNI; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::mem::size_of;

use super::avx2_interleaved::q4k_scales_of_rows;
use super::avx2_k::{act_scale, Q8K_BSUMS, Q8K_BYTES, Q8K_QS};
use super::avx512_gemm::f16_pair;
use super::blocks::BlockQ4K;
use super::interleave::{GROUP_SUPER, K_CODES_AT, K_DMIN_AT};

/// Rows per vector: two groups of eight interleaved at load.
const ROWS: usize = 16;

/// Tokens multiplied by each code vector loaded.
const TILE: usize = 4;

/// Super-blocks unpacked at once: 4 x 4 KiB of codes, which stay in L1
/// while every token reads them.
const CHUNK_SUPERS: usize = 4;

/// One super-block of sixteen rows: `codes[j * 8 + g]` holds codes
/// `4g..4g + 4` of group j, rows 0..8 in the low half and 8..16 in the
/// high one (row r in i32 lane r); `scales[j]` group j's scale of row r
/// in lane r; `mins[j]` its minimum as the i16 pair `(v, v)`; `d` and
/// `dmin` the rows' f16 scales as f64, rows 0..8 and 8..16.
struct Wide {
    codes: [__m512i; 64],
    scales: [__m512i; 8],
    mins: [__m512i; 8],
    d: [__m512d; 2],
    dmin: [__m512d; 2],
}

/// Dots the first `rows / 16 * 16` rows of `w`, Q4_K interleaved at load,
/// with `tokens` Q8_K activation rows (layout as `dot::dot_rows`);
/// returns how many rows it did.
///
/// # Safety
/// The CPU must have the features named above. `w` holds whole rows of
/// `row_bytes` in the interleaved layout, `acts` `tokens` rows of
/// `act_row_bytes` with the same number of super-blocks, `out` rows x
/// tokens values.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(in crate::kernels) unsafe fn rows_q4k_interleaved(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) -> usize {
    let supers = row_bytes / size_of::<BlockQ4K>();
    let pairs = w.len() / row_bytes / ROWS;
    if pairs == 0 {
        return 0;
    }
    // SAFETY: all-zero bits are valid vectors.
    let mut chunk: Vec<Wide> = (0..CHUNK_SUPERS)
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    let zero = [_mm512_setzero_pd(); 2];
    let mut sums = vec![zero; tokens];
    for p in 0..pairs {
        let groups = [0, 1].map(|h| w.as_ptr().add((p * ROWS + h * 8) * row_bytes));
        sums.fill(zero);
        for first in (0..supers).step_by(CHUNK_SUPERS) {
            let end = (first + CHUNK_SUPERS).min(supers);
            for (k, i) in (first..end).enumerate() {
                pack(groups, i, &mut chunk[k]);
            }
            let whole = tokens / TILE * TILE;
            for t0 in (0..whole).step_by(TILE) {
                let o = sums.get_unchecked_mut(t0..t0 + TILE);
                tile::<TILE>(&chunk, first..end, acts, act_row_bytes, t0, o);
            }
            for t0 in whole..tokens {
                let o = sums.get_unchecked_mut(t0..t0 + 1);
                tile::<1>(&chunk, first..end, acts, act_row_bytes, t0, o);
            }
        }
        for (t, o) in sums.iter().enumerate() {
            let mut row = [0.0f64; ROWS];
            _mm512_storeu_pd(row.as_mut_ptr(), o[0]);
            _mm512_storeu_pd(row.as_mut_ptr().add(8), o[1]);
            for (r, v) in row.iter().enumerate() {
                *out.get_unchecked_mut((p * ROWS + r) * tokens + t) = *v;
            }
        }
    }
    pairs * ROWS
}

/// Byte r of `lo` (rows 0..8) and of `hi` (rows 8..16) in i32 lane r.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn lanes_of_rows(lo: u64, hi: u64) -> __m512i {
    _mm512_cvtepu8_epi32(_mm_set_epi64x(hi as i64, lo as i64))
}

/// Sixteen f32 values as two f64 vectors (lanes 0..8, 8..16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn f64_halves(v: __m512) -> [__m512d; 2] {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    [
        _mm512_cvtps_pd(_mm512_castps512_ps256(v)),
        _mm512_cvtps_pd(hi),
    ]
}

/// Unpacks super-block `i` of the two groups of eight rows at `groups`:
/// sub-chunk s of each group's chunk c is codes `4s..4s + 4` of groups
/// `2c` (low nibbles) and `2c + 1` (high).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn pack(groups: [*const u8; 2], i: usize, into: &mut Wide) {
    let [lo, hi] = groups.map(|g| g.add(i * GROUP_SUPER));
    let mask = _mm512_set1_epi8(0x0F);
    for c in 0..4 {
        for s in 0..8 {
            let at = K_CODES_AT + 256 * c + 32 * s;
            let both = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(lo.add(at) as *const __m256i)),
                _mm256_loadu_si256(hi.add(at) as *const __m256i),
                1,
            );
            into.codes[2 * c * 8 + s] = _mm512_and_si512(both, mask);
            into.codes[(2 * c + 1) * 8 + s] = _mm512_and_si512(_mm512_srli_epi32(both, 4), mask);
        }
    }
    let (lo_scales, lo_mins) = q4k_scales_of_rows(lo);
    let (hi_scales, hi_mins) = q4k_scales_of_rows(hi);
    for j in 0..8 {
        into.scales[j] = lanes_of_rows(lo_scales[j], hi_scales[j]);
        let m = lanes_of_rows(lo_mins[j], hi_mins[j]);
        into.mins[j] = _mm512_or_si512(m, _mm512_slli_epi32(m, 16));
    }
    into.d = f64_halves(f16_pair(lo, hi));
    into.dmin = f64_halves(f16_pair(lo.add(K_DMIN_AT), hi.add(K_DMIN_AT)));
}

/// Super-blocks `supers` (packed in `chunk`) against tokens `t0..t0 + T`,
/// whose sixteen row sums are `o`: the tokens share every load of codes,
/// and each token's super-blocks are added in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn tile<const T: usize>(
    chunk: &[Wide],
    supers: std::ops::Range<usize>,
    acts: &[u8],
    act_row_bytes: usize,
    t0: usize,
    o: &mut [[__m512d; 2]],
) {
    for (k, i) in supers.enumerate() {
        let a: [*const u8; T] =
            std::array::from_fn(|t| acts.as_ptr().add((t0 + t) * act_row_bytes + i * Q8K_BYTES));
        let s = &chunk[k];
        let scaled = scaled_sums::<T>(s, &a);
        for t in 0..T {
            add_super_block(s, a[t], scaled[t], o.get_unchecked_mut(t));
        }
    }
}

/// The codes' products with the activation super-blocks at `a` (one per
/// token), each group's i32 sum times its scale: one exact i32 per row
/// and token.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn scaled_sums<const T: usize>(s: &Wide, a: &[*const u8; T]) -> [__m512i; T] {
    let mut acc = [_mm512_setzero_si512(); T];
    for j in 0..8 {
        let mut g2 = [[_mm512_setzero_si512(); 2]; T];
        for g in 0..8 {
            let q = s.codes[j * 8 + g];
            for (g2, a) in g2.iter_mut().zip(a) {
                let y = (a.add(Q8K_QS + 32 * j + 4 * g) as *const i32).read_unaligned();
                g2[g % 2] = _mm512_dpbusd_epi32(g2[g % 2], q, _mm512_set1_epi32(y));
            }
        }
        for (acc, g2) in acc.iter_mut().zip(g2) {
            let group = _mm512_add_epi32(g2[0], g2[1]);
            *acc = _mm512_add_epi32(*acc, _mm512_mullo_epi32(group, s.scales[j]));
        }
    }
    acc
}

/// A super-block's step for sixteen rows and one token: the minimums'
/// term, then the row kernel's float expression
/// `o += a_d * (d * acc - dmin * msum)` in f64.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn add_super_block(s: &Wide, a: *const u8, acc: __m512i, o: &mut [__m512d; 2]) {
    // Group j's two activation sums of sixteen, as one i16 pair.
    let bsums = a.add(Q8K_BSUMS) as *const i32;
    let mut msum = _mm512_setzero_si512();
    for (j, m) in s.mins.iter().enumerate() {
        let pair = _mm512_set1_epi32(bsums.add(j).read_unaligned());
        msum = _mm512_dpwssd_epi32(msum, *m, pair);
    }
    let ad = _mm512_set1_pd(act_scale(a));
    let halves = [
        (_mm512_castsi512_si256(acc), _mm512_castsi512_si256(msum)),
        (
            _mm512_extracti64x4_epi64(acc, 1),
            _mm512_extracti64x4_epi64(msum, 1),
        ),
    ];
    for (h, (acc, msum)) in halves.into_iter().enumerate() {
        let step = _mm512_sub_pd(
            _mm512_mul_pd(s.d[h], _mm512_cvtepi32_pd(acc)),
            _mm512_mul_pd(s.dmin[h], _mm512_cvtepi32_pd(msum)),
        );
        o[h] = _mm512_add_pd(o[h], _mm512_mul_pd(ad, step));
    }
}
