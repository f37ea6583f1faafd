//! Hand-written AVX2 kernels for the 32-value block formats (Q4_0, Q4_1,
//! Q5_0, Q8_0 weights). LLVM does not find the `maddubs`/`madd` integer
//! pattern on its own; the portable bodies in `dot.rs` stay the reference
//! these are tested against.
//!
//! Prefill: each weight block is unpacked once and dotted with a tile of up
//! to four token rows, so a row's nibbles are not re-unpacked per token.
//!
//! Accumulation: each block's integer sum stays exact (i32), its scale is
//! the f32 product of two f16 scales (exact), and their product is exact in
//! f64. Four blocks' eight-lane integer sums are reduced together to one
//! vector of four i32, converted once, and added with one f64 FMA, rather
//! than two conversions and two FMAs per block.
//!
//! Activations must lie in [-127, 127] (the quantizers in `quantize.rs`
//! never emit -128): the signed-by-signed product uses `sign`, which cannot
//! negate -128.
//!
//! Every function here requires AVX2, FMA and F16C; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::mem::offset_of;

use super::block32::{has_minimum, layout, scale_offsets, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
use super::blocks::{as_blocks, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};

#[inline(always)]
pub(super) unsafe fn rd16(p: *const u8) -> u16 {
    // SAFETY (caller): two readable bytes at p.
    (p as *const u16).read_unaligned()
}

/// One f16 to f32 with F16C (the `half` crate's conversion is an
/// out-of-line call per value).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16_to_f32(h: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// 16 bytes of packed nibbles to 32 bytes: low nibbles first, then high.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack_nibbles(p: *const u8) -> __m256i {
    let packed = _mm_loadu_si128(p as *const __m128i);
    let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// 32 bits to 32 bytes: 0x10 where the bit is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bits_to_0x10(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    let spread = _mm256_shuffle_epi8(
        v,
        _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        ),
    );
    let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// A weight block's 32 values as bytes: signed for Q4_0/Q5_0/Q8_0,
/// unsigned 0..15 for Q4_1 and 0..31 for Q5_1.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack<const F: u8>(b: *const u8) -> __m256i {
    match F {
        Q4_0 => _mm256_sub_epi8(unpack_codes::<F>(b), _mm256_set1_epi8(8)),
        Q5_0 => _mm256_sub_epi8(unpack_codes::<F>(b), _mm256_set1_epi8(16)),
        _ => unpack_codes::<F>(b),
    }
}

/// A weight block's 32 stored codes as bytes: unsigned for the 4- and
/// 5-bit formats (before Q4_0's and Q5_0's offset), signed for Q8_0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn unpack_codes<const F: u8>(b: *const u8) -> __m256i {
    match F {
        Q4_0 => unpack_nibbles(b.add(offset_of!(BlockQ4_0, qs))),
        Q4_1 => unpack_nibbles(b.add(offset_of!(BlockQ4_1, qs))),
        Q5_0 => fifth_bits(
            b.add(offset_of!(BlockQ5_0, qh)),
            b.add(offset_of!(BlockQ5_0, qs)),
        ),
        Q5_1 => fifth_bits(
            b.add(offset_of!(BlockQ5_1, qh)),
            b.add(offset_of!(BlockQ5_1, qs)),
        ),
        _ => _mm256_loadu_si256(b.add(offset_of!(BlockQ8_0, qs)) as *const __m256i),
    }
}

/// A 5-bit block's codes: the nibbles at `qs` with 16 added where the
/// bit at `qh` is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fifth_bits(qh: *const u8, qs: *const u8) -> __m256i {
    let high = bits_to_0x10(u32::from_le((qh as *const u32).read_unaligned()));
    _mm256_or_si256(unpack_nibbles(qs), high)
}

/// Four blocks' eight i32 lanes each to one i32 per block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn reduce4(s: [__m256i; 4]) -> __m128i {
    let h01 = _mm256_hadd_epi32(s[0], s[1]);
    let h23 = _mm256_hadd_epi32(s[2], s[3]);
    let h = _mm256_hadd_epi32(h01, h23);
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1))
}

/// Sum of four f64 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn hsum_pd(v: __m256d) -> f64 {
    let s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
}

