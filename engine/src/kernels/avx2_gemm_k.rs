//! Prefill (a batch of tokens) for Q4_K, Q5_K and Q6_K on AVX2, the way
//! `avx2_gemm.rs` does it for the 32-value formats: eight weight rows at a
//! time are unpacked once into a small buffer with their codes interleaved
//! (four of each row side by side), so one broadcast of four activation
//! bytes multiplies all eight rows and the sums land in lanes that are rows.
//!
//! Per 32-value group, `maddubs` products of the 4-bit codes (at most
//! 16 x 15 x 128 = 30720 per i16 lane over the group, no saturation) are
//! added in i16, then `madd` by the rows' 6-bit group scales widens them
//! into i32 (with VNNI, `vpdpbusd` sums the group into i32 and one
//! `mullo` scales it); the minimums' term is the rows' minimums times the
//! activation's group sums, also by `madd`. Both integers are exact, and
//! the float step is the row kernel's (`avx2_k::rows_q4k`, which Q5_K
//! shares) expression, `o += a_d * (d * acc - dmin * msum)` in f64, in the
//! same order: the results are the same bits. Q5_K's codes reach 31, so
//! its i16 sums are widened every four `maddubs` (4 x 2 x 31 x 128 =
//! 31744) instead of every eight. Q2_K, Q3_K and Q6_K, with a scale per
//! sixteen values, have parts of their own (`avx2_gemm_k16.rs`) around
//! the same loops.
//!
//! The buffer holds four super-blocks (8 KiB of codes) at a time, read by
//! every token while it stays in L1, each code vector loaded once for a
//! tile of tokens (four with VNNI, two without). Q4_K weights interleaved
//! at load (`interleave.rs`) fill it with a mask and a shift per 32 bytes.
//!
//! Every function here requires AVX2, FMA and F16C; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::mem::size_of;

use super::avx2_gemm::{broadcast4, transpose8, ROWS};
use super::avx2_gemm_k16 as k16;
use super::avx2_interleaved::{f16_rows_as_f64, pairs_of_rows, q4k_scales_of_rows, unpack_chunk};
use super::avx2_k::{
    act_scale, q4k_scale_bytes, scale_min_bytes, scale_min_header, scale_min_quants, Q8K_BSUMS,
    Q8K_BYTES, Q8K_QS,
};
use super::blocks::{BlockQ2K, BlockQ3K, BlockQ6K};
use super::interleave::{GROUP_SUPER, K_CODES_AT, K_DMIN_AT};

/// Super-blocks packed at once: 4 x 2 KiB of interleaved codes.
const CHUNK_SUPERS: usize = 4;

/// Which format a kernel is compiled for (a const parameter).
pub(super) const Q4K: u8 = 0;
pub(super) const Q5K: u8 = 1;
pub(super) const Q6K: u8 = 2;
pub(super) const Q3K: u8 = 3;
pub(super) const Q2K: u8 = 4;

/// Bytes of one super-block of format `f`.
const fn super_bytes(f: u8) -> usize {
    match f {
        Q2K => size_of::<BlockQ2K>(),
        Q3K => size_of::<BlockQ3K>(),
        Q6K => size_of::<BlockQ6K>(),
        _ => scale_min_bytes(f == Q5K),
    }
}

/// Whether format `f` has a scale per sixteen values (`avx2_gemm_k16.rs`).
const fn per_sixteen(f: u8) -> bool {
    matches!(f, Q2K | Q3K | Q6K)
}

/// One super-block of eight rows: `codes[j * 8 + g]` holds codes
/// `4g..4g + 4` of group `j` of rows 0..8 (row r in lane r); `scales[j]`
/// and `mins[j]` group j's scale and minimum of row r as the i16 pair
/// `(v, v)` in lane r; `d` and `dmin` the rows' f16 scales as f64, rows
/// 0..4 and 4..8. Q2_K, Q3_K and Q6_K have a scale per sixteen values
/// (`avx2_gemm_k16.rs`): `scales[j]` is then the first half's,
/// `high_scales[j]` the second's, and `mins[j]` the pair that multiplies
/// the activation's two sums of sixteen.
pub(super) struct Super {
    pub(super) codes: [__m256i; 64],
    pub(super) scales: [__m256i; 8],
    pub(super) high_scales: [__m256i; 8],
    pub(super) mins: [__m256i; 8],
    pub(super) d: [__m256d; 2],
    pub(super) dmin: [__m256d; 2],
}

/// The eight rows' f16 values (row r in bits 16r..) as two f64 vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16x8_to_f64(h: [u16; ROWS]) -> [__m256d; 2] {
    let v = _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr() as *const __m128i));
    [
        _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
        _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)),
    ]
}

