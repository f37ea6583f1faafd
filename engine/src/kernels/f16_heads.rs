//! Attention's scores and weighted sums for the Q heads that share one KV
//! head, read straight from an f16 cache with AVX and F16C: each key and
//! value row is widened in registers once and used by every head of the
//! group. The portable path widens a tile into memory first and reads it
//! back once per head, a store and a load per value that a decode step at
//! depth spends most of its time on.
//!
//! Per (head, key) and per (head, dimension) these do the operations of
//! [`super::vector::scores_tile`] and [`super::vector::weighted_rows`] in
//! the same order (a multiply, then an add, per lane; the lanes summed in
//! the same tree), so they give the same bits.

use std::arch::x86_64::*;

use half::f16;

use super::prefetch::prefetch;
use super::vector::avx::tree_sums;
use super::vector::SCORE_TILE;

/// Q heads one call serves at most (its accumulators fill the registers).
pub(crate) const MAX_HEADS: usize = 4;

/// Dimensions of the output [`weighted`] keeps in registers per head.
const OUT_BLOCK: usize = 16;

/// Whether a head size suits these kernels (whole blocks of outputs).
pub(crate) fn fits(head_dim: usize) -> bool {
    head_dim > 0 && head_dim.is_multiple_of(OUT_BLOCK)
}

/// Rows of the next tile to ask for while this one is read (each row a
/// tile ahead of the one being read): row `j` is the `hd` values at
/// `rows[j * stride..]`, for `j < count`.
#[derive(Clone, Copy)]
pub(crate) struct Ahead<'a> {
    pub rows: &'a [f16],
    pub stride: usize,
    pub count: usize,
}

impl Ahead<'_> {
    /// Nothing to ask for.
    pub const NONE: Ahead<'static> = Ahead {
        rows: &[],
        stride: 0,
        count: 0,
    };

    #[inline(always)]
    fn row(&self, j: usize, hd: usize) {
        if j < self.count {
            prefetch(self.rows, j * self.stride, hd);
        }
    }
}

/// A tile's rows of one KV head in an f16 cache: row `j` is the `hd`
/// values at `first + j * stride`; `ahead` the rows a tile on, asked for as
/// these are read.
#[derive(Clone, Copy)]
pub(crate) struct HeadRows<'a> {
    pub first: *const f16,
    pub stride: usize,
    pub hd: usize,
    pub ahead: Ahead<'a>,
}

/// `out[i][j] = scale * q_i . key_j` for the `N` queries stored one after
/// another in `q` (`hd` values each) and the keys `j < n`. Entries from `n`
/// on are left unspecified. Asks for `keys.ahead`'s row `j` as key `j` is
/// read.
///
/// # Safety
/// AVX and F16C; `hd` a multiple of 8, `n <= SCORE_TILE`, `q` holds `N * hd`
/// values and `keys` `hd` readable values in each row `j < n`.
#[target_feature(enable = "avx,f16c")]
pub(crate) unsafe fn scores<const N: usize>(
    q: *const f32,
    keys: HeadRows,
    n: usize,
    scale: f32,
    out: &mut [[f32; SCORE_TILE]; N],
) {
    let HeadRows {
        first: keys,
        stride,
        hd,
        ahead,
    } = keys;
    let scale = _mm256_set1_ps(scale);
    for first in (0..n).step_by(8) {
        // Lane sums of every (query, key) of these eight keys.
        let mut lanes = [[_mm256_setzero_ps(); 8]; N];
        let here = (n - first).min(8);
        let mut j = 0;
        while j + 1 < here {
            ahead.row(first + j, hd);
            ahead.row(first + j + 1, hd);
            let k0 = keys.add((first + j) * stride);
            let pair = two_keys::<N>(q, k0, k0.add(stride), hd);
            for (l, p) in lanes.iter_mut().zip(&pair) {
                l[j] = p[0];
                l[j + 1] = p[1];
            }
            j += 2;
        }
        if j < here {
            ahead.row(first + j, hd);
            let k0 = keys.add((first + j) * stride);
            let pair = two_keys::<N>(q, k0, k0, hd);
            for (l, p) in lanes.iter_mut().zip(&pair) {
                l[j] = p[0];
            }
        }
        for (o, l) in out.iter_mut().zip(&lanes) {
            let sums = _mm256_mul_ps(tree_sums(l), scale);
            _mm256_storeu_ps(o.as_mut_ptr().add(first), sums);
        }
    }
}

/// The 8 lane sums of each query against two keys, over all `hd` values.
#[target_feature(enable = "avx,f16c")]
#[inline]
unsafe fn two_keys<const N: usize>(
    q: *const f32,
    k0: *const f16,
    k1: *const f16,
    hd: usize,
) -> [[__m256; 2]; N] {
    let mut acc = [[_mm256_setzero_ps(); 2]; N];
    for c in (0..hd).step_by(8) {
        let x0 = widen(k0.add(c));
        let x1 = widen(k1.add(c));
        for (i, a) in acc.iter_mut().enumerate() {
            let qv = _mm256_loadu_ps(q.add(i * hd + c));
            a[0] = _mm256_add_ps(a[0], _mm256_mul_ps(qv, x0));
            a[1] = _mm256_add_ps(a[1], _mm256_mul_ps(qv, x1));
        }
    }
    acc
}

/// `out_i[d] += Σ_j weights[i][j] value_j[d]` for `j < n`, each output
/// added to in `j` order. Output `i` is the `hd` values at
/// `out + i * out_stride`. Asks for `values.ahead`'s row `j` as value row
/// `j` is first read.
///
/// # Safety
/// AVX and F16C; [`fits`]`(hd)`, `n <= SCORE_TILE`, each output and each
/// value row `j < n` readable (and the outputs writable) for `hd` values.
#[target_feature(enable = "avx,f16c")]
pub(crate) unsafe fn weighted<const N: usize>(
    out: *mut f32,
    out_stride: usize,
    weights: &[[f32; SCORE_TILE]; N],
    values: HeadRows,
    n: usize,
) {
    let HeadRows {
        first: values,
        stride,
        hd,
        ahead,
    } = values;
    for d0 in (0..hd).step_by(OUT_BLOCK) {
        let mut acc = [[_mm256_setzero_ps(); 2]; N];
        for (i, a) in acc.iter_mut().enumerate() {
            let o = out.add(i * out_stride + d0);
            a[0] = _mm256_loadu_ps(o);
            a[1] = _mm256_loadu_ps(o.add(8));
        }
        for j in 0..n {
            if d0 == 0 {
                ahead.row(j, hd);
            }
            let row = values.add(j * stride + d0);
            let v0 = widen(row);
            let v1 = widen(row.add(8));
            for (a, w) in acc.iter_mut().zip(weights) {
                let w = _mm256_set1_ps(w[j]);
                a[0] = _mm256_add_ps(a[0], _mm256_mul_ps(w, v0));
                a[1] = _mm256_add_ps(a[1], _mm256_mul_ps(w, v1));
            }
        }
        for (i, a) in acc.iter().enumerate() {
            let o = out.add(i * out_stride + d0);
            _mm256_storeu_ps(o, a[0]);
            _mm256_storeu_ps(o.add(8), a[1]);
        }
    }
}

/// Eight f16 values at `p` as f32.
#[target_feature(enable = "avx,f16c")]
#[inline]
unsafe fn widen(p: *const f16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
}
