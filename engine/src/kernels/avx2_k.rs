//! Hand-written AVX2 kernels for the K-quants the model files use most
//! (Q4_K, Q5_K and Q6_K weights against Q8_K activations: a Q4_K_M file
//! holds Q4_K and Q6_K, a Q5_K_M file Q5_K and Q6_K).
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
use super::blocks::{as_blocks, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};

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
pub(super) const ONE_TOKEN_ROWS: usize = 4;

/// The activation super-block at `a`: its 256 quants as eight vectors of
/// 32, and its sixteen group sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn act_super_block(a: *const u8) -> ([__m256i; 8], __m256i) {
    let y = std::array::from_fn(|k| _mm256_loadu_si256(a.add(Q8K_QS + 32 * k) as *const __m256i));
    (y, _mm256_loadu_si256(a.add(Q8K_BSUMS) as *const __m256i))
}

/// While super-block `i` of the four rows at `base` is read, asks for the
/// same super-block of the next four rows: one linear pass over them, as
/// many bytes as this step reads (past the weights' end is harmless).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn prefetch_next_rows(
    base: *const u8,
    row_bytes: usize,
    i: usize,
    super_bytes: usize,
) {
    let rows = ONE_TOKEN_ROWS;
    let next = base.wrapping_add(rows * row_bytes + i * rows * super_bytes);
    for line in 0..(rows * super_bytes).div_ceil(64) {
        _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(line * 64) as *const i8);
    }
}

/// Four rows' f16 values (row r in bits 16r..16r+16) as four f64.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16x4_to_f64(bits: u64) -> __m256d {
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

/// Q4_K and Q5_K super-blocks begin alike (f16 `d`, f16 `dmin`, 12 bytes
/// of 6-bit scales and minimums) and end with the same 128 bytes of
/// nibbles; Q5_K puts 32 bytes of fifth bits (`qh`) between. The kernels
/// below take either, `FIVE` naming Q5_K.
const _: () = assert!(
    offset_of!(BlockQ4K, d) == offset_of!(BlockQ5K, d)
        && offset_of!(BlockQ4K, dmin) == offset_of!(BlockQ5K, dmin)
        && offset_of!(BlockQ4K, scales) == offset_of!(BlockQ5K, scales)
);

/// Bytes of one Q4_K (or, with `five`, Q5_K) super-block.
pub(super) const fn scale_min_bytes(five: bool) -> usize {
    if five {
        size_of::<BlockQ5K>()
    } else {
        size_of::<BlockQ4K>()
    }
}

/// A Q4_K or Q5_K super-block's f16 `d` and `dmin` bits and packed scales.
#[inline(always)]
pub(super) unsafe fn scale_min_header<'a>(b: *const u8) -> (u16, u16, &'a [u8; 12]) {
    // SAFETY (caller): a Q4_K or Q5_K block starts at b; the header is the
    // same in both (asserted above).
    let head = &*(b as *const BlockQ4K);
    (head.d.bits(), head.dmin.bits(), &head.scales)
}

/// A Q5_K super-block's 256 quants as unsigned bytes (0..31), eight vectors
/// of 32: Q4_K's nibbles plus 16 where bit `j` of `qh[l]` is set, `j` being
/// the group (vector) and `l` the value's place in it.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5k_quants(wb: &BlockQ5K) -> [__m256i; 8] {
    let mask = _mm256_set1_epi8(0x0f);
    let fifth = _mm256_set1_epi8(0x10);
    let mut bits = _mm256_loadu_si256(wb.qh.as_ptr() as *const __m256i);
    let mut q = [_mm256_setzero_si256(); 8];
    for c in 0..4 {
        let v = _mm256_loadu_si256(wb.qs.as_ptr().add(32 * c) as *const __m256i);
        let nibbles = [
            _mm256_and_si256(v, mask),
            _mm256_and_si256(_mm256_srli_epi16(v, 4), mask),
        ];
        for (h, nibbles) in nibbles.into_iter().enumerate() {
            // Bit 0 of each byte of `bits` is group 2c + h's bit; the
            // 16-bit shifts carry bits across bytes only above bit 0.
            let high = _mm256_and_si256(_mm256_slli_epi16(bits, 4), fifth);
            q[2 * c + h] = _mm256_or_si256(nibbles, high);
            bits = _mm256_srli_epi16(bits, 1);
        }
    }
    q
}

/// The quants of the Q4_K (or, with `FIVE`, Q5_K) super-block at `b`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scale_min_quants<const FIVE: bool>(b: *const u8) -> [__m256i; 8] {
    if FIVE {
        q5k_quants(&*(b as *const BlockQ5K))
    } else {
        q4k_quants(&*(b as *const BlockQ4K))
    }
}

/// Asks for the `len` bytes a kilobyte past `p` (decode streams each weight
/// byte once; prefetches past the end of the weights do not fault).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn prefetch_ahead(p: *const u8, len: usize) {
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
pub(super) unsafe fn q4k_scales(q: &[u8; 12]) -> ([__m256i; 8], __m256i) {
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
    rows_scale_min::<false>(w, row_bytes, acts, act_row_bytes, tokens, out)
}

