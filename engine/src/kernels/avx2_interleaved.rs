//! One-token decode for Q4_0, Q4_1, Q8_0 and Q4_K weights interleaved at load
//! (`interleave.rs`): one 32-byte load holds four codes of each of eight
//! rows, a mask or a shift unpacks them (Q8_0's need no unpacking), and one broadcast of four
//! activation bytes multiplies all eight rows, so a block's eight i32 sums
//! come out in row lanes with no horizontal reduction, and its eight
//! scales are one load. The batch kernels (`avx2_gemm.rs`,
//! `avx2_gemm_k.rs`) unpack the same layout into their buffers.
//!
//! Results are bit-equal to the row kernels. Q4_0, Q4_1 and Q8_0: each (row,
//! block) integer is the same (the unsigned codes' products, less 8·Σy for
//! Q4_0; Q8_0's signed products, taken with VNNI as its codes plus 128,
//! less 128·Σy), its scale the same f32 product, added by the same f64 FMA into
//! lane `b % 4` of its row, and the lanes summed as
//! `(l0 + l2) + (l1 + l3)`; Q4_1's minimum terms have lanes of their own,
//! added last. Q4_K: each super-block's two integers (the codes' products times the group
//! scales, the minimums times the activation's group sums) are the same,
//! and the float step is `avx2_gemm_k::add_super_block`, the row
//! kernel's expression in its order.
//!
//! Every function here requires AVX2, FMA and F16C; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::avx2::{act_scales, q8_offset_terms, ActScales};
use super::avx2_gemm::broadcast4;
use super::avx2_gemm_k::add_super_block;
use super::avx2_k::{Q8K_BYTES, Q8K_QS};
use super::block32::{layout, Q4_0, Q4_1, Q8_0};
use super::blocks::BlockQ4K;
use super::interleave::{
    GROUP_SUPER, K_CODES_AT, K_DMIN_AT, K_SCALES_AT, Q4_0_CODES_AT, Q4_1_CODES_AT, Q4_1_MINS_AT,
    ROWS,
};
use super::prefetch::{prefetch_run, weights_asked_ahead};

/// Chunk `k` of a group block's codes: its low nibbles and its high ones.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn unpack_chunk(codes: *const u8, k: usize) -> (__m256i, __m256i) {
    let mask = _mm256_set1_epi8(0x0F);
    let c = _mm256_loadu_si256(codes.add(32 * k) as *const __m256i);
    (
        _mm256_and_si256(c, mask),
        _mm256_and_si256(_mm256_srli_epi16(c, 4), mask),
    )
}

/// A group block's eight i32 sums of codes times activation bytes `y`:
/// chunk k's low nibbles meet bytes `4k..`, its high ones `16 + 4k..`.
/// `maddubs` pairs add up in i16 (at most 15 x 128 x 2 x 8 = 30720).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_sums_plain(codes: *const u8, y: *const u8) -> __m256i {
    let mut s = [_mm256_setzero_si256(); 2];
    for k in 0..4 {
        let (lo, hi) = unpack_chunk(codes, k);
        s[0] = _mm256_add_epi16(s[0], _mm256_maddubs_epi16(lo, broadcast4(y, k)));
        s[1] = _mm256_add_epi16(s[1], _mm256_maddubs_epi16(hi, broadcast4(y, 4 + k)));
    }
    _mm256_madd_epi16(_mm256_add_epi16(s[0], s[1]), _mm256_set1_epi16(1))
}

/// Chunk `k` of a group block's codes for `vpdpbusd`: its low nibbles,
/// and its high ones left in place (sixteen times the code), which saves
/// the shift [`unpack_chunk`] spends on them: `vpdpbusd` sums in i32, so
/// the products times sixteen cannot saturate, and the sum is divided by
/// sixteen exactly ([`SIXTEENS`]). The shift was a third of the
/// unpacking's operations (docs/ARCHITECTURE.md, "High nibbles left in
/// place").
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vl,avx512vnni")]
unsafe fn unpack_chunk_sixteens(codes: *const u8, k: usize) -> (__m256i, __m256i) {
    let c = _mm256_loadu_si256(codes.add(32 * k) as *const __m256i);
    (
        _mm256_and_si256(c, _mm256_set1_epi8(0x0F)),
        _mm256_and_si256(c, _mm256_set1_epi8(0xF0u8 as i8)),
    )
}

/// log2 of the factor [`unpack_chunk_sixteens`] leaves on high nibbles.
const SIXTEENS: i32 = 4;

