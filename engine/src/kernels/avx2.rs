//! Hand-written AVX2 dot products for the block formats the default model
//! uses most (Q4_0, Q4_1, Q8_0 weights). LLVM does not find the
//! `maddubs`/`madd` integer pattern on its own; these run several times
//! faster than the portable versions in `dot.rs`, which stay the reference
//! they are tested against.
//!
//! Every function here requires AVX2, FMA and F16C; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// Two f16 values at byte offsets of two blocks, converted with F16C (the
/// `half` crate's conversion is an out-of-line call per value, a tenth of
/// the decode time here), multiplied in f32: exact, 11 × 11 bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scale_product(w: &[u8], wat: usize, a: &[u8], aat: usize) -> f64 {
    let wb = u16::from_le_bytes([w[wat], w[wat + 1]]);
    let ab = u16::from_le_bytes([a[aat], a[aat + 1]]);
    let v = _mm_cvtph_ps(_mm_set_epi16(0, 0, 0, 0, 0, 0, ab as i16, wb as i16));
    let prod = _mm_mul_ss(v, _mm_movehdup_ps(v));
    _mm_cvtss_f32(prod) as f64
}

/// Sum of two vectors of four f64 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(a: __m256d, b: __m256d) -> f64 {
    let v = _mm256_add_pd(a, b);
    let lo = _mm256_castpd256_pd128(v);
    let hi = _mm256_extractf128_pd(v, 1);
    let s = _mm_add_pd(lo, hi);
    let s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    _mm_cvtsd_f64(s)
}

/// `acc += d * lanes`, widening the eight i32 lanes to f64 (exact).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_wide(d: __m256d, lanes: __m256i, acc: &mut (__m256d, __m256d)) {
    let lo = _mm256_cvtepi32_pd(_mm256_castsi256_si128(lanes));
    let hi = _mm256_cvtepi32_pd(_mm256_extracti128_si256(lanes, 1));
    acc.0 = _mm256_fmadd_pd(d, lo, acc.0);
    acc.1 = _mm256_fmadd_pd(d, hi, acc.1);
}

/// Signed i8 × signed i8 over 32 lanes, summed in pairs to 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    let p16 = _mm256_maddubs_epi16(ax, sy);
    _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
}

/// Unsigned u8 × signed i8 over 32 lanes, to 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256i {
    let p16 = _mm256_maddubs_epi16(x, y);
    _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
}

/// 16 bytes of packed nibbles to 32 bytes: low nibbles first, then high.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn unpack_nibbles(p: *const u8) -> __m256i {
    let packed = _mm_loadu_si128(p as *const __m128i);
    let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// Q4_0 weights against Q8_0 activations.
///
/// # Safety
/// AVX2 and FMA must be available; `w` and `a` hold the same number of blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_0_q8_0(w: &[u8], a: &[u8]) -> f64 {
    let mut acc = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let eight = _mm256_set1_epi8(8);
    for (wb, ab) in w.chunks_exact(18).zip(a.chunks_exact(34)) {
        let d = _mm256_set1_pd(scale_product(wb, 0, ab, 0));
        let q = _mm256_sub_epi8(unpack_nibbles(wb.as_ptr().add(2)), eight);
        let y = _mm256_loadu_si256(ab.as_ptr().add(2) as *const __m256i);
        fma_wide(d, dot_i8(q, y), &mut acc);
    }
    hsum(acc.0, acc.1)
}

/// Q4_1 weights against Q8_1 activations.
///
/// # Safety
/// As [`dot_q4_0_q8_0`].
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_1_q8_1(w: &[u8], a: &[u8]) -> f64 {
    let mut acc = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let mut mins = 0.0f64;
    for (wb, ab) in w.chunks_exact(20).zip(a.chunks_exact(36)) {
        let d = _mm256_set1_pd(scale_product(wb, 0, ab, 0));
        mins += scale_product(wb, 2, ab, 2);
        let q = unpack_nibbles(wb.as_ptr().add(4));
        let y = _mm256_loadu_si256(ab.as_ptr().add(4) as *const __m256i);
        fma_wide(d, dot_u8_i8(q, y), &mut acc);
    }
    hsum(acc.0, acc.1) + mins
}

/// Q8_0 weights against Q8_0 activations.
///
/// # Safety
/// As [`dot_q4_0_q8_0`].
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q8_0_q8_0(w: &[u8], a: &[u8]) -> f64 {
    let mut acc = (_mm256_setzero_pd(), _mm256_setzero_pd());
    for (wb, ab) in w.chunks_exact(34).zip(a.chunks_exact(34)) {
        let d = _mm256_set1_pd(scale_product(wb, 0, ab, 0));
        let x = _mm256_loadu_si256(wb.as_ptr().add(2) as *const __m256i);
        let y = _mm256_loadu_si256(ab.as_ptr().add(2) as *const __m256i);
        fma_wide(d, dot_i8(x, y), &mut acc);
    }
    hsum(acc.0, acc.1)
}
