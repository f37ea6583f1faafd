//! Decode (one token) for Q2_K, Q3_K and Q6_K on AVX2, four weight rows
//! at a time: each super-block of the four rows is unpacked once, the
//! activation super-block loaded once for all four, their integer sums
//! reduced together and the float step run on the four rows as one f64
//! vector. The row kernels (`avx2_k.rs`, `avx2_k_low.rs`) load the
//! activation once per row and reduce each row's sums on its own; they
//! take the rows left over. Batches run the eight-row kernel
//! (`avx2_gemm_k.rs`).
//!
//! The float step is the row kernels' expression, per row, and each row
//! adds its super-blocks in order: the results are the
//! row kernels' bits.
//!
//! Every function here requires AVX2, FMA and F16C; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::mem::size_of;

use super::avx2::reduce4;
use super::avx2_k::{
    act_scale, act_super_block, f16x4_to_f64, prefetch_next_rows, q6k_unpack, Q6kUnpacked,
    Q8K_BYTES,
};
use super::avx2_k_low::{q2k_unpack, q3k_unpack, scaled_lanes};
use super::blocks::{BlockQ2K, BlockQ3K, BlockQ6K};

/// Which K-quant a kernel is compiled for (a const parameter).
pub(super) const Q2K: u8 = 0;
pub(super) const Q3K: u8 = 1;
pub(super) const Q6K: u8 = 2;

/// Rows taken together.
const ROWS: usize = 4;

/// Bytes of one super-block of format `f`.
const fn super_bytes(f: u8) -> usize {
    match f {
        Q2K => size_of::<BlockQ2K>(),
        Q3K => size_of::<BlockQ3K>(),
        _ => size_of::<BlockQ6K>(),
    }
}

/// Whether format `f` has a minimum per group (`d * acc - dmin * msum`),
/// rather than an offset on its unsigned quants (`acc - offset * Σ
/// scale·Σy`, 4 for Q3_K, 32 for Q6_K).
const fn has_minimum(f: u8) -> bool {
    f == Q2K
}

/// log2 of the offset taken off format `f`'s unsigned quants.
const fn offset_shift(f: u8) -> i32 {
    if f == Q3K {
        2
    } else {
        5
    }
}

/// One row's super-block unpacked: quants, group scales as `madd` factors,
/// and what multiplies the activation's group sums (the minimums, or the
/// scales for the offset), with the f16 `d` and `dmin` bits.
#[derive(Clone, Copy)]
struct Unpacked {
    q: [__m256i; 8],
    sc: [__m256i; 8],
    per_group: __m256i,
    d: u16,
    dmin: u16,
}

/// Super-block `b` of format `F`, unpacked.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack<const F: u8>(b: *const u8) -> Unpacked {
    match F {
        Q2K => {
            let wb = &*(b as *const BlockQ2K);
            let (q, sc, per_group) = q2k_unpack(wb);
            let (d, dmin) = (wb.d.bits(), wb.dmin.bits());
            Unpacked {
                q,
                sc,
                per_group,
                d,
                dmin,
            }
        }
        Q3K => {
            let wb = &*(b as *const BlockQ3K);
            let (q, sc, per_group) = q3k_unpack(wb);
            let d = wb.d.bits();
            Unpacked {
                q,
                sc,
                per_group,
                d,
                dmin: 0,
            }
        }
        _ => {
            let wb = &*(b as *const BlockQ6K);
            let Q6kUnpacked { q, sc, sc16 } = q6k_unpack(wb);
            let d = wb.d.bits();
            Unpacked {
                q,
                sc,
                per_group: sc16,
                d,
                dmin: 0,
            }
        }
    }
}

/// One super-block's f64 term for four rows and one token, from the rows'
/// integer sums `acc`, their group-sum products `per_group`, their f16
/// scales `d`, `dmin` (as f64) and the activation's scale `a`: the row
/// kernels' expression, `a * (d * acc - dmin * msum)` for the formats with
/// minimums, `(a * d) * (acc - offset * Σscale·Σy)` for the others.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_step<const F: u8>(
    acc: __m128i,
    per_group: __m128i,
    d: __m256d,
    dmin: __m256d,
    a: f64,
) -> __m256d {
    if has_minimum(F) {
        let step = _mm256_sub_pd(
            _mm256_mul_pd(d, _mm256_cvtepi32_pd(acc)),
            _mm256_mul_pd(dmin, _mm256_cvtepi32_pd(per_group)),
        );
        _mm256_mul_pd(_mm256_set1_pd(a), step)
    } else {
        let shift = _mm_cvtsi32_si128(offset_shift(F));
        let acc = _mm_sub_epi32(acc, _mm_sll_epi32(per_group, shift));
        let scale = _mm256_mul_pd(_mm256_set1_pd(a), d);
        _mm256_mul_pd(scale, _mm256_cvtepi32_pd(acc))
    }
}

/// One token against the first `rows / 4 * 4` rows of format `F`: the
/// four rows' super-blocks unpacked and dotted with the activation's, the
/// next four rows prefetched in one linear pass meanwhile. Returns how
/// many rows it did; `out[r]` receives row r's dot.
///
/// # Safety
/// As [`rows`] with one token.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows_one_token<const F: u8>(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    out: &mut [f64],
) -> usize {
    let sb = super_bytes(F);
    let supers = row_bytes / sb;
    let groups = w.len() / row_bytes / ROWS;
    for g in 0..groups {
        let base = w.as_ptr().add(g * ROWS * row_bytes);
        let mut o = _mm256_setzero_pd();
        for i in 0..supers {
            prefetch_next_rows(base, row_bytes, i, sb);
            let a = acts.as_ptr().add(i * Q8K_BYTES);
            let (y, bs) = act_super_block(a);
            let mut lanes = [_mm256_setzero_si256(); ROWS];
            let mut per_group = [_mm256_setzero_si256(); ROWS];
            let (mut d, mut dmin) = (0u64, 0u64);
            for r in 0..ROWS {
                let u = unpack::<F>(base.add(r * row_bytes + i * sb));
                lanes[r] = scaled_lanes(&u.q, &u.sc, &y);
                per_group[r] = _mm256_madd_epi16(bs, u.per_group);
                d |= (u.d as u64) << (16 * r);
                dmin |= (u.dmin as u64) << (16 * r);
            }
            let (d, dmin) = (f16x4_to_f64(d), f16x4_to_f64(dmin));
            let step = float_step::<F>(reduce4(lanes), reduce4(per_group), d, dmin, act_scale(a));
            o = _mm256_add_pd(o, step);
        }
        _mm256_storeu_pd(out.as_mut_ptr().add(g * ROWS), o);
    }
    groups * ROWS
}