/// As [`block_sums_plain`], with `vpdpbusd` summing straight into i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vl,avx512vnni")]
unsafe fn block_sums_vnni(codes: *const u8, y: *const u8) -> __m256i {
    let mut s = [_mm256_setzero_si256(); 2];
    for k in 0..4 {
        let (lo, hi16) = unpack_chunk_sixteens(codes, k);
        s[0] = _mm256_dpbusd_epi32(s[0], lo, broadcast4(y, k));
        s[1] = _mm256_dpbusd_epi32(s[1], hi16, broadcast4(y, 4 + k));
    }
    _mm256_add_epi32(s[0], _mm256_srai_epi32::<SIXTEENS>(s[1]))
}

/// A Q8_0 group block's eight i32 sums of signed codes times activation
/// bytes `y`: chunk k (codes `4k..4k + 4` of every row) meets bytes
/// `4k..`, as `|q|` by `y` with q's sign (a pair is at most 2 x 128 x 127,
/// no saturation), widened per chunk.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_sums_plain(codes: *const u8, y: *const u8) -> __m256i {
    let ones = _mm256_set1_epi16(1);
    let mut s = [_mm256_setzero_si256(); 2];
    for k in 0..8 {
        let q = _mm256_loadu_si256(codes.add(32 * k) as *const __m256i);
        let p = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(broadcast4(y, k), q));
        s[k % 2] = _mm256_add_epi32(s[k % 2], _mm256_madd_epi16(p, ones));
    }
    _mm256_add_epi32(s[0], s[1])
}

/// As [`q8_sums_plain`] with VNNI: the codes flipped to unsigned (plus 128)
/// for `vpdpbusd`; the caller takes `128 · Σy` off, as Q4_0's `8 · Σy`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vl,avx512vnni")]
unsafe fn q8_sums_vnni(codes: *const u8, y: *const u8) -> __m256i {
    let flip = _mm256_set1_epi8(Q8_VNNI_OFFSET as u8 as i8);
    let mut s = [_mm256_setzero_si256(); 2];
    for k in 0..8 {
        let q = _mm256_loadu_si256(codes.add(32 * k) as *const __m256i);
        s[k % 2] = _mm256_dpbusd_epi32(s[k % 2], _mm256_xor_si256(q, flip), broadcast4(y, k));
    }
    _mm256_add_epi32(s[0], s[1])
}

/// What VNNI's Q8_0 codes carry over their values.
const Q8_VNNI_OFFSET: i32 = 128;

/// The eight rows' 6-bit group scales and minimums of the Q4_K group
/// super-block at `blk`, unpacked from its transposed scale bytes on all
/// eight rows at once (byte r of each word is row r): `(scales, mins)`,
/// one word per group. The unpacking is `dequant::scale_min_k4`'s.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4k_scales_of_rows(blk: *const u8) -> ([u64; 8], [u64; 8]) {
    const LOW6: u64 = 0x3f3f_3f3f_3f3f_3f3f;
    const LOW4: u64 = 0x0f0f_0f0f_0f0f_0f0f;
    const TOP2: u64 = 0x0303_0303_0303_0303;
    let q =
        |j: usize| u64::from_le((blk.add(K_SCALES_AT + ROWS * j) as *const u64).read_unaligned());
    let (mut scales, mut mins) = ([0u64; 8], [0u64; 8]);
    for j in 0..4 {
        scales[j] = q(j) & LOW6;
        mins[j] = q(j + 4) & LOW6;
        scales[j + 4] = (q(j + 8) & LOW4) | ((q(j) >> 6) & TOP2) << 4;
        mins[j + 4] = ((q(j + 8) >> 4) & LOW4) | ((q(j + 4) >> 6) & TOP2) << 4;
    }
    (scales, mins)
}

/// Eight bytes (byte r for row r) as the i16 pair `(v, v)` in lane r, the
/// form `madd` multiplies by.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn pairs_of_rows(bytes: u64) -> __m256i {
    let lanes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bytes as i64));
    _mm256_or_si256(lanes, _mm256_slli_epi32(lanes, 16))
}

/// The eight rows' f16 values at `at` as two f64 vectors (rows 0..4, 4..8).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16_rows_as_f64(at: *const u8) -> [__m256d; 2] {
    let v = _mm256_cvtph_ps(_mm_loadu_si128(at as *const __m128i));
    [
        _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
        _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)),
    ]
}