/// Byte j of each row's `bytes` as the i16 pair `(v, v)` in lane r.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pairs_of(bytes: &[u64; ROWS], j: usize) -> __m256i {
    let v = bytes.map(|b| ((b >> (8 * j)) & 0xff) as i32 * 0x1_0001);
    _mm256_loadu_si256(v.as_ptr() as *const __m256i)
}

/// Unpacks super-block `i` of the eight rows at `p`: Q4_K or Q5_K, whose
/// headers are alike (`avx2_k::scale_min_header`), or one with a scale
/// per sixteen values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack<const F: u8>(p: &[*const u8; ROWS], i: usize, into: &mut Super) {
    let blocks = p.map(|row| row.add(i * super_bytes(F)));
    if per_sixteen(F) {
        return k16::pack::<F>(blocks, into);
    }
    // Loops, not `map`: a closure would not inherit the target features,
    // and the intrinsics it calls would not be inlined.
    let mut quants = [[_mm256_setzero_si256(); 8]; ROWS];
    for (q, b) in quants.iter_mut().zip(blocks) {
        *q = if F == Q5K {
            scale_min_quants::<true>(b)
        } else {
            scale_min_quants::<false>(b)
        };
    }
    interleave_codes(&quants, into);
    let heads = blocks.map(|b| scale_min_header(b));
    let bytes = heads.map(|(_, _, scales)| q4k_scale_bytes(scales));
    let (scales, mins) = (bytes.map(|b| b.0), bytes.map(|b| b.1));
    for j in 0..8 {
        into.scales[j] = pairs_of(&scales, j);
        into.mins[j] = pairs_of(&mins, j);
    }
    into.d = f16x8_to_f64(heads.map(|h| h.0));
    into.dmin = f16x8_to_f64(heads.map(|h| h.1));
}

/// The eight rows' unpacked codes (`quants[r][j]`: group j of row r) into
/// `into.codes`, four codes of every row per vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn interleave_codes(quants: &[[__m256i; 8]; ROWS], into: &mut Super) {
    for (j, codes) in into.codes.chunks_exact_mut(ROWS).enumerate() {
        let mut column = [_mm256_setzero_si256(); ROWS];
        for (c, q) in column.iter_mut().zip(quants) {
            *c = q[j];
        }
        codes.copy_from_slice(&transpose8(column));
    }
}

/// The codes' products with the activation super-blocks at `a` (one per
/// token of a tile; the codes are loaded once for all), each group times
/// its scale: one exact i32 per row and token. Q5_K's codes reach 31, and
/// eight `maddubs` of a group would pass i16 (8 x 2 x 31 x 128), so for
/// Q5_K each half of a group is widened on its own (4 x 7936 fits).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scaled_sums_plain<const F: u8, const T: usize>(
    s: &Super,
    a: &[*const u8; T],
) -> [__m256i; T] {
    if per_sixteen(F) {
        return k16::scaled_sums::<F, T>(s, a);
    }
    let mut acc = [_mm256_setzero_si256(); T];
    for j in 0..8 {
        let mut s16 = [_mm256_setzero_si256(); T];
        for g in 0..8 {
            let q = s.codes[j * 8 + g];
            for (s16, a) in s16.iter_mut().zip(a) {
                let y = a.add(Q8K_QS + 32 * j);
                *s16 = _mm256_add_epi16(*s16, _mm256_maddubs_epi16(q, broadcast4(y, g)));
            }
            if F == Q5K && g == 3 {
                for (acc, s16) in acc.iter_mut().zip(&mut s16) {
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(*s16, s.scales[j]));
                    *s16 = _mm256_setzero_si256();
                }
            }
        }
        for (acc, s16) in acc.iter_mut().zip(s16) {
            *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(s16, s.scales[j]));
        }
    }
    acc
}

/// As [`scaled_sums_plain`] with VNNI: `vpdpbusd` sums each group into
/// i32 directly, and the group's scales multiply that (the low i16 of the
/// `(v, v)` pair is the scale itself). The formats with a scale per
/// sixteen values take the AVX2 sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vl,avx512vnni")]
unsafe fn scaled_sums_vnni<const F: u8, const T: usize>(
    s: &Super,
    a: &[*const u8; T],
) -> [__m256i; T] {
    if per_sixteen(F) {
        return k16::scaled_sums::<F, T>(s, a);
    }
    let mut acc = [_mm256_setzero_si256(); T];
    let low = _mm256_set1_epi32(0xffff);
    for j in 0..8 {
        let mut g2 = [[_mm256_setzero_si256(); 2]; T];
        for g in 0..8 {
            let q = s.codes[j * 8 + g];
            for (g2, a) in g2.iter_mut().zip(a) {
                let y = a.add(Q8K_QS + 32 * j);
                g2[g % 2] = _mm256_dpbusd_epi32(g2[g % 2], q, broadcast4(y, g));
            }
        }
        let scale = _mm256_and_si256(s.scales[j], low);
        for (acc, g2) in acc.iter_mut().zip(g2) {
            let group = _mm256_add_epi32(g2[0], g2[1]);
            *acc = _mm256_add_epi32(*acc, _mm256_mullo_epi32(group, scale));
        }
    }
    acc
}

