//! Prefill (a batch of tokens) for Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 on AVX2: eight
//! weight rows at a time are unpacked once into a small buffer with their
//! codes interleaved, four of each row side by side. Then one broadcast of
//! four activation bytes multiplies all eight rows, and the products land
//! in lanes that are already rows: a block costs eight multiplies per
//! eight rows, with no horizontal reduction per (row, token, block) as
//! the row kernel (`avx2.rs`) needs. The buffer is built once per eight
//! rows and read for every token, so its cost is shared by the batch; it
//! is built a chunk of 32 blocks at a time (8 KiB of codes), which stays
//! in L1 while every token reads it, and each token's running sums are
//! kept between chunks. Each code vector loaded is multiplied by a tile
//! of tokens (four with VNNI, two without), so the loop is not bound by
//! its loads.
//!
//! Weights in the file layout are interleaved only in this buffer, for
//! the length of one matmul task; Q4_0 and Q4_1 weights interleaved at load
//! (`interleave.rs`) fill it with a mask and a shift per 32 bytes, Q8_0's
//! with one load (and VNNI's flip) per 32 bytes.
//!
//! Q8_0's codes are signed. With VNNI they are packed plus 128 (as the
//! unsigned bytes `vpdpbusd` takes) and 128 times the activation block's
//! sum is taken off, as for Q4_0's offset of 8; without it, `maddubs`
//! would saturate on such codes, so they stay signed and are multiplied
//! as the row kernel does (|q| by y with q's sign), widened per group.
//!
//! Results are bit-equal to the row kernel: each block's i32 sum per row
//! is the same exact integer (the codes' products, less the offset times
//! the activation block's sum), its scale the same f32 product, added with
//! the same f64 FMA into lane `b % 4` of the row, and the lanes summed as
//! `(l0 + l2) + (l1 + l3)`; Q4_1's and Q5_1's minimum terms have lanes of their own,
//! added last.
//!
//! Every function here requires AVX2, FMA and F16C; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::avx2::{act_scales, code_offset, q8_offset_terms, rd16, unpack_codes, ActScales};
use super::avx2_interleaved::{codes_at, group_block, unpack_chunk};
use super::block32::{has_minimum, layout, scale_offsets, Q4_1, Q5_0, Q5_1, Q8_0};
use super::interleave::Q4_1_MINS_AT;
use super::prefetch::prefetch_to_l2;

/// Rows interleaved together: one i32 lane each.
pub(super) const ROWS: usize = 8;

/// Whether format `f`'s codes have a fifth bit (up to 31): four `maddubs`
/// of them fill an i16 lane (4 x 2 x 31 x 128 = 31744), where 4-bit codes
/// take eight.
const fn five_bit(f: u8) -> bool {
    matches!(f, Q5_0 | Q5_1)
}

/// Below this many tokens the row kernel is used: building the buffer
/// costs about as much as one token's products.
pub(super) const MIN_TOKENS: usize = 8;

/// Eight rows, interleaved: for block `b` of the packed chunk,
/// `codes[b * 8 + g]` holds codes `4g..4g + 4` of rows 0..8 (four bytes
/// per row, row r in lane r); `d[b]` the rows' scales as f64 (rows 0..4,
/// 4..8) and `m[b]` their minimums as f32, for every block of the row.
/// The scales are widened here, once per group, so that the f64 step of
/// every token is a multiply by its own scale, not two conversions.
struct Packed {
    codes: Vec<__m256i>,
    d: Vec<[__m256d; 2]>,
    m: Vec<__m256>,
}

/// Eight f32 as f64, rows 0..4 and 4..8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn widen(x: __m256) -> [__m256d; 2] {
    [
        _mm256_cvtps_pd(_mm256_castps256_ps128(x)),
        _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)),
    ]
}