/// A Q4_K group super-block's eight scaled sums against the activation
/// super-block at `a`: per group, the codes' products (i16, at most
/// 8 x 2 x 15 x 128 = 30720) times the group's scales by `madd`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_sums_plain(blk: *const u8, a: *const u8, scales: &[u64; 8]) -> __m256i {
    let mut acc = _mm256_setzero_si256();
    for c in 0..4 {
        let (codes, y) = (blk.add(K_CODES_AT + 256 * c), a.add(Q8K_QS + 64 * c));
        let mut s16 = [_mm256_setzero_si256(); 2];
        for s in 0..8 {
            let (lo, hi) = unpack_chunk(codes, s);
            s16[0] = _mm256_add_epi16(s16[0], _mm256_maddubs_epi16(lo, broadcast4(y, s)));
            s16[1] = _mm256_add_epi16(s16[1], _mm256_maddubs_epi16(hi, broadcast4(y.add(32), s)));
        }
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(s16[0], pairs_of_rows(scales[2 * c])));
        acc = _mm256_add_epi32(
            acc,
            _mm256_madd_epi16(s16[1], pairs_of_rows(scales[2 * c + 1])),
        );
    }
    acc
}

/// As [`q4k_sums_plain`] with VNNI: `vpdpbusd` sums each group into i32
/// and one `mullo` scales it.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vl,avx512vnni")]
unsafe fn q4k_sums_vnni(blk: *const u8, a: *const u8, scales: &[u64; 8]) -> __m256i {
    // The four chunks written out, so that each scale is a register (in
    // a loop over chunks the scales were read back from the stack).
    let chunk = |c: usize| q4k_chunk_vnni(blk.add(K_CODES_AT + 256 * c), a.add(Q8K_QS + 64 * c));
    let scale = |j: usize| _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(scales[j] as i64));
    // The odd groups (high nibbles) come sixteen times over and are
    // summed apart, then divided once: at most 4 x 16 x 61440 x 63, well
    // inside i32, and a multiple of sixteen.
    let ([g0, g1], [g2, g3]) = (chunk(0), chunk(1));
    let ([g4, g5], [g6, g7]) = (chunk(2), chunk(3));
    let mut even = _mm256_mullo_epi32(g0, scale(0));
    let mut odd = _mm256_mullo_epi32(g1, scale(1));
    even = _mm256_add_epi32(even, _mm256_mullo_epi32(g2, scale(2)));
    odd = _mm256_add_epi32(odd, _mm256_mullo_epi32(g3, scale(3)));
    even = _mm256_add_epi32(even, _mm256_mullo_epi32(g4, scale(4)));
    odd = _mm256_add_epi32(odd, _mm256_mullo_epi32(g5, scale(5)));
    even = _mm256_add_epi32(even, _mm256_mullo_epi32(g6, scale(6)));
    odd = _mm256_add_epi32(odd, _mm256_mullo_epi32(g7, scale(7)));
    _mm256_add_epi32(even, _mm256_srai_epi32::<SIXTEENS>(odd))
}

/// One 64-value chunk of a Q4_K group super-block: its two groups' eight
/// i32 sums of codes times activation bytes (low nibbles, then high ones
/// sixteen times over, [`unpack_chunk_sixteens`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vl,avx512vnni")]
unsafe fn q4k_chunk_vnni(codes: *const u8, y: *const u8) -> [__m256i; 2] {
    let mut g = [_mm256_setzero_si256(); 2];
    for s in 0..8 {
        let (lo, hi16) = unpack_chunk_sixteens(codes, s);
        g[0] = _mm256_dpbusd_epi32(g[0], lo, broadcast4(y, s));
        g[1] = _mm256_dpbusd_epi32(g[1], hi16, broadcast4(y.add(32), s));
    }
    g
}

/// How far ahead the Q4_K one-token kernel asks for its weights, in
/// super-blocks of a group (1152 bytes each), on CPUs where that helps
/// ([`weights_asked_ahead`]).
const SUPERS_AHEAD: usize = 2;

/// How far ahead the Q4_0 and Q4_1 one-token kernel asks for its weights,
/// in blocks of a group (144 or 160 bytes each).
const BLOCKS_AHEAD: usize = 16;

/// One block of eight rows of a 32-value format with a layout (Q4_0, Q4_1).
pub(super) const fn group_block(f: u8) -> usize {
    ROWS * layout(f).0
}

/// Where the codes start in a group block: after the scales, and Q4_1's
/// minimums.
pub(super) const fn codes_at(f: u8) -> usize {
    if f == Q4_1 {
        Q4_1_CODES_AT
    } else {
        Q4_0_CODES_AT
    }
}