/// One packed super-block against the activation super-block at `a`,
/// given the rows' scaled sums `acc`, added into one token's eight row
/// sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn super_block<const F: u8>(s: &Super, a: *const u8, acc: __m256i, o: &mut [__m256d; 2]) {
    if per_sixteen(F) {
        k16::add_super_block::<F>(s, a, acc, o);
    } else {
        add_super_block(s.d, s.dmin, &s.mins, a, acc, o);
    }
}

/// A super-block's step for eight rows: the minimums' term (`mins[j]`,
/// group j's minimum of row r as the i16 pair `(v, v)` in lane r, times
/// the activation's two sums of sixteen of that group), then the row
/// kernel's float expression `o += a_d * (d * acc - dmin * msum)` in f64.
/// The one-token kernel on interleaved weights shares it.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn add_super_block(
    d: [__m256d; 2],
    dmin: [__m256d; 2],
    mins: &[__m256i; 8],
    a: *const u8,
    acc: __m256i,
    o: &mut [__m256d; 2],
) {
    // Group j's two activation sums of sixteen, as one i16 pair.
    let bsums = a.add(Q8K_BSUMS) as *const i32;
    let mut msum = _mm256_setzero_si256();
    for (j, m) in mins.iter().enumerate() {
        let pair = _mm256_set1_epi32(bsums.add(j).read_unaligned());
        msum = _mm256_add_epi32(msum, _mm256_madd_epi16(*m, pair));
    }
    let ad = _mm256_set1_pd(act_scale(a));
    let halves = [
        (_mm256_castsi256_si128(acc), _mm256_castsi256_si128(msum)),
        (
            _mm256_extracti128_si256(acc, 1),
            _mm256_extracti128_si256(msum, 1),
        ),
    ];
    for (h, (acc, msum)) in halves.into_iter().enumerate() {
        let step = _mm256_sub_pd(
            _mm256_mul_pd(d[h], _mm256_cvtepi32_pd(acc)),
            _mm256_mul_pd(dmin[h], _mm256_cvtepi32_pd(msum)),
        );
        o[h] = _mm256_add_pd(o[h], _mm256_mul_pd(ad, step));
    }
}

/// Unpacks super-block `i` of a group of eight rows interleaved at load
/// (`interleave.rs`) at `group`: sub-chunk s of chunk c is codes
/// `4s..4s + 4` of groups `2c` (low nibbles) and `2c + 1` (high).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_interleaved(group: *const u8, i: usize, into: &mut Super) {
    let blk = group.add(i * GROUP_SUPER);
    for c in 0..4 {
        for s in 0..8 {
            let (lo, hi) = unpack_chunk(blk.add(K_CODES_AT + 256 * c), s);
            into.codes[2 * c * 8 + s] = lo;
            into.codes[(2 * c + 1) * 8 + s] = hi;
        }
    }
    let (scales, mins) = q4k_scales_of_rows(blk);
    for j in 0..8 {
        into.scales[j] = pairs_of_rows(scales[j]);
        into.mins[j] = pairs_of_rows(mins[j]);
    }
    into.d = f16_rows_as_f64(blk);
    into.dmin = f16_rows_as_f64(blk.add(K_DMIN_AT));
}

