//! Q2_K, Q3_K and Q6_K on AVX2, four weight rows at a time: one token
//! (decode) for the three, a batch (prefill) for Q2_K and Q3_K. Each
//! super-block of the four rows is unpacked once, each token's activation
//! super-block loaded once for all four, their integer sums reduced
//! together and the float step run on the four rows as one f64 vector.
//! The row kernels (`avx2_k.rs`, `avx2_k_low.rs`) load each activation
//! once per row and reduce each row's sums on its own; they take the rows
//! left over. Q5_K and Q6_K batches run the eight-row kernel
//! (`avx2_gemm_k.rs`), whose rows are lanes and need no horizontal sums.
//!
//! The float step is the row kernels' expression, per row and token, and
//! each (row, token) adds its super-blocks in order: the results are the
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

/// Which K-quant a batch kernel is compiled for (a const parameter).
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

/// Rows whose super-blocks stay in L2 while every tile of tokens runs
/// over them (64 rows of a 4096-wide Q3_K weight: 110 KiB).
const ROW_BLOCK: usize = 64;

/// Tokens taken together: one super-block of their activations (32 x 292
/// bytes) stays in L1 while every group of four rows of a block reads it.
const TOKEN_TILE: usize = 32;

/// Dots the first `rows / 4 * 4` weight rows of format `F` in `w` with
/// `tokens` Q8_K activation rows (layout as `dot::dot_rows`); returns how
/// many rows it did.
///
/// Blocked as a GEMM: for each block of [`ROW_BLOCK`] rows and each tile
/// of [`TOKEN_TILE`] tokens, super-block by super-block, every group of
/// four rows is unpacked and dotted with the tile's tokens. The weights
/// are read from memory once per block, each row is unpacked once per
/// tile, and each (row, token) still adds its super-blocks in order.
///
/// # Safety
/// AVX2, FMA and F16C must be available. `w` holds whole rows of
/// `row_bytes`, `acts` `tokens` rows of `act_row_bytes` with the same
/// number of super-blocks, `out` rows x tokens values.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows<const F: u8>(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) -> usize {
    let sb = super_bytes(F);
    let supers = row_bytes / sb;
    let groups = w.len() / row_bytes / ROWS;
    if groups == 0 {
        return 0;
    }
    const BLOCK_GROUPS: usize = ROW_BLOCK / ROWS;
    // sums[k * TOKEN_TILE + t]: group k of the block, token t of the tile.
    let mut sums = vec![_mm256_setzero_pd(); BLOCK_GROUPS * TOKEN_TILE];
    for first_group in (0..groups).step_by(BLOCK_GROUPS) {
        let block = first_group..(first_group + BLOCK_GROUPS).min(groups);
        for t0 in (0..tokens).step_by(TOKEN_TILE) {
            let tile = t0..(t0 + TOKEN_TILE).min(tokens);
            sums.fill(_mm256_setzero_pd());
            for i in 0..supers {
                for (k, g) in block.clone().enumerate() {
                    let base = w.as_ptr().add(g * ROWS * row_bytes + i * sb);
                    let o = sums.get_unchecked_mut(k * TOKEN_TILE..(k + 1) * TOKEN_TILE);
                    let a = acts.as_ptr().add(i * Q8K_BYTES);
                    four_rows::<F>(base, row_bytes, a, act_row_bytes, tile.clone(), o);
                }
            }
            for (k, g) in block.clone().enumerate() {
                for (t, o) in tile.clone().zip(&sums[k * TOKEN_TILE..]) {
                    let mut four = [0.0f64; ROWS];
                    _mm256_storeu_pd(four.as_mut_ptr(), *o);
                    for (r, v) in four.iter().enumerate() {
                        *out.get_unchecked_mut((g * ROWS + r) * tokens + t) = *v;
                    }
                }
            }
        }
    }
    groups * ROWS
}

/// One super-block of the four rows at `base` (rows `row_bytes` apart)
/// against the tokens of `tile` (at most [`TOKEN_TILE`]; their activation
/// super-blocks at `a`, tokens `act_row_bytes` apart), added to `o` (one
/// f64 vector of the four rows per token of the tile, from its first).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn four_rows<const F: u8>(
    base: *const u8,
    row_bytes: usize,
    a: *const u8,
    act_row_bytes: usize,
    tile: std::ops::Range<usize>,
    o: &mut [__m256d],
) {
    let u = [
        unpack::<F>(base),
        unpack::<F>(base.add(row_bytes)),
        unpack::<F>(base.add(2 * row_bytes)),
        unpack::<F>(base.add(3 * row_bytes)),
    ];
    let (mut d, mut dmin) = (0u64, 0u64);
    for (r, u) in u.iter().enumerate() {
        d |= (u.d as u64) << (16 * r);
        dmin |= (u.dmin as u64) << (16 * r);
    }
    let (d, dmin) = (f16x4_to_f64(d), f16x4_to_f64(dmin));
    // The integer sums of every token first, the float steps after: in one
    // loop, each token's reduction, conversion and f64 step made a chain
    // the next token's work could not overlap (where the samples piled up).
    let mut sums = [(_mm_setzero_si128(), _mm_setzero_si128()); TOKEN_TILE];
    for (t, sums) in tile.clone().zip(sums.iter_mut()) {
        let (y, bs) = act_super_block(a.add(t * act_row_bytes));
        let mut lanes = [_mm256_setzero_si256(); ROWS];
        let mut groups = [_mm256_setzero_si256(); ROWS];
        for r in 0..ROWS {
            lanes[r] = scaled_lanes(&u[r].q, &u[r].sc, &y);
            groups[r] = _mm256_madd_epi16(bs, u[r].per_group);
        }
        *sums = (reduce4(lanes), reduce4(groups));
    }
    for ((t, o), &(acc, per_group)) in tile.zip(o.iter_mut()).zip(&sums) {
        let a = act_scale(a.add(t * act_row_bytes));
        *o = _mm256_add_pd(*o, float_step::<F>(acc, per_group, d, dmin, a));
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
