//! Hand-written AVX2 kernels for the K-quants the model files use most
//! (Q4_K, Q6_K weights against Q8_K activations).
//!
//! Each 256-value super-block is unpacked once (quants to bytes, group
//! scales to i16 vectors) and then dotted with every token row, so prefill
//! does not redo the bit work per token. Per super-block the integer sums
//! are exact and the float step is the same f64 expression, in the same
//! order, as the portable body in `dot.rs`: results are bitwise equal to it.
//!
//! Every function here requires AVX2, FMA and F16C; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::mem::{offset_of, size_of};

use super::avx2::{f16_to_f32, hsum_epi32, reduce4};
use super::blocks::{as_blocks, BlockQ4K, BlockQ6K, BlockQ8K};

/// Bytes of one Q8_K activation super-block, and where its parts start.
pub(super) const Q8K_BYTES: usize = size_of::<BlockQ8K>();
pub(super) const Q8K_QS: usize = offset_of!(BlockQ8K, qs);
pub(super) const Q8K_BSUMS: usize = offset_of!(BlockQ8K, bsums);

#[inline(always)]
pub(super) unsafe fn act_scale(a: *const u8) -> f64 {
    // SAFETY (caller): a Q8_K block starts at a.
    (a.add(offset_of!(BlockQ8K, d)) as *const f32).read_unaligned() as f64
}

/// Rows the one-token kernels take together.
const ONE_TOKEN_ROWS: usize = 4;

/// The activation super-block at `a`: its 256 quants as eight vectors of
/// 32, and its sixteen group sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn act_super_block(a: *const u8) -> ([__m256i; 8], __m256i) {
    let y = std::array::from_fn(|k| _mm256_loadu_si256(a.add(Q8K_QS + 32 * k) as *const __m256i));
    (y, _mm256_loadu_si256(a.add(Q8K_BSUMS) as *const __m256i))
}

/// While super-block `i` of the four rows at `base` is read, asks for the
/// same super-block of the next four rows: one linear pass over them, as
/// many bytes as this step reads (past the weights' end is harmless).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prefetch_next_rows(base: *const u8, row_bytes: usize, i: usize, super_bytes: usize) {
    let rows = ONE_TOKEN_ROWS;
    let next = base.wrapping_add(rows * row_bytes + i * rows * super_bytes);
    for line in 0..(rows * super_bytes).div_ceil(64) {
        _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(line * 64) as *const i8);
    }
}

/// Four rows' f16 values (row r in bits 16r..16r+16) as four f64.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16x4_to_f64(bits: u64) -> __m256d {
    _mm256_cvtps_pd(_mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64)))
}

/// A Q4_K super-block's 256 quants as unsigned bytes, eight vectors of 32
/// (each 32-byte run of nibbles gives its low, then its high halves).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4k_quants(wb: &BlockQ4K) -> [__m256i; 8] {
    let mask = _mm256_set1_epi8(0x0f);
    let mut q = [_mm256_setzero_si256(); 8];
    for c in 0..4 {
        let v = _mm256_loadu_si256(wb.qs.as_ptr().add(32 * c) as *const __m256i);
        q[2 * c] = _mm256_and_si256(v, mask);
        q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
    }
    q
}

/// Asks for the `len` bytes a kilobyte past `p` (decode streams each weight
/// byte once; prefetches past the end of the weights do not fault).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prefetch_ahead(p: *const u8, len: usize) {
    let mut at = 0;
    while at < len {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(1024 + at) as *const i8);
        at += 64;
    }
}