/// The one-token kernel for Q4_0, Q4_1 and Q8_0, compiled once per
/// instruction set; `$q8_offset` is what `$q8_sums` adds to Q8_0's codes.
macro_rules! kernels {
    ($features:literal, $block_sums:ident, $q8_sums:ident, $q8_offset:expr) => {
        /// What [`rows_with`] reads of the activation row `acts` besides
        /// its codes: its block scales (and sums). Prepared once per token
        /// however many pieces of a weight the token meets.
        ///
        /// # Safety
        /// The CPU must have the features named above; `acts` is one
        /// activation row of `F`'s activation type.
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn scales<const F: u8>(acts: &[u8]) -> ActScales {
            let mut sc = act_scales::<F>(acts, acts.len(), 1);
            if F == Q8_0 && $q8_offset != 0 {
                sc.correction = q8_offset_terms(acts, acts.len(), 1, $q8_offset);
            }
            sc
        }

        /// Dots the whole groups of eight interleaved Q4_0, Q4_1 or Q8_0
        /// rows in `w` with the one activation row `acts`, whose
        /// [`scales`] are `sc`; returns how many rows it did. `out[r]`
        /// receives row r's dot.
        ///
        /// # Safety
        /// The CPU must have the features named above. `w` holds whole
        /// rows of `row_bytes`, interleaved, `acts` one row with as many
        /// blocks, `sc` its scales, `out` one value per row.
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows_with<const F: u8>(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            sc: &ActScales,
            out: &mut [f64],
        ) -> usize {
            let nb = row_bytes / layout(F).0;
            let groups = w.len() / row_bytes / ROWS;
            if groups == 0 {
                return 0;
            }
            let ask_ahead = weights_asked_ahead();
            let y = acts.as_ptr();
            let zero = [_mm256_setzero_pd(); 2];
            for g in 0..groups {
                let base = w.as_ptr().add(g * ROWS * row_bytes);
                // Four lanes (block `b` goes to lane `b % 4`), each two
                // vectors of four rows, and Q4_1's minimum terms: named
                // locals, not an array indexed in a loop, so that they
                // stay in registers.
                let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
                let (mut m0, mut m1, mut m2, mut m3) = (zero, zero, zero, zero);
                let mut b = 0;
                while b + 4 <= nb {
                    // The group's bytes four blocks at a time, BLOCKS_AHEAD
                    // blocks ahead (past the group's end, into the next
                    // group).
                    if ask_ahead {
                        let ahead = base.wrapping_add((b + BLOCKS_AHEAD) * group_block(F));
                        prefetch_run(ahead, 4 * group_block(F));
                    }
                    block::<F>(base, b, y, sc, &mut a0, &mut m0);
                    block::<F>(base, b + 1, y, sc, &mut a1, &mut m1);
                    block::<F>(base, b + 2, y, sc, &mut a2, &mut m2);
                    block::<F>(base, b + 3, y, sc, &mut a3, &mut m3);
                    b += 4;
                }
                // The last blocks of a row whose count is not a multiple
                // of four, into lanes 0, 1, 2.
                if b < nb {
                    block::<F>(base, b, y, sc, &mut a0, &mut m0);
                }
                if b + 1 < nb {
                    block::<F>(base, b + 1, y, sc, &mut a1, &mut m1);
                }
                if b + 2 < nb {
                    block::<F>(base, b + 2, y, sc, &mut a2, &mut m2);
                }
                for half in 0..2 {
                    // Written out: a closure would not inherit the target
                    // features.
                    let mut total = _mm256_add_pd(
                        _mm256_add_pd(a0[half], a2[half]),
                        _mm256_add_pd(a1[half], a3[half]),
                    );
                    if F == Q4_1 {
                        let m = _mm256_add_pd(
                            _mm256_add_pd(m0[half], m2[half]),
                            _mm256_add_pd(m1[half], m3[half]),
                        );
                        total = _mm256_add_pd(total, m);
                    }
                    _mm256_storeu_pd(out.as_mut_ptr().add(g * ROWS + 4 * half), total);
                }
            }
            groups * ROWS
        }

        /// Block `b` of the group at `base`, into its lanes (and Q4_1's
        /// minimum terms, `m · s`, into lanes of their own).
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn block<const F: u8>(
            base: *const u8,
            b: usize,
            acts: *const u8,
            sc: &ActScales,
            acc: &mut [__m256d; 2],
            mins: &mut [__m256d; 2],
        ) {
            let (_, ab, aqs) = layout(F);
            let blk = base.add(b * group_block(F));
            let (codes, y) = (blk.add(codes_at(F)), acts.add(b * ab + aqs));
            let mut s = if F == Q8_0 {
                $q8_sums(codes, y)
            } else {
                $block_sums(codes, y)
            };
            if F == Q4_0 || (F == Q8_0 && $q8_offset != 0) {
                s = _mm256_sub_epi32(s, _mm256_set1_epi32(*sc.correction.get_unchecked(b)));
            }
            let d = _mm256_mul_ps(
                _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i)),
                _mm256_set1_ps(*sc.d.get_unchecked(b)),
            );
            acc[0] = _mm256_fmadd_pd(
                _mm256_cvtps_pd(_mm256_castps256_ps128(d)),
                _mm256_cvtepi32_pd(_mm256_castsi256_si128(s)),
                acc[0],
            );
            acc[1] = _mm256_fmadd_pd(
                _mm256_cvtps_pd(_mm256_extractf128_ps(d, 1)),
                _mm256_cvtepi32_pd(_mm256_extracti128_si256(s, 1)),
                acc[1],
            );
            if F == Q4_1 {
                let m = _mm256_mul_ps(
                    _mm256_cvtph_ps(_mm_loadu_si128(blk.add(Q4_1_MINS_AT) as *const __m128i)),
                    _mm256_set1_ps(*sc.s.get_unchecked(b)),
                );
                mins[0] = _mm256_add_pd(mins[0], _mm256_cvtps_pd(_mm256_castps256_ps128(m)));
                mins[1] = _mm256_add_pd(mins[1], _mm256_cvtps_pd(_mm256_extractf128_ps(m, 1)));
            }
        }
    };
}