/// Transposes eight rows of eight i32 into eight columns.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
    let lo = |a, b| _mm256_unpacklo_epi32(a, b);
    let hi = |a, b| _mm256_unpackhi_epi32(a, b);
    let t = [
        lo(r[0], r[1]),
        hi(r[0], r[1]),
        lo(r[2], r[3]),
        hi(r[2], r[3]),
        lo(r[4], r[5]),
        hi(r[4], r[5]),
        lo(r[6], r[7]),
        hi(r[6], r[7]),
    ];
    // Columns (c, c + 4) of rows 0..4, then of rows 4..8.
    let u = [
        _mm256_unpacklo_epi64(t[0], t[2]),
        _mm256_unpackhi_epi64(t[0], t[2]),
        _mm256_unpacklo_epi64(t[1], t[3]),
        _mm256_unpackhi_epi64(t[1], t[3]),
        _mm256_unpacklo_epi64(t[4], t[6]),
        _mm256_unpackhi_epi64(t[4], t[6]),
        _mm256_unpacklo_epi64(t[5], t[7]),
        _mm256_unpackhi_epi64(t[5], t[7]),
    ];
    [
        _mm256_permute2x128_si256(u[0], u[4], 0x20),
        _mm256_permute2x128_si256(u[1], u[5], 0x20),
        _mm256_permute2x128_si256(u[2], u[6], 0x20),
        _mm256_permute2x128_si256(u[3], u[7], 0x20),
        _mm256_permute2x128_si256(u[0], u[4], 0x31),
        _mm256_permute2x128_si256(u[1], u[5], 0x31),
        _mm256_permute2x128_si256(u[2], u[6], 0x31),
        _mm256_permute2x128_si256(u[3], u[7], 0x31),
    ]
}

/// Eight f16 at `at` in each of the eight rows, as eight f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_of_rows(p: &[*const u8; ROWS], at: usize) -> __m256 {
    let h = p.map(|row| rd16(row.add(at)) as i16);
    _mm256_cvtph_ps(_mm_setr_epi16(
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
    ))
}

/// The eight rows' scales (and Q4_1's or Q5_1's minimums) for all `nb` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_scales<const F: u8>(p: &[*const u8; ROWS], nb: usize, into: &mut Packed) {
    let wb = layout(F).0;
    into.d.clear();
    into.m.clear();
    for b in 0..nb {
        into.d
            .push(widen(f16_of_rows(p, b * wb + scale_offsets(F).0)));
        if has_minimum(F) {
            into.m.push(f16_of_rows(p, b * wb + scale_offsets(F).1));
        }
    }
}

/// Unpacks and interleaves blocks `blocks` of the eight rows at `p`;
/// Q8_0's codes plus `q8_offset` (0 or 128, wrapping into unsigned bytes).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_codes<const F: u8>(
    p: &[*const u8; ROWS],
    blocks: std::ops::Range<usize>,
    q8_offset: i32,
    into: &mut Packed,
) {
    let wb = layout(F).0;
    into.codes.clear();
    let flip = _mm256_set1_epi8(q8_offset as u8 as i8);
    for b in blocks {
        let rows = p.map(|row| {
            let codes = unpack_codes::<F>(row.add(b * wb));
            if F == Q8_0 {
                _mm256_xor_si256(codes, flip)
            } else {
                codes
            }
        });
        into.codes.extend_from_slice(&transpose8(rows));
    }
}

/// The eight rows' scales (and Q4_1's minimums) for all `nb` blocks, from
/// a group of weights interleaved at load (`interleave.rs`): one load each
/// per block.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_scales_interleaved<const F: u8>(group: *const u8, nb: usize, into: &mut Packed) {
    into.d.clear();
    into.m.clear();
    for b in 0..nb {
        let blk = group.add(b * group_block(F));
        into.d.push(widen(_mm256_cvtph_ps(_mm_loadu_si128(
            blk as *const __m128i,
        ))));
        if F == Q4_1 {
            let mins = blk.add(Q4_1_MINS_AT) as *const __m128i;
            into.m.push(_mm256_cvtph_ps(_mm_loadu_si128(mins)));
        }
    }
}