/// A Q4_K super-block's eight 6-bit group scales, each broadcast to the
/// sixteen i16 lanes `madd` multiplies by, and its eight minimums as the
/// pairs `[m0, m0, m1, m1, ..]` that line up with the activation's sixteen
/// `bsums`. The same values as `dequant::scale_min_k4`, unpacked four bytes at a
/// time: bytes 0-3 hold scales 0-3 (low 6 bits), bytes 4-7 minimums 0-3;
/// bytes 8-11 hold the low 4 bits of scales 4-7 (low nibble) and of
/// minimums 4-7 (high nibble), whose top 2 bits are the top bits of bytes
/// 0-3 and 4-7.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_scales(q: &[u8; 12]) -> ([__m256i; 8], __m256i) {
    let (scales, mins) = q4k_scale_bytes(q);
    let every = _mm256_set1_epi64x(scales as i64);
    // Byte j into the low byte of each i16 lane, zero into the high byte.
    let sc = std::array::from_fn(|j| {
        let pick = _mm256_set1_epi16((0x8000u16 | j as u16) as i16);
        _mm256_shuffle_epi8(every, pick)
    });
    let m = _mm_cvtsi64_si128(mins as i64);
    let pairs = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));
    (sc, pairs)
}

/// A Q4_K super-block's eight 6-bit scales and eight minimums, byte j of
/// each word being group j's (see [`q4k_scales`] for the packing).
#[inline(always)]
pub(super) fn q4k_scale_bytes(q: &[u8; 12]) -> (u64, u64) {
    let word = |i: usize| u32::from_le_bytes([q[i], q[i + 1], q[i + 2], q[i + 3]]);
    let (a, b, c) = (word(0), word(4), word(8));
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const TOP2: u32 = 0x0303_0303;
    let scales_hi = (c & LOW4) | ((a >> 6) & TOP2) << 4;
    let mins_hi = ((c >> 4) & LOW4) | ((b >> 6) & TOP2) << 4;
    let scales = (a & LOW6) as u64 | (scales_hi as u64) << 32;
    let mins = (b & LOW6) as u64 | (mins_hi as u64) << 32;
    (scales, mins)
}

/// Q4_K weights: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles.
///
/// # Safety
/// As `avx2::rows`: AVX2/FMA/F16C, whole rows, `tokens` activation rows
/// with as many super-blocks as a weight row, `out` rows × tokens.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows_q4k(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
        o.fill(0.0);
        for (i, wb) in as_blocks::<BlockQ4K>(row).iter().enumerate() {
            prefetch_ahead((wb as *const BlockQ4K).cast(), size_of::<BlockQ4K>());
            let d = f16_to_f32(wb.d.bits()) as f64;
            let dmin = f16_to_f32(wb.dmin.bits()) as f64;
            let (sc, mins) = q4k_scales(&wb.scales);
            let q = q4k_quants(wb);
            for (t, o) in o.iter_mut().enumerate() {
                let a = acts.as_ptr().add(t * act_row_bytes + i * Q8K_BYTES);
                let mut accv = _mm256_setzero_si256();
                for j in 0..8 {
                    let y = _mm256_loadu_si256(a.add(Q8K_QS + 32 * j) as *const __m256i);
                    let p = _mm256_maddubs_epi16(q[j], y);
                    accv = _mm256_add_epi32(accv, _mm256_madd_epi16(p, sc[j]));
                }
                let bs = _mm256_loadu_si256(a.add(Q8K_BSUMS) as *const __m256i);
                let acc = hsum_epi32(accv);
                let msum = hsum_epi32(_mm256_madd_epi16(bs, mins));
                *o += act_scale(a) * (d * acc as f64 - dmin * msum as f64);
            }
        }
    }
}

