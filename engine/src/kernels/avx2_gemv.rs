//! Decode (one token) for the 32-value block formats on AVX2: four weight
//! rows at a time, so each activation block is loaded once for four rows
//! and the four rows' integer sums are reduced together.
//!
//! For Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0. Q4_1's and Q5_1's scale and
//! minimum sit side by side, so one 32-bit read per row fetches both.
//! Q4_0 and Q5_0 weights are multiplied as their unsigned codes (0..15,
//! 0..31), and the offset (8, 16) times the activation block's sum is
//! taken off the integer sum afterwards: `Σ(q - o)·y = Σq·y - o·Σy`. That
//! spares the two sign operations per block the signed product needs, and
//! the integer is the same, so the result is too. Q8_0 keeps the signed
//! product.
//!
//! Results are bit-equal to `avx2.rs`'s row kernel (and so to the portable
//! reference in its order): block `b` of a row lands in f64 lane `b % 4`
//! of that row's sum, with the same fused multiply-add, and the four lanes
//! are added as `hsum_pd` adds them, `(l0 + l2) + (l1 + l3)`. Here each
//! lane `k` is its own vector whose four elements are the four rows.
//!
//! Every function here requires AVX2, FMA and F16C; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::avx2::{act_scales, code_offset, rd16, reduce4, unpack_codes, ActScales};
use super::block32::{has_minimum, layout, scale_offsets, Q4_1, Q5_1, Q8_0};
use super::prefetch::prefetch_run;

/// Rows dotted together.
pub(super) const ROWS: usize = 4;

/// The four rows' f16 values at the same offset, as four f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_of_rows(p: [*const u8; ROWS], at: usize) -> __m128 {
    let half = |r: usize| rd16(p[r].add(at)) as u64;
    let bits = half(0) | half(1) << 16 | half(2) << 32 | half(3) << 48;
    _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
}

/// Q4_1 and Q5_1: the four rows' scale and minimum, two f16 side by side, read as
/// one u32 per row and converted together, as four f32 each.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scale_min_of_rows(p: [*const u8; ROWS], at: usize) -> (__m128, __m128) {
    const _: () = assert!(scale_offsets(Q4_1).1 == scale_offsets(Q4_1).0 + 2);
    const _: () = assert!(scale_offsets(Q5_1).1 == scale_offsets(Q5_1).0 + 2);
    let word = |i: usize| (p[i].add(at) as *const i32).read_unaligned();
    let halves = _mm256_cvtph_ps(_mm_set_epi32(word(3), word(2), word(1), word(0)));
    // d0 m0 d1 m1 d2 m2 d3 m3 -> d0 d1 d2 d3 | m0 m1 m2 m3
    let split = _mm256_permutevar8x32_ps(halves, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    (
        _mm256_castps256_ps128(split),
        _mm256_extractf128_ps(split, 1),
    )
}