/// Blocks `blocks` of a group interleaved at load, unpacked: chunk k's low
/// nibbles are codes `4k..4k + 4` of every row, its high ones `16 + 4k..`;
/// Q8_0's chunk k is codes `4k..4k + 4` already, plus `q8_offset` as in
/// [`pack_codes`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_codes_interleaved<const F: u8>(
    group: *const u8,
    blocks: std::ops::Range<usize>,
    q8_offset: i32,
    into: &mut Packed,
) {
    into.codes.clear();
    let flip = _mm256_set1_epi8(q8_offset as u8 as i8);
    for b in blocks {
        let codes = group.add(b * group_block(F) + codes_at(F));
        if F == Q8_0 {
            for k in 0..8 {
                let q = _mm256_loadu_si256(codes.add(32 * k) as *const __m256i);
                into.codes.push(_mm256_xor_si256(q, flip));
            }
            continue;
        }
        let mut high = [_mm256_setzero_si256(); 4];
        for (k, high) in high.iter_mut().enumerate() {
            let (lo, hi) = unpack_chunk(codes, k);
            into.codes.push(lo);
            *high = hi;
        }
        into.codes.extend_from_slice(&high);
    }
}

/// The offset the packed codes carry over the values: the format's own
/// (Q4_0's 8, Q5_0's 16), or `q8_offset` for Q8_0.
const fn packed_offset(f: u8, q8_offset: i32) -> i32 {
    if f == Q8_0 {
        q8_offset
    } else {
        code_offset(f)
    }
}

/// What every tile of a packed chunk reads: the chunk (blocks
/// `first..end` of rows of `nb`), the activations, their scales (as f64,
/// `dx[token * nb + block]`) and each block's starting sum (`less`, minus
/// the offset's term).
#[derive(Clone, Copy)]
struct Chunk<'a> {
    packed: &'a Packed,
    first: usize,
    end: usize,
    nb: usize,
    acts: &'a [u8],
    act_row_bytes: usize,
    dx: &'a [f64],
    less: &'a [i32],
}

/// Blocks packed at once: their interleaved codes (8 KiB) stay in L1
/// while every token of the batch reads them. Whole groups of four, so a
/// block's lane (`b % 4`) is its lane within the chunk.
const CHUNK_BLOCKS: usize = 32;

/// One token's sums in progress: `[k][half]` is lane `k` (blocks
/// `b % 4 == k`) of rows 0..4 (`half` 0) and 4..8 (`half` 1).
pub(super) type Lanes = [[__m256d; 2]; 4];