/// Sum of eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// Per-token activation block scales (and Q4_1's or Q5_1's `d * sum`) as f32, so the
/// inner loop loads four at once instead of converting f16 per row; for
/// Q4_0 and Q5_0, the weights' offset (8, 16) times each block's `Σy`,
/// taken off the integer sum of the unsigned codes: `Σ(q - o)·y = Σq·y - o·Σy`.
#[derive(Default)]
pub(super) struct ActScales {
    pub(super) d: Vec<f32>,
    pub(super) s: Vec<f32>,
    pub(super) correction: Vec<i32>,
}

/// The offset a format's stored codes carry (0 where they are the values).
pub(super) const fn code_offset(f: u8) -> i32 {
    match f {
        Q4_0 => 8,
        Q5_0 => 16,
        _ => 0,
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn act_scales<const F: u8>(
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
) -> ActScales {
    let (_, ab, _) = layout(F);
    let nb = act_row_bytes / ab;
    let mut d = Vec::with_capacity(tokens * nb);
    let mut s = Vec::with_capacity(if has_minimum(F) { tokens * nb } else { 0 });
    let offset = code_offset(F);
    let mut correction = Vec::with_capacity(if offset != 0 { tokens * nb } else { 0 });
    for row in acts.chunks_exact(act_row_bytes).take(tokens) {
        if has_minimum(F) {
            for blk in as_blocks::<BlockQ8_1>(row) {
                d.push(f16_to_f32(blk.d.bits()));
                s.push(f16_to_f32(blk.s.bits()));
            }
        } else {
            for blk in as_blocks::<BlockQ8_0>(row) {
                d.push(f16_to_f32(blk.d.bits()));
                if offset != 0 {
                    correction.push(offset * sum_i8(blk.qs.as_ptr()));
                }
            }
        }
    }
    ActScales { d, s, correction }
}

/// `offset · Σy` for each activation block of the first `tokens` rows
/// (Q8_0's layout): what codes stored `offset` above their values (Q8_0's,
/// flipped to the unsigned bytes `vpdpbusd` takes) add to each block's
/// integer sum.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q8_offset_terms(
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    offset: i32,
) -> Vec<i32> {
    let (_, ab, aqs) = layout(Q8_0);
    let blocks = acts.len().min(tokens * act_row_bytes) / ab;
    (0..blocks)
        .map(|b| offset * sum_i8(acts.as_ptr().add(b * ab + aqs) as *const i8))
        .collect()
}

/// The sum of 32 signed bytes: ones times the bytes, pairs to i16, pairs
/// to i32, then the eight lanes added. Every task of a matmul prepares its
/// activation's block sums, so this runs once per block per task.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn sum_i8(p: *const i8) -> i32 {
    let y = _mm256_loadu_si256(p as *const __m256i);
    let pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), y);
    let quads = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    let half = _mm_add_epi32(
        _mm256_castsi256_si128(quads),
        _mm256_extracti128_si256(quads, 1),
    );
    let two = _mm_add_epi32(half, _mm_unpackhi_epi64(half, half));
    _mm_cvtsi128_si32(_mm_add_epi32(two, _mm_shuffle_epi32(two, 1)))
}

/// Unsigned bytes times signed bytes, each four adjacent products summed
/// into an i32 lane (`maddubs` pairs to i16, `madd` pairs to i32; no pair
/// can saturate: |q| <= 128 and |y| <= 127).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_pairs(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// As [`dot_pairs`] in one AVX-512 VNNI instruction (on 256-bit vectors).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vl,avx512vnni")]
pub(super) unsafe fn dot_vnni(u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
}

/// Four blocks' products of unsigned codes (at most 31) with activations,
/// one exact i32 per block, block k in lane k. The i16 pair sums `maddubs`
/// leaves are added pairwise twice more before widening (8 products per
/// lane, at most 31 x 128 x 8 = 31744, so nothing wraps), which takes
/// three horizontal adds and one widening per four blocks instead of four
/// widenings and three horizontal adds of i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn sum4_codes(q: [__m256i; 4], y: [__m256i; 4]) -> __m128i {
    let p = [0, 1, 2, 3].map(|k| _mm256_maddubs_epi16(q[k], y[k]));
    let h01 = _mm256_hadd_epi16(p[0], p[1]);
    let h23 = _mm256_hadd_epi16(p[2], p[3]);
    // Per 128-bit half: two i16 lanes per block, in block order.
    let h = _mm256_madd_epi16(_mm256_hadd_epi16(h01, h23), _mm256_set1_epi16(1));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1))
}

