//! One-token decode for Q4_0 weights interleaved at load (`interleave.rs`):
//! one 32-byte load holds four codes of each of eight rows, a mask or a
//! shift unpacks them, and one broadcast of four activation bytes
//! multiplies all eight rows, so a block's eight i32 sums come out in row
//! lanes with no horizontal reduction, and its eight scales are one load.
//! The batch kernel (`avx2_gemm.rs`) unpacks the same layout into its
//! buffer.
//!
//! Results are bit-equal to the row kernel: each (row, block) integer is
//! the same (the unsigned codes' products less 8·Σy), its scale the same
//! f32 product, added by the same f64 FMA into lane `b % 4` of its row,
//! and the lanes summed as `(l0 + l2) + (l1 + l3)`.
//!
//! Every function here requires AVX2, FMA and F16C; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::avx2::{act_scales, ActScales};
use super::avx2_gemm::broadcast4;
use super::block32::{layout, Q4_0};
use super::interleave::{CODES_AT, GROUP_BLOCK, ROWS};

/// One token's sums in progress, as in `avx2_gemm.rs`: `[k][half]` is lane
/// `k` of rows 0..4 (`half` 0) and 4..8 (`half` 1).
type Lanes = [[__m256d; 2]; 4];

/// The four chunks' codes of one group block, low and high nibbles.
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

/// As [`block_sums_plain`], with `vpdpbusd` summing straight into i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vl,avx512vnni")]
unsafe fn block_sums_vnni(codes: *const u8, y: *const u8) -> __m256i {
    let mut s = [_mm256_setzero_si256(); 2];
    for k in 0..4 {
        let (lo, hi) = unpack_chunk(codes, k);
        s[0] = _mm256_dpbusd_epi32(s[0], lo, broadcast4(y, k));
        s[1] = _mm256_dpbusd_epi32(s[1], hi, broadcast4(y, 4 + k));
    }
    _mm256_add_epi32(s[0], s[1])
}

macro_rules! kernels {
    ($features:literal, $block_sums:ident) => {
        /// Dots the whole groups of eight interleaved Q4_0 rows in `w` with
        /// the one activation row `acts`; returns how many rows it did.
        /// `out[r]` receives row r's dot.
        ///
        /// # Safety
        /// The CPU must have the features named above. `w` holds whole
        /// rows of `row_bytes`, interleaved, `acts` one row with as many
        /// blocks, `out` one value per row.
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows_q4_0(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            out: &mut [f64],
        ) -> usize {
            let nb = row_bytes / layout(Q4_0).0;
            let groups = w.len() / row_bytes / ROWS;
            if groups == 0 {
                return 0;
            }
            let sc = act_scales::<Q4_0>(acts, acts.len(), 1);
            for g in 0..groups {
                let base = w.as_ptr().add(g * ROWS * row_bytes);
                let mut acc: Lanes = [[_mm256_setzero_pd(); 2]; 4];
                let mut b = 0;
                while b + 4 <= nb {
                    for (k, acc) in acc.iter_mut().enumerate() {
                        block(base, b + k, acts.as_ptr(), &sc, acc);
                    }
                    b += 4;
                }
                for (k, acc) in acc.iter_mut().enumerate().take(nb - b) {
                    block(base, b + k, acts.as_ptr(), &sc, acc);
                }
                for half in 0..2 {
                    let total = _mm256_add_pd(
                        _mm256_add_pd(acc[0][half], acc[2][half]),
                        _mm256_add_pd(acc[1][half], acc[3][half]),
                    );
                    _mm256_storeu_pd(out.as_mut_ptr().add(g * ROWS + 4 * half), total);
                }
            }
            groups * ROWS
        }

        /// Block `b` of the group at `base`, into its lanes.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn block(
            base: *const u8,
            b: usize,
            acts: *const u8,
            sc: &ActScales,
            acc: &mut [__m256d; 2],
        ) {
            let (_, ab, aqs) = layout(Q4_0);
            let blk = base.add(b * GROUP_BLOCK);
            let s = $block_sums(blk.add(CODES_AT), acts.add(b * ab + aqs));
            let s = _mm256_sub_epi32(s, _mm256_set1_epi32(*sc.correction.get_unchecked(b)));
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
        }
    };
}

/// AVX2 only.
pub(super) mod plain {
    use super::*;
    kernels!("avx2,fma,f16c", block_sums_plain);
}

/// AVX2 plus AVX-512 VNNI (`vpdpbusd`) for the integer products.
pub(super) mod vnni {
    use super::*;
    kernels!("avx2,fma,f16c,avx512vl,avx512vnni", block_sums_vnni);
}