/// Q5_K weights: Q4_K's layout with 32 bytes of fifth bits before the
/// nibbles. Quants reach 31, so a `maddubs` pair is at most 2 x 31 x 128,
/// well inside i16.
///
/// # Safety
/// As [`rows_q4k`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows_q5k(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    rows_scale_min::<true>(w, row_bytes, acts, act_row_bytes, tokens, out)
}

/// The body of [`rows_q4k`] and [`rows_q5k`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_scale_min<const FIVE: bool>(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    let sb = scale_min_bytes(FIVE);
    for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
        o.fill(0.0);
        for i in 0..row_bytes / sb {
            let b = row.as_ptr().add(i * sb);
            prefetch_ahead(b, sb);
            let (d, dmin, scales) = scale_min_header(b);
            let d = f16_to_f32(d) as f64;
            let dmin = f16_to_f32(dmin) as f64;
            let (sc, mins) = q4k_scales(scales);
            let q = scale_min_quants::<FIVE>(b);
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
pub(super) struct Q6kUnpacked {
    pub(super) q: [__m256i; 8],
    pub(super) sc: [__m256i; 8],
    pub(super) sc16: __m256i,
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q6k_unpack(wb: &BlockQ6K) -> Q6kUnpacked {
    let s8 = _mm_loadu_si128(wb.scales.as_ptr() as *const __m128i);
    let sc16 = _mm256_cvtepi8_epi16(s8);
    let q = q6k_quants(wb);
    let sc = group_pair_scales(sc16);
    Q6kUnpacked { q, sc, sc16 }
}

/// A Q6_K super-block's 256 quants as unsigned bytes (0..63), eight
/// vectors of 32 in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q6k_quants(wb: &BlockQ6K) -> [__m256i; 8] {
    let low = _mm256_set1_epi8(0x0f);
    let high = _mm256_set1_epi8(0x30);
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
    q
}

/// Sixteen group scales (i16 lane g holding group g's) as the factors of
/// eight `madd`s: vector k covers groups 2k (its low 128 bits, sixteen
/// values) and 2k + 1 (its high 128 bits). Two lane swaps and a byte
/// shuffle per vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn group_pair_scales(scales: __m256i) -> [__m256i; 8] {
    let first = _mm256_permute2x128_si256::<0x00>(scales, scales);
    let last = _mm256_permute2x128_si256::<0x11>(scales, scales);
    let mut out = [_mm256_setzero_si256(); 8];
    for (k, out) in out.iter_mut().enumerate() {
        let from = if k < 4 { first } else { last };
        // Word 2j (bytes 4j, 4j + 1) into the low half, word 2j + 1 into the high.
        let b = 4 * (k % 4) as i8;
        let pick = _mm256_setr_epi8(
            b,
            b + 1,
            b,
            b + 1,
            b,
            b + 1,
            b,
            b + 1,
            b,
            b + 1,
            b,
            b + 1,
            b,
            b + 1,
            b,
            b + 1,
            b + 2,
            b + 3,
            b + 2,
            b + 3,
            b + 2,
            b + 3,
            b + 2,
            b + 3,
            b + 2,
            b + 3,
            b + 2,
            b + 3,
            b + 2,
            b + 3,
            b + 2,
            b + 3,
        );
        *out = _mm256_shuffle_epi8(from, pick);
    }
    out
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
    rows_scale_min_one_token::<false>(w, row_bytes, acts, out)
}

/// As [`rows_q4k_one_token`], for Q5_K rows (the same bits as [`rows_q5k`]).
///
/// # Safety
/// As [`rows_q5k`] with one token.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows_q5k_one_token(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    out: &mut [f64],
) -> usize {
    rows_scale_min_one_token::<true>(w, row_bytes, acts, out)
}

/// The body of [`rows_q4k_one_token`] and [`rows_q5k_one_token`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_scale_min_one_token<const FIVE: bool>(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    out: &mut [f64],
) -> usize {
    const ROWS: usize = ONE_TOKEN_ROWS;
    let sb = scale_min_bytes(FIVE);
    let supers = row_bytes / sb;
    let groups = w.len() / row_bytes / ROWS;
    for g in 0..groups {
        let base = w.as_ptr().add(g * ROWS * row_bytes);
        let mut o = _mm256_setzero_pd();
        for i in 0..supers {
            prefetch_next_rows(base, row_bytes, i, sb);
            let a = acts.as_ptr().add(i * Q8K_BYTES);
            let (y, bs) = act_super_block(a);
            let mut sums = [_mm256_setzero_si256(); ROWS];
            let mut mins = [_mm256_setzero_si256(); ROWS];
            let (mut d, mut dmin) = (0u64, 0u64);
            for r in 0..ROWS {
                let b = base.add(r * row_bytes + i * sb);
                let (d_bits, dmin_bits, scales) = scale_min_header(b);
                let (sc, m) = q4k_scales(scales);
                let q = scale_min_quants::<FIVE>(b);
                let mut accv = _mm256_setzero_si256();
                for j in 0..8 {
                    let p = _mm256_maddubs_epi16(q[j], y[j]);
                    accv = _mm256_add_epi32(accv, _mm256_madd_epi16(p, sc[j]));
                }
                sums[r] = accv;
                mins[r] = _mm256_madd_epi16(bs, m);
                d |= (d_bits as u64) << (16 * r);
                dmin |= (dmin_bits as u64) << (16 * r);
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