/// As [`sum4_codes`] with VNNI: one `vpdpbusd` per block, then the i32
/// lanes reduced.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vl,avx512vnni")]
pub(super) unsafe fn sum4_codes_vnni(q: [__m256i; 4], y: [__m256i; 4]) -> __m128i {
    reduce4([0, 1, 2, 3].map(|k| dot_vnni(q[k], y[k])))
}

/// The row kernels, compiled once per instruction set: the target features
/// are fixed per function, so the VNNI build is a second copy rather than a
/// branch inside the loop.
macro_rules! block32_kernels {
    ($features:literal, $dot:ident, $sum4:ident) => {
        /// Dots every weight row in `w` with `tokens` activation rows; see
        /// `dot::dot_rows` for the layout.
        ///
        /// # Safety
        /// AVX2, FMA and F16C must be available. `w` holds whole rows of
        /// `row_bytes`, `acts` holds `tokens` rows of `act_row_bytes` with the same
        /// number of blocks as a weight row, and `out` holds rows × tokens values.
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows<const F: u8>(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            act_row_bytes: usize,
            tokens: usize,
            out: &mut [f64],
        ) {
            let nb = row_bytes / layout(F).0;
            let sc = act_scales::<F>(acts, act_row_bytes, tokens);
            for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
                let mut t = 0;
                while t + 4 <= tokens {
                    tile::<F, 4>(
                        row.as_ptr(),
                        nb,
                        acts,
                        act_row_bytes,
                        &sc,
                        t,
                        &mut o[t..t + 4],
                    );
                    t += 4;
                }
                let o = &mut o[t..];
                match tokens - t {
                    3 => tile::<F, 3>(row.as_ptr(), nb, acts, act_row_bytes, &sc, t, o),
                    2 => tile::<F, 2>(row.as_ptr(), nb, acts, act_row_bytes, &sc, t, o),
                    1 => tile::<F, 1>(row.as_ptr(), nb, acts, act_row_bytes, &sc, t, o),
                    _ => {}
                }
            }
        }

        /// One weight row against tokens `t0..t0 + T`.
        #[inline]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn tile<const F: u8, const T: usize>(
            row: *const u8,
            nb: usize,
            acts: &[u8],
            stride: usize,
            sc: &ActScales,
            t0: usize,
            out: &mut [f64],
        ) {
            let mut acc = [_mm256_setzero_pd(); T];
            let mut mins = [_mm256_setzero_pd(); T];
            let a0 = acts.as_ptr().add(t0 * stride);
            let mut b = 0;
            while b + 4 <= nb {
                // Decode streams each weight byte once; ask for the bytes a kilobyte
                // ahead (past the row's end is harmless: prefetches do not fault).
                let ahead = row.wrapping_add(b * layout(F).0 + 1024) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                group::<F, T, 4>(row, nb, a0, stride, sc, t0, b, &mut acc, &mut mins);
                b += 4;
            }
            match nb - b {
                3 => group::<F, T, 3>(row, nb, a0, stride, sc, t0, b, &mut acc, &mut mins),
                2 => group::<F, T, 2>(row, nb, a0, stride, sc, t0, b, &mut acc, &mut mins),
                1 => group::<F, T, 1>(row, nb, a0, stride, sc, t0, b, &mut acc, &mut mins),
                _ => {}
            }
            for t in 0..T {
                out[t] = if has_minimum(F) {
                    hsum_pd(acc[t]) + hsum_pd(mins[t])
                } else {
                    hsum_pd(acc[t])
                };
            }
        }

        /// Blocks `b..b + N` (N <= 4) of one row against T token rows.
        #[inline]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn group<const F: u8, const T: usize, const N: usize>(
            row: *const u8,
            nb: usize,
            a0: *const u8,
            stride: usize,
            sc: &ActScales,
            t0: usize,
            b: usize,
            acc: &mut [__m256d; T],
            mins: &mut [__m256d; T],
        ) {
            let (wb, ab, aqs) = layout(F);
            // Q8_0 is multiplied signed (|q| by y with q's sign); the
            // others as unsigned codes, summed by `$sum4`.
            let mut q = [_mm256_setzero_si256(); 4];
            let mut qabs = [_mm256_setzero_si256(); 4];
            let mut wd = [0u16; 4];
            let mut wm = [0u16; 4];
            for k in 0..N {
                let p = row.add((b + k) * wb);
                if F == Q8_0 {
                    q[k] = unpack::<F>(p);
                    qabs[k] = _mm256_sign_epi8(q[k], q[k]);
                } else {
                    q[k] = unpack_codes::<F>(p);
                }
                wd[k] = rd16(p.add(scale_offsets(F).0));
                if has_minimum(F) {
                    wm[k] = rd16(p.add(scale_offsets(F).1));
                }
            }
            let f16x4 = |h: [u16; 4]| {
                let bits =
                    h[0] as u64 | (h[1] as u64) << 16 | (h[2] as u64) << 32 | (h[3] as u64) << 48;
                _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
            };
            let wd = f16x4(wd);
            let wm = f16x4(wm);
            for t in 0..T {
                let a = a0.add(t * stride + b * ab);
                let mut y = [_mm256_setzero_si256(); 4];
                for k in 0..N {
                    y[k] = _mm256_loadu_si256(a.add(k * ab + aqs) as *const __m256i);
                }
                let at = (t0 + t) * nb + b;
                let sums = if F == Q8_0 {
                    // Written out: a closure here would not inherit the
                    // target features, and its call was a fifth of the time.
                    reduce4([
                        $dot(qabs[0], _mm256_sign_epi8(y[0], q[0])),
                        $dot(qabs[1], _mm256_sign_epi8(y[1], q[1])),
                        $dot(qabs[2], _mm256_sign_epi8(y[2], q[2])),
                        $dot(qabs[3], _mm256_sign_epi8(y[3], q[3])),
                    ])
                } else if code_offset(F) != 0 {
                    let c = if N == 4 {
                        _mm_loadu_si128(sc.correction.as_ptr().add(at) as *const __m128i)
                    } else {
                        let mut v = [0i32; 4];
                        v[..N].copy_from_slice(&sc.correction[at..at + N]);
                        _mm_loadu_si128(v.as_ptr() as *const __m128i)
                    };
                    _mm_sub_epi32($sum4(q, y), c)
                } else {
                    $sum4(q, y)
                };
                let ad = if N == 4 {
                    _mm_loadu_ps(sc.d.as_ptr().add(at))
                } else {
                    let mut v = [0.0f32; 4];
                    v[..N].copy_from_slice(&sc.d[at..at + N]);
                    _mm_loadu_ps(v.as_ptr())
                };
                // Missing blocks (N < 4) have zero weight scales and zero sums.
                let d = _mm256_cvtps_pd(_mm_mul_ps(wd, ad));
                acc[t] = _mm256_fmadd_pd(d, _mm256_cvtepi32_pd(sums), acc[t]);
                if has_minimum(F) {
                    let am = if N == 4 {
                        _mm_loadu_ps(sc.s.as_ptr().add(at))
                    } else {
                        let mut v = [0.0f32; 4];
                        v[..N].copy_from_slice(&sc.s[at..at + N]);
                        _mm_loadu_ps(v.as_ptr())
                    };
                    mins[t] = _mm256_add_pd(mins[t], _mm256_cvtps_pd(_mm_mul_ps(wm, am)));
                }
            }
        }
    };
}

/// AVX2 only.
pub(super) mod plain {
    use super::*;
    block32_kernels!("avx2,fma,f16c", dot_pairs, sum4_codes);
}

/// AVX2 plus AVX-512 VNNI (`vpdpbusd`) for the integer products.
pub(super) mod vnni {
    use super::*;
    block32_kernels!(
        "avx2,fma,f16c,avx512vl,avx512vnni",
        dot_vnni,
        sum4_codes_vnni
    );
}