/// The Q4_K one-token kernel, compiled once per instruction set.
macro_rules! q4k_kernels {
    ($features:literal, $sums:ident) => {
        /// Dots the whole groups of eight interleaved Q4_K rows in `w` with
        /// the one Q8_K activation row `acts`; returns how many rows it
        /// did. `out[r]` receives row r's dot.
        ///
        /// # Safety
        /// As `rows`.
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows_q4k(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            out: &mut [f64],
        ) -> usize {
            let supers = row_bytes / size_of::<BlockQ4K>();
            let groups = w.len() / row_bytes / ROWS;
            let ask_ahead = weights_asked_ahead();
            for g in 0..groups {
                let base = w.as_ptr().add(g * ROWS * row_bytes);
                let mut o = [_mm256_setzero_pd(); 2];
                for i in 0..supers {
                    let blk = base.add(i * GROUP_SUPER);
                    if ask_ahead {
                        prefetch_run(blk.wrapping_add(SUPERS_AHEAD * GROUP_SUPER), GROUP_SUPER);
                    }
                    let a = acts.as_ptr().add(i * Q8K_BYTES);
                    let (scales, mins) = q4k_scales_of_rows(blk);
                    let acc = $sums(blk, a, &scales);
                    let mut min_pairs = [_mm256_setzero_si256(); 8];
                    for (p, &m) in min_pairs.iter_mut().zip(&mins) {
                        *p = pairs_of_rows(m);
                    }
                    add_super_block(
                        f16_rows_as_f64(blk),
                        f16_rows_as_f64(blk.add(K_DMIN_AT)),
                        &min_pairs,
                        a,
                        acc,
                        &mut o,
                    );
                }
                _mm256_storeu_pd(out.as_mut_ptr().add(g * ROWS), o[0]);
                _mm256_storeu_pd(out.as_mut_ptr().add(g * ROWS + 4), o[1]);
            }
            groups * ROWS
        }

        /// [`rows_q4k`] in [`rows_with`]'s form: a Q8_K activation
        /// carries its own scales and sums, so there is nothing to prepare.
        ///
        /// # Safety
        /// As [`rows_q4k`].
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows_q4k_with(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            _: &ActScales,
            out: &mut [f64],
        ) -> usize {
            rows_q4k(w, row_bytes, acts, out)
        }
    };
}

/// Nothing: what a Q8_K activation needs prepared for [`plain::rows_q4k_with`].
pub(super) fn no_scales(_: &[u8]) -> ActScales {
    ActScales::default()
}

/// AVX2 only.
pub(super) mod plain {
    use super::*;
    kernels!("avx2,fma,f16c", block_sums_plain, q8_sums_plain, 0);
    q4k_kernels!("avx2,fma,f16c", q4k_sums_plain);
}

/// AVX2 plus AVX-512 VNNI (`vpdpbusd`) for the integer products.
pub(super) mod vnni {
    use super::*;
    kernels!(
        "avx2,fma,f16c,avx512vl,avx512vnni",
        block_sums_vnni,
        q8_sums_vnni,
        Q8_VNNI_OFFSET
    );
    q4k_kernels!("avx2,fma,f16c,avx512vl,avx512vnni", q4k_sums_vnni);
}