macro_rules! gemm_kernels {
    ($features:literal, $tile_sums:ident, $q8_offset:literal) => {
        /// Dots the first `rows / 8 * 8` weight rows of `w` with `tokens`
        /// activation rows (layout as `dot::dot_rows`); returns how many
        /// rows it did.
        ///
        /// # Safety
        /// The CPU must have the features named above. `w` holds whole rows
        /// of `row_bytes`, `acts` `tokens` rows of `act_row_bytes` with the
        /// same number of blocks, `out` rows x tokens values.
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

        /// As [`rows`], for Q4_0, Q4_1 or Q8_0 weights interleaved at load.
        ///
        /// # Safety
        /// As [`rows`].
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows_interleaved<const F: u8>(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            act_row_bytes: usize,
            tokens: usize,
            out: &mut [f64],
        ) -> usize {
            rows_from::<F, true>(w, row_bytes, acts, act_row_bytes, tokens, out)
        }

        /// The body of [`rows`]: the buffer filled from the file layout's
        /// rows, or from a group interleaved at load.
        #[target_feature(enable = $features)]
        unsafe fn rows_from<const F: u8, const INTERLEAVED: bool>(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            act_row_bytes: usize,
            tokens: usize,
            out: &mut [f64],
        ) -> usize {
            let nb = row_bytes / layout(F).0;
            let groups = w.len() / row_bytes / ROWS;
            if groups == 0 {
                return 0;
            }
            let mut sc = act_scales::<F>(acts, act_row_bytes, tokens);
            let offset = packed_offset(F, $q8_offset);
            if F == Q8_0 && offset != 0 {
                sc.correction = q8_offset_terms(acts, act_row_bytes, tokens, offset);
            }
            // Each block's sums start at minus the offset's term.
            sc.correction.iter_mut().for_each(|c| *c = -*c);
            let dx: Vec<f64> = sc.d.iter().map(|&d| f64::from(d)).collect();
            let mut packed = Packed {
                codes: Vec::with_capacity(CHUNK_BLOCKS * 8),
                d: Vec::with_capacity(nb),
                m: Vec::with_capacity(if has_minimum(F) { nb } else { 0 }),
            };
            let mut lanes: Vec<Lanes> = vec![[[_mm256_setzero_pd(); 2]; 4]; tokens];
            for g in 0..groups {
                let base = w.as_ptr().add(g * ROWS * row_bytes);
                let p = [0, 1, 2, 3, 4, 5, 6, 7].map(|i| base.add(i * row_bytes));
                if INTERLEAVED {
                    pack_scales_interleaved::<F>(base, nb, &mut packed);
                } else {
                    pack_scales::<F>(&p, nb, &mut packed);
                }
                lanes.fill([[_mm256_setzero_pd(); 2]; 4]);
                for first in (0..nb).step_by(CHUNK_BLOCKS) {
                    let end = (first + CHUNK_BLOCKS).min(nb);
                    if INTERLEAVED {
                        pack_codes_interleaved::<F>(base, first..end, $q8_offset, &mut packed);
                        // The next chunk (of this group or the next one),
                        // asked for into L2 while this one's tokens run:
                        // the weights are one stream here, which the
                        // tokens' work would otherwise leave idle between
                        // chunks (8 tokens of Q8_0 from memory ran at
                        // 0.72x the file layout's eight row streams
                        // without it, 0.92x with it; into L1, 0.78x).
                        let next = g * ROWS * row_bytes + end * group_block(F);
                        prefetch_to_l2(w, next, (end - first) * group_block(F));
                    } else {
                        pack_codes::<F>(&p, first..end, $q8_offset, &mut packed);
                    }
                    let chunk = Chunk {
                        packed: &packed,
                        first,
                        end,
                        nb,
                        acts,
                        act_row_bytes,
                        dx: &dx,
                        less: &sc.correction,
                    };
                    let whole = tokens / TILE * TILE;
                    for t0 in (0..whole).step_by(TILE) {
                        tile::<F, TILE>(&chunk, t0, lanes.get_unchecked_mut(t0..t0 + TILE));
                    }
                    for t0 in whole..tokens {
                        tile::<F, 1>(&chunk, t0, lanes.get_unchecked_mut(t0..t0 + 1));
                    }
                }
                for (t, l) in lanes.iter().enumerate() {
                    let sums = finish::<F>(&packed, nb, &sc, t * nb, l);
                    for (r, s) in sums.iter().enumerate() {
                        *out.get_unchecked_mut((g * ROWS + r) * tokens + t) = *s;
                    }
                }
            }
            groups * ROWS
        }

        /// Blocks `first..end` (the packed chunk) against tokens
        /// `t0..t0 + T`, into their lanes. Each lane's blocks (`b % 4 == k`)
        /// are taken in order, one lane at a time, so a token keeps one
        /// accumulator live and the T tokens share every load of codes.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn tile<const F: u8, const T: usize>(c: &Chunk, t0: usize, lanes: &mut [Lanes]) {
            let Chunk {
                packed,
                first,
                end,
                nb,
                acts,
                act_row_bytes,
                dx,
                less,
            } = *c;
            let (_, ab, aqs) = layout(F);
            let ys: [*const u8; T] =
                std::array::from_fn(|t| acts.as_ptr().add((t0 + t) * act_row_bytes + aqs));
            for k in 0..4 {
                let mut acc: [Lane; T] = std::array::from_fn(|t| lane_load(&lanes[t][k]));
                let mut b = first + k;
                while b < end {
                    let codes = packed.codes.as_ptr().add((b - first) * 8);
                    let at: [*const u8; T] = std::array::from_fn(|t| ys[t].add(b * ab));
                    // The offset's term, less: where the sums start.
                    let start: [__m256i; T] = std::array::from_fn(|t| {
                        if packed_offset(F, $q8_offset) != 0 {
                            _mm256_set1_epi32(*less.get_unchecked((t0 + t) * nb + b))
                        } else {
                            _mm256_setzero_si256()
                        }
                    });
                    let sums = $tile_sums::<F, T>(codes, &at, start);
                    let dw = packed.d.get_unchecked(b);
                    for (t, (acc, s)) in acc.iter_mut().zip(sums).enumerate() {
                        *acc = lane_fma(*acc, dw, *dx.get_unchecked((t0 + t) * nb + b), s);
                    }
                    b += 4;
                }
                for t in 0..T {
                    lane_store(acc[t], &mut lanes[t][k]);
                }
            }
        }

        /// A token's eight row sums from its lanes, with the minimum
        /// terms (`m · s` per block, in lanes of their own) added last.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn finish<const F: u8>(
            packed: &Packed,
            nb: usize,
            sc: &ActScales,
            at: usize,
            acc: &Lanes,
        ) -> [f64; ROWS] {
            let add = |x: [__m256d; 2], y: [__m256d; 2]| {
                [_mm256_add_pd(x[0], y[0]), _mm256_add_pd(x[1], y[1])]
            };
            let sum = |l: &Lanes| add(add(l[0], l[2]), add(l[1], l[3]));
            let mut total = sum(acc);
            if has_minimum(F) {
                let mut mins = [[_mm256_setzero_pd(); 2]; 4];
                for b in 0..nb {
                    let m = _mm256_mul_ps(
                        *packed.m.get_unchecked(b),
                        _mm256_set1_ps(*sc.s.get_unchecked(at + b)),
                    );
                    let l = &mut mins[b % 4];
                    l[0] = _mm256_add_pd(l[0], _mm256_cvtps_pd(_mm256_castps256_ps128(m)));
                    l[1] = _mm256_add_pd(l[1], _mm256_cvtps_pd(_mm256_extractf128_ps(m, 1)));
                }
                total = add(total, sum(&mins));
            }
            let mut sums = [0.0f64; ROWS];
            _mm256_storeu_pd(sums.as_mut_ptr(), total[0]);
            _mm256_storeu_pd(sums.as_mut_ptr().add(4), total[1]);
            sums
        }
    };
}