/// The batch kernel, compiled once per instruction set.
macro_rules! gemm_q4k {
    ($features:literal, $sums:ident) => {
        /// Dots the first `rows / 8 * 8` weight rows of format `F` (a tag
        /// above) in `w` with `tokens` Q8_K activation rows (layout as
        /// `dot::dot_rows`); returns how many rows it did.
        ///
        /// # Safety
        /// AVX2, FMA and F16C must be available. `w` holds whole rows of
        /// `row_bytes`, `acts` `tokens` rows of `act_row_bytes` with the same
        /// number of super-blocks, `out` rows x tokens values.
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows<const F: u8>(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            act_row_bytes: usize,
            tokens: usize,
            out: &mut [f64],
        ) -> usize {
            rows_from::<F, false>(w, row_bytes, acts, act_row_bytes, tokens, out)
        }

        /// As [`rows`] for Q4_K weights interleaved at load.
        ///
        /// # Safety
        /// As [`rows`].
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows_q4k_interleaved(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            act_row_bytes: usize,
            tokens: usize,
            out: &mut [f64],
        ) -> usize {
            rows_from::<Q4K, true>(w, row_bytes, acts, act_row_bytes, tokens, out)
        }

        /// The body of [`rows`] and [`rows_q4k_interleaved`]:
        /// super-blocks unpacked from the file layout's rows, or from a
        /// Q4_K group interleaved at load.
        #[target_feature(enable = $features)]
        unsafe fn rows_from<const F: u8, const INTERLEAVED: bool>(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            act_row_bytes: usize,
            tokens: usize,
            out: &mut [f64],
        ) -> usize {
            let supers = row_bytes / super_bytes(F);
            let groups = w.len() / row_bytes / ROWS;
            let empty = || Super {
                codes: [_mm256_setzero_si256(); 64],
                scales: [_mm256_setzero_si256(); 8],
                high_scales: [_mm256_setzero_si256(); 8],
                mins: [_mm256_setzero_si256(); 8],
                d: [_mm256_setzero_pd(); 2],
                dmin: [_mm256_setzero_pd(); 2],
            };
            let mut chunk: Vec<Super> = (0..CHUNK_SUPERS).map(|_| empty()).collect();
            let mut sums = vec![[_mm256_setzero_pd(); 2]; tokens];
            for g in 0..groups {
                let base = w.as_ptr().add(g * ROWS * row_bytes);
                let p = [0, 1, 2, 3, 4, 5, 6, 7].map(|r| base.add(r * row_bytes));
                sums.fill([_mm256_setzero_pd(); 2]);
                for first in (0..supers).step_by(CHUNK_SUPERS) {
                    let end = (first + CHUNK_SUPERS).min(supers);
                    for (k, i) in (first..end).enumerate() {
                        if INTERLEAVED {
                            pack_interleaved(base, i, &mut chunk[k]);
                        } else {
                            pack::<F>(&p, i, &mut chunk[k]);
                        }
                    }
                    let whole = tokens / TILE * TILE;
                    for t0 in (0..whole).step_by(TILE) {
                        let o = sums.get_unchecked_mut(t0..t0 + TILE);
                        tile::<F, TILE>(&chunk, first..end, acts, act_row_bytes, t0, o);
                    }
                    for t0 in whole..tokens {
                        let o = sums.get_unchecked_mut(t0..t0 + 1);
                        tile::<F, 1>(&chunk, first..end, acts, act_row_bytes, t0, o);
                    }
                }
                for (t, o) in sums.iter().enumerate() {
                    let mut row = [0.0f64; ROWS];
                    _mm256_storeu_pd(row.as_mut_ptr(), o[0]);
                    _mm256_storeu_pd(row.as_mut_ptr().add(4), o[1]);
                    for (r, v) in row.iter().enumerate() {
                        *out.get_unchecked_mut((g * ROWS + r) * tokens + t) = *v;
                    }
                }
            }
            groups * ROWS
        }

        /// Super-blocks `supers` (packed in `chunk`) against tokens
        /// `t0..t0 + T`, whose eight row sums are `o`: the tokens share
        /// every load of codes, and each token's super-blocks are added in
        /// order.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn tile<const F: u8, const T: usize>(
            chunk: &[Super],
            supers: std::ops::Range<usize>,
            acts: &[u8],
            act_row_bytes: usize,
            t0: usize,
            o: &mut [[__m256d; 2]],
        ) {
            for (k, i) in supers.enumerate() {
                let a: [*const u8; T] = std::array::from_fn(|t| {
                    acts.as_ptr().add((t0 + t) * act_row_bytes + i * Q8K_BYTES)
                });
                let scaled = $sums::<F, T>(&chunk[k], &a);
                for t in 0..T {
                    super_block::<F>(&chunk[k], a[t], scaled[t], o.get_unchecked_mut(t));
                }
            }
        }
    };
}

/// AVX2 only: tiles of two tokens fit its sixteen registers.
pub(super) mod plain {
    use super::*;
    const TILE: usize = 2;
    gemm_q4k!("avx2,fma,f16c", scaled_sums_plain);
}

/// AVX2 plus AVX-512 VNNI (`vpdpbusd`) for the integer products, in
/// tiles of four tokens.
pub(super) mod vnni {
    use super::*;
    const TILE: usize = 4;
    gemm_q4k!("avx2,fma,f16c,avx512vl,avx512vnni", scaled_sums_vnni);
}