macro_rules! gemv_kernels {
    ($features:literal, $dot:path, $sum4:path) => {
        /// Dots the first `rows / 4 * 4` weight rows of `w` with the one
        /// activation row `acts`; returns how many rows it did. `out[r]`
        /// receives row r's dot.
        ///
        /// # Safety
        /// AVX2, FMA and F16C (and the features named above) must be
        /// available. `w` holds whole rows of `row_bytes`, `acts` one row
        /// with the same number of blocks, `out` one value per row.
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows<const F: u8>(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            out: &mut [f64],
        ) -> usize {
            let (wb, _, _) = layout(F);
            let nb = row_bytes / wb;
            let a = act_scales::<F>(acts, acts.len(), 1);
            let groups = w.len() / row_bytes / ROWS;
            for g in 0..groups {
                let base = w.as_ptr().add(g * ROWS * row_bytes);
                let p = [0, 1, 2, 3].map(|i| base.add(i * row_bytes));
                let sums = four_rows::<F>(p, nb, acts.as_ptr(), &a);
                _mm256_storeu_pd(out.as_mut_ptr().add(g * ROWS), sums);
            }
            groups * ROWS
        }

        /// The four rows at `p`, each `nb` blocks.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn four_rows<const F: u8>(
            p: [*const u8; ROWS],
            nb: usize,
            acts: *const u8,
            a: &ActScales,
        ) -> __m256d {
            // Lane `b % 4` of each sum, as named locals rather than an
            // array indexed in a loop, so that they stay in registers.
            let zero = _mm256_setzero_pd();
            let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
            let (mut m0, mut m1, mut m2, mut m3) = (zero, zero, zero, zero);
            let mut b = 0;
            while b + 4 <= nb {
                // The next four rows, one linear pass over them while these
                // four are read: as many bytes as this step reads.
                let next = p[0].wrapping_add(ROWS * nb * layout(F).0 + b * ROWS * layout(F).0);
                prefetch_run(next, ROWS * 4 * layout(F).0);
                block::<F>(p, b, acts, a, &mut a0, &mut m0);
                block::<F>(p, b + 1, acts, a, &mut a1, &mut m1);
                block::<F>(p, b + 2, acts, a, &mut a2, &mut m2);
                block::<F>(p, b + 3, acts, a, &mut a3, &mut m3);
                b += 4;
            }
            // A row's last blocks when their count is not a multiple of
            // four, into lanes 0, 1 and 2.
            if b < nb {
                block::<F>(p, b, acts, a, &mut a0, &mut m0);
            }
            if b + 1 < nb {
                block::<F>(p, b + 1, acts, a, &mut a1, &mut m1);
            }
            if b + 2 < nb {
                block::<F>(p, b + 2, acts, a, &mut a2, &mut m2);
            }
            let (acc, mins) = ([a0, a1, a2, a3], [m0, m1, m2, m3]);
            let sum = |v: &[__m256d; 4]| {
                _mm256_add_pd(_mm256_add_pd(v[0], v[2]), _mm256_add_pd(v[1], v[3]))
            };
            if has_minimum(F) {
                _mm256_add_pd(sum(&acc), sum(&mins))
            } else {
                sum(&acc)
            }
        }

        /// Block `b` of the four rows, into one f64 lane vector.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn block<const F: u8>(
            p: [*const u8; ROWS],
            b: usize,
            acts: *const u8,
            a: &ActScales,
            acc: &mut __m256d,
            mins: &mut __m256d,
        ) {
            let (wb, ab, aqs) = layout(F);
            let y = _mm256_loadu_si256(acts.add(b * ab + aqs) as *const __m256i);
            let q = p.map(|row| unpack_codes::<F>(row.add(b * wb)));
            let sums = if F == Q8_0 {
                reduce4(q.map(|q| $dot(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q))))
            } else {
                let sums = $sum4(q, [y; 4]);
                if code_offset(F) != 0 {
                    _mm_sub_epi32(sums, _mm_set1_epi32(*a.correction.get_unchecked(b)))
                } else {
                    sums
                }
            };
            let wd = if has_minimum(F) {
                let (wd, wm) = scale_min_of_rows(p, b * wb + scale_offsets(F).0);
                let m = _mm_mul_ps(wm, _mm_set1_ps(*a.s.get_unchecked(b)));
                *mins = _mm256_add_pd(*mins, _mm256_cvtps_pd(m));
                wd
            } else {
                f16_of_rows(p, b * wb + scale_offsets(F).0)
            };
            let d = _mm256_cvtps_pd(_mm_mul_ps(wd, _mm_set1_ps(*a.d.get_unchecked(b))));
            *acc = _mm256_fmadd_pd(d, _mm256_cvtepi32_pd(sums), *acc);
        }
    };
}

/// AVX2 only.
pub(super) mod plain {
    use super::*;
    use crate::kernels::avx2::{dot_pairs, sum4_codes};
    gemv_kernels!("avx2,fma,f16c", dot_pairs, sum4_codes);
}

/// AVX2 plus AVX-512 VNNI (`vpdpbusd`) for the integer products.
pub(super) mod vnni {
    use super::*;
    use crate::kernels::avx2::{dot_vnni, sum4_codes_vnni};
    gemv_kernels!(
        "avx2,fma,f16c,avx512vl,avx512vnni",
        dot_vnni,
        sum4_codes_vnni
    );
}