/// Four activation bytes `4g..4g + 4` of the block at `y`, in every lane.
#[inline(always)]
pub(super) unsafe fn broadcast4(y: *const u8, g: usize) -> __m256i {
    // SAFETY (caller): 32 readable bytes at y.
    _mm256_set1_epi32((y.add(4 * g) as *const i32).read_unaligned())
}

/// One block's eight i32 sums (one per row) for each of `T` tokens, whose
/// activation codes are at `ys`: the codes are loaded once for all tokens.
/// `maddubs` leaves pairs in i16; two accumulators per token take four
/// groups each (at most 31 x 128 x 2 x 4 = 31744, so nothing saturates),
/// and 4-bit codes (at most 15) let the two be added in i16 before one
/// widening.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_sums_plain<const F: u8, const T: usize>(
    w: *const __m256i,
    ys: &[*const u8; T],
    start: [__m256i; T],
) -> [__m256i; T] {
    let ones = _mm256_set1_epi16(1);
    let mut s = [[_mm256_setzero_si256(); 2]; T];
    if F == Q8_0 {
        // Signed codes: |q| by y with q's sign (a pair is at most
        // 2 x 128 x 127, no saturation), each group widened to i32.
        for g in 0..8 {
            let q = _mm256_load_si256(w.add(g));
            let abs = _mm256_abs_epi8(q);
            for (s, y) in s.iter_mut().zip(ys) {
                let y = _mm256_sign_epi8(broadcast4(*y, g), q);
                let p = _mm256_maddubs_epi16(abs, y);
                s[g % 2] = _mm256_add_epi32(s[g % 2], _mm256_madd_epi16(p, ones));
            }
        }
        return std::array::from_fn(|t| {
            _mm256_add_epi32(start[t], _mm256_add_epi32(s[t][0], s[t][1]))
        });
    }
    for g in 0..8 {
        let q = _mm256_load_si256(w.add(g));
        for (s, y) in s.iter_mut().zip(ys) {
            s[g % 2] = _mm256_add_epi16(s[g % 2], _mm256_maddubs_epi16(q, broadcast4(*y, g)));
        }
    }
    std::array::from_fn(|t| {
        let [s0, s1] = s[t];
        let sum = if five_bit(F) {
            _mm256_add_epi32(_mm256_madd_epi16(s0, ones), _mm256_madd_epi16(s1, ones))
        } else {
            _mm256_madd_epi16(_mm256_add_epi16(s0, s1), ones)
        };
        _mm256_add_epi32(start[t], sum)
    })
}