/// A Q6_K super-block unpacked: its 256 quants as unsigned bytes (0..63)
/// in eight vectors of 32, each group's scale broadcast to the i16 lanes of
/// its half, and the sixteen scales widened to i16 (for the offset).
struct Q6kUnpacked {
    q: [__m256i; 8],
    sc: [__m256i; 8],
    sc16: __m256i,
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_unpack(wb: &BlockQ6K) -> Q6kUnpacked {
    let low = _mm256_set1_epi8(0x0f);
    let high = _mm256_set1_epi8(0x30);
    let s8 = _mm_loadu_si128(wb.scales.as_ptr() as *const __m128i);
    let sc16 = _mm256_cvtepi8_epi16(s8);
    let mut q = [_mm256_setzero_si256(); 8];
    for h in 0..2 {
        let l0 = _mm256_loadu_si256(wb.ql.as_ptr().add(64 * h) as *const __m256i);
        let l1 = _mm256_loadu_si256(wb.ql.as_ptr().add(64 * h + 32) as *const __m256i);
        let hb = _mm256_loadu_si256(wb.qh.as_ptr().add(32 * h) as *const __m256i);
        let lo = |v: __m256i| _mm256_and_si256(v, low);
        let hi4 = |v: __m256i| _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
        q[4 * h] = _mm256_or_si256(lo(l0), _mm256_and_si256(_mm256_slli_epi16(hb, 4), high));
        q[4 * h + 1] = _mm256_or_si256(lo(l1), _mm256_and_si256(_mm256_slli_epi16(hb, 2), high));
        q[4 * h + 2] = _mm256_or_si256(hi4(l0), _mm256_and_si256(hb, high));
        q[4 * h + 3] = _mm256_or_si256(hi4(l1), _mm256_and_si256(_mm256_srli_epi16(hb, 2), high));
    }
    let sc = std::array::from_fn(|k| {
        let g0 = wb.scales[2 * k] as i16;
        let g1 = wb.scales[2 * k + 1] as i16;
        _mm256_set_m128i(_mm_set1_epi16(g1), _mm_set1_epi16(g0))
    });
    Q6kUnpacked { q, sc, sc16 }
}

/// Q6_K weights: 128 bytes of low nibbles, 64 of high bit pairs, 16 i8
/// group scales, f16 d. Quants are unpacked unsigned (0..63); the -32
/// offset is taken off afterwards with the activation group sums.
///
/// # Safety
/// As [`rows_q4k`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows_q6k(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
        o.fill(0.0);
        for (i, wb) in as_blocks::<BlockQ6K>(row).iter().enumerate() {
            prefetch_ahead((wb as *const BlockQ6K).cast(), size_of::<BlockQ6K>());
            let d = f16_to_f32(wb.d.bits()) as f64;
            let Q6kUnpacked { q, sc, sc16 } = q6k_unpack(wb);
            for (t, o) in o.iter_mut().enumerate() {
                let a = acts.as_ptr().add(t * act_row_bytes + i * Q8K_BYTES);
                let mut accv = _mm256_setzero_si256();
                for k in 0..8 {
                    let y = _mm256_loadu_si256(a.add(Q8K_QS + 32 * k) as *const __m256i);
                    let p = _mm256_maddubs_epi16(q[k], y);
                    accv = _mm256_add_epi32(accv, _mm256_madd_epi16(p, sc[k]));
                }
                let bs = _mm256_loadu_si256(a.add(Q8K_BSUMS) as *const __m256i);
                let offset = hsum_epi32(_mm256_madd_epi16(bs, sc16));
                let acc = hsum_epi32(accv) - 32 * offset;
                *o += act_scale(a) * d * acc as f64;
            }
        }
    }
}