/// As [`tile_sums_plain`] with VNNI: `vpdpbusd` sums four products per
/// lane straight into i32 (Q8_0's codes packed plus 128: at most
/// 32 x 255 x 127 per lane).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn tile_sums_vnni<const F: u8, const T: usize>(
    w: *const __m256i,
    ys: &[*const u8; T],
    start: [__m256i; T],
) -> [__m256i; T] {
    let mut s: [[__m256i; 2]; T] = std::array::from_fn(|t| [start[t], _mm256_setzero_si256()]);
    for g in 0..8 {
        let q = _mm256_load_si256(w.add(g));
        for (s, y) in s.iter_mut().zip(ys) {
            s[g % 2] = _mm256_dpbusd_epi32(s[g % 2], q, broadcast4(*y, g));
        }
    }
    s.map(|s| _mm256_add_epi32(s[0], s[1]))
}

/// AVX2 only: a token's eight row sums of one lane are two 256-bit
/// vectors, and sixteen registers hold a tile of two tokens.
pub(super) mod plain {
    use super::*;

    const TILE: usize = 2;
    type Lane = [__m256d; 2];

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn lane_load(l: &[__m256d; 2]) -> Lane {
        *l
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn lane_store(acc: Lane, l: &mut [__m256d; 2]) {
        *l = acc;
    }

    /// `acc + dw·dx·s` per row in f64: the block's exact sums `s` times
    /// the rows' scales `dw` and the token's `dx`, one rounding. Both
    /// scales are f16 values, so `dw·dx` is exact in f64 as it was in f32,
    /// and the bits are those of the portable `sumi as f64 * (dw * dx)`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn lane_fma(acc: Lane, dw: &[__m256d; 2], dx: f64, s: __m256i) -> Lane {
        let dx = _mm256_set1_pd(dx);
        [
            _mm256_fmadd_pd(
                _mm256_mul_pd(dw[0], dx),
                _mm256_cvtepi32_pd(_mm256_castsi256_si128(s)),
                acc[0],
            ),
            _mm256_fmadd_pd(
                _mm256_mul_pd(dw[1], dx),
                _mm256_cvtepi32_pd(_mm256_extracti128_si256(s, 1)),
                acc[1],
            ),
        ]
    }

    gemm_kernels!("avx2,fma,f16c", tile_sums_plain, 0);
}

/// AVX2 plus AVX-512 VNNI (`vpdpbusd`) for the integer products; the f64
/// step runs on 512-bit vectors (eight rows in one), and thirty-two
/// registers hold a tile of four tokens.
pub(super) mod vnni {
    use super::*;

    const TILE: usize = 4;
    type Lane = __m512d;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn lane_load(l: &[__m256d; 2]) -> Lane {
        _mm512_loadu_pd(l.as_ptr() as *const f64)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn lane_store(acc: Lane, l: &mut [__m256d; 2]) {
        _mm512_storeu_pd(l.as_mut_ptr() as *mut f64, acc)
    }

    /// As the plain `lane_fma`, eight rows at once.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn lane_fma(acc: Lane, dw: &[__m256d; 2], dx: f64, s: __m256i) -> Lane {
        let d = _mm512_mul_pd(
            _mm512_loadu_pd(dw.as_ptr() as *const f64),
            _mm512_set1_pd(dx),
        );
        _mm512_fmadd_pd(d, _mm512_cvtepi32_pd(s), acc)
    }

    gemm_kernels!(
        "avx2,fma,f16c,avx512f,avx512vl,avx512vnni",
        tile_sums_vnni,
        128
    );
}