/// One token against Q4_K rows four at a time: the activation super-block
/// is loaded once for four rows, their integer sums are reduced together,
/// and the float step runs on the four rows as one f64 vector, with the
/// same operations in the same order as [`rows_q4k`] (so the same bits).
/// The next four rows are prefetched in one linear pass. Returns how many
/// rows it did (`rows / 4 * 4`); `out[r]` receives row r's dot.
///
/// # Safety
/// As [`rows_q4k`] with one token.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows_q4k_one_token(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    out: &mut [f64],
) -> usize {
    const ROWS: usize = ONE_TOKEN_ROWS;
    const SB: usize = size_of::<BlockQ4K>();
    let supers = row_bytes / SB;
    let groups = w.len() / row_bytes / ROWS;
    for g in 0..groups {
        let base = w.as_ptr().add(g * ROWS * row_bytes);
        let mut o = _mm256_setzero_pd();
        for i in 0..supers {
            prefetch_next_rows(base, row_bytes, i, SB);
            let a = acts.as_ptr().add(i * Q8K_BYTES);
            let (y, bs) = act_super_block(a);
            let mut sums = [_mm256_setzero_si256(); ROWS];
            let mut mins = [_mm256_setzero_si256(); ROWS];
            let (mut d, mut dmin) = (0u64, 0u64);
            for r in 0..ROWS {
                let wb = &*(base.add(r * row_bytes + i * SB) as *const BlockQ4K);
                let (sc, m) = q4k_scales(&wb.scales);
                let q = q4k_quants(wb);
                let mut accv = _mm256_setzero_si256();
                for j in 0..8 {
                    let p = _mm256_maddubs_epi16(q[j], y[j]);
                    accv = _mm256_add_epi32(accv, _mm256_madd_epi16(p, sc[j]));
                }
                sums[r] = accv;
                mins[r] = _mm256_madd_epi16(bs, m);
                d |= (wb.d.bits() as u64) << (16 * r);
                dmin |= (wb.dmin.bits() as u64) << (16 * r);
            }
            let acc = _mm256_cvtepi32_pd(reduce4(sums));
            let msum = _mm256_cvtepi32_pd(reduce4(mins));
            let step = _mm256_sub_pd(
                _mm256_mul_pd(f16x4_to_f64(d), acc),
                _mm256_mul_pd(f16x4_to_f64(dmin), msum),
            );
            o = _mm256_add_pd(o, _mm256_mul_pd(_mm256_set1_pd(act_scale(a)), step));
        }
        _mm256_storeu_pd(out.as_mut_ptr().add(g * ROWS), o);
    }
    groups * ROWS
}

/// One token against Q6_K rows four at a time, as [`rows_q4k_one_token`]
/// does for Q4_K; the same operations in the same order as [`rows_q6k`].
///
/// # Safety
/// As [`rows_q6k`] with one token.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows_q6k_one_token(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    out: &mut [f64],
) -> usize {
    const ROWS: usize = ONE_TOKEN_ROWS;
    const SB: usize = size_of::<BlockQ6K>();
    let supers = row_bytes / SB;
    let groups = w.len() / row_bytes / ROWS;
    for g in 0..groups {
        let base = w.as_ptr().add(g * ROWS * row_bytes);
        let mut o = _mm256_setzero_pd();
        for i in 0..supers {
            prefetch_next_rows(base, row_bytes, i, SB);
            let a = acts.as_ptr().add(i * Q8K_BYTES);
            let (y, bs) = act_super_block(a);
            let mut sums = [_mm256_setzero_si256(); ROWS];
            let mut offsets = [_mm256_setzero_si256(); ROWS];
            let mut d = 0u64;
            for r in 0..ROWS {
                let wb = &*(base.add(r * row_bytes + i * SB) as *const BlockQ6K);
                let Q6kUnpacked { q, sc, sc16 } = q6k_unpack(wb);
                let mut accv = _mm256_setzero_si256();
                for k in 0..8 {
                    let p = _mm256_maddubs_epi16(q[k], y[k]);
                    accv = _mm256_add_epi32(accv, _mm256_madd_epi16(p, sc[k]));
                }
                sums[r] = accv;
                offsets[r] = _mm256_madd_epi16(bs, sc16);
                d |= (wb.d.bits() as u64) << (16 * r);
            }
            let acc = _mm_sub_epi32(reduce4(sums), _mm_slli_epi32(reduce4(offsets), 5));
            let scale = _mm256_mul_pd(_mm256_set1_pd(act_scale(a)), f16x4_to_f64(d));
            o = _mm256_add_pd(o, _mm256_mul_pd(scale, _mm256_cvtepi32_pd(acc)));
        }
        _mm256_storeu_pd(out.as_mut_ptr().add(g * ROWS), o);
    }
    groups * ROWS
}
