//! Prefill for Q4_0 and Q4_1 weights interleaved at load, on AVX-512 with
//! VNNI: sixteen rows at a time, two groups of eight side by side in one
//! 512-bit vector. The eight-row kernel (`avx2_gemm.rs`) spends one
//! `vpdpbusd` on eight rows, four codes and one token; here one covers
//! sixteen rows, at the same throughput on the cores measured, and the
//! activation's four bytes are broadcast from memory inside it.
//!
//! The arithmetic per row is the eight-row kernel's, so the bits are the
//! row kernel's: a block's sum starts at minus Q4_0's offset term and
//! gathers the exact i32 products; its scale is the f32 product `dw·da`,
//! added with one f64 FMA into lane `b % 4`; the lanes are summed as
//! `(l0 + l2) + (l1 + l3)`, with Q4_1's minimum terms (in lanes of their
//! own) added last.
//!
//! Every function here requires AVX2, FMA, F16C, AVX-512F and AVX-512
//! VNNI; callers check at run time.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::avx2::{act_scales, ActScales};
use super::avx2_interleaved::{codes_at, group_block};
use super::block32::{layout, Q4_1};
use super::interleave::Q4_1_MINS_AT;

/// Rows per vector: two groups of eight interleaved at load.
pub(super) const ROWS: usize = 16;

/// Tokens multiplied by each code vector loaded.
const TILE: usize = 4;

/// Blocks unpacked at once: 16 KiB of codes, which stay in L1 while every
/// token reads them. Whole groups of four, so a block's lane (`b % 4`) is
/// its lane within the chunk.
const CHUNK_BLOCKS: usize = 32;

/// Sixteen rows, unpacked: for block `b` of the chunk, `codes[b * 8 + g]`
/// holds codes `4g..4g + 4` of the sixteen rows (row r in i32 lane r);
/// `d[b]` and `m[b]` the rows' scales and minimums as f32, for every block.
struct Packed {
    codes: Vec<__m512i>,
    d: Vec<__m512>,
    m: Vec<__m512>,
}

/// One token's sums in progress: `[k][half]` is lane `k` (blocks
/// `b % 4 == k`) of rows 0..8 (`half` 0) and 8..16 (`half` 1).
type Lanes = [[__m512d; 2]; 4];

/// What every tile of a chunk reads.
#[derive(Clone, Copy)]
struct Chunk<'a> {
    packed: &'a Packed,
    first: usize,
    end: usize,
    nb: usize,
    acts: &'a [u8],
    act_row_bytes: usize,
    sc: &'a ActScales,
}

/// Dots the first `rows / 16 * 16` rows of `w`, Q4_0 or Q4_1 interleaved
/// at load, with `tokens` activation rows (layout as `dot::dot_rows`);
/// returns how many rows it did.
///
/// # Safety
/// The CPU must have the features named above. `w` holds whole rows of
/// `row_bytes` in the interleaved layout, `acts` `tokens` rows of
/// `act_row_bytes` with the same number of blocks, `out` rows x tokens
/// values.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(in crate::kernels) unsafe fn rows_interleaved<const F: u8>(
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) -> usize {
    let nb = row_bytes / layout(F).0;
    let pairs = w.len() / row_bytes / ROWS;
    if pairs == 0 {
        return 0;
    }
    let mut sc = act_scales::<F>(acts, act_row_bytes, tokens);
    // Each block's sums start at minus the offset's term.
    sc.correction.iter_mut().for_each(|c| *c = -*c);
    let mut packed = Packed {
        codes: Vec::with_capacity(CHUNK_BLOCKS * 8),
        d: Vec::with_capacity(nb),
        m: Vec::with_capacity(if F == Q4_1 { nb } else { 0 }),
    };
    let zero = [[_mm512_setzero_pd(); 2]; 4];
    let mut lanes: Vec<Lanes> = vec![zero; tokens];
    for p in 0..pairs {
        let groups = [0, 1].map(|h| w.as_ptr().add((p * ROWS + h * 8) * row_bytes));
        pack_scales::<F>(groups, nb, &mut packed);
        lanes.fill(zero);
        for first in (0..nb).step_by(CHUNK_BLOCKS) {
            let end = (first + CHUNK_BLOCKS).min(nb);
            pack_codes::<F>(groups, first..end, &mut packed);
            let chunk = Chunk {
                packed: &packed,
                first,
                end,
                nb,
                acts,
                act_row_bytes,
                sc: &sc,
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
                *out.get_unchecked_mut((p * ROWS + r) * tokens + t) = *s;
            }
        }
    }
    pairs * ROWS
}

/// Sixteen f16 values: eight at `lo` (rows 0..8) and eight at `hi`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(super) unsafe fn f16_pair(lo: *const u8, hi: *const u8) -> __m512 {
    _mm512_cvtph_ps(_mm256_set_m128i(
        _mm_loadu_si128(hi as *const __m128i),
        _mm_loadu_si128(lo as *const __m128i),
    ))
}

/// The sixteen rows' scales (and Q4_1's minimums) for all `nb` blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn pack_scales<const F: u8>(groups: [*const u8; 2], nb: usize, into: &mut Packed) {
    into.d.clear();
    into.m.clear();
    for b in 0..nb {
        let [lo, hi] = groups.map(|g| g.add(b * group_block(F)));
        into.d.push(f16_pair(lo, hi));
        if F == Q4_1 {
            into.m
                .push(f16_pair(lo.add(Q4_1_MINS_AT), hi.add(Q4_1_MINS_AT)));
        }
    }
}

/// Blocks `blocks` of the two groups, unpacked: each group's chunk k
/// holds bytes `4k..4k + 4` of its eight rows' nibbles, so the low
/// nibbles are codes `4k..` and the high ones `16 + 4k..`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn pack_codes<const F: u8>(
    groups: [*const u8; 2],
    blocks: std::ops::Range<usize>,
    into: &mut Packed,
) {
    let mask = _mm512_set1_epi8(0x0F);
    into.codes.clear();
    for b in blocks {
        let [lo, hi] = groups.map(|g| g.add(b * group_block(F) + codes_at(F)));
        let mut high = [_mm512_setzero_si512(); 4];
        for (k, high) in high.iter_mut().enumerate() {
            let both = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(lo.add(32 * k) as *const __m256i)),
                _mm256_loadu_si256(hi.add(32 * k) as *const __m256i),
                1,
            );
            into.codes.push(_mm512_and_si512(both, mask));
            *high = _mm512_and_si512(_mm512_srli_epi32(both, 4), mask);
        }
        into.codes.extend_from_slice(&high);
    }
}

/// Blocks `first..end` (the packed chunk) against tokens `t0..t0 + T`,
/// into their lanes: each lane's blocks (`b % 4 == k`) in order, one lane
/// at a time, every code vector loaded once for the T tokens.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn tile<const F: u8, const T: usize>(c: &Chunk, t0: usize, lanes: &mut [Lanes]) {
    let Chunk {
        packed,
        first,
        end,
        nb,
        acts,
        act_row_bytes,
        sc,
    } = *c;
    let (_, ab, aqs) = layout(F);
    let ys: [*const u8; T] =
        std::array::from_fn(|t| acts.as_ptr().add((t0 + t) * act_row_bytes + aqs));
    for k in 0..4 {
        let mut acc: [[__m512d; 2]; T] = std::array::from_fn(|t| lanes[t][k]);
        let mut b = first + k;
        while b < end {
            let codes = packed.codes.as_ptr().add((b - first) * 8);
            let at: [*const u8; T] = std::array::from_fn(|t| ys[t].add(b * ab));
            let mut s: [[__m512i; 2]; T] = std::array::from_fn(|t| {
                let start = if F == Q4_1 {
                    _mm512_setzero_si512()
                } else {
                    _mm512_set1_epi32(*sc.correction.get_unchecked((t0 + t) * nb + b))
                };
                [start, _mm512_setzero_si512()]
            });
            for g in 0..8 {
                let q = _mm512_load_si512(codes.add(g) as *const _);
                for (s, y) in s.iter_mut().zip(&at) {
                    let y4 = _mm512_set1_epi32((y.add(4 * g) as *const i32).read_unaligned());
                    s[g % 2] = _mm512_dpbusd_epi32(s[g % 2], q, y4);
                }
            }
            let dw = *packed.d.get_unchecked(b);
            for (t, (acc, s)) in acc.iter_mut().zip(s).enumerate() {
                let sum = _mm512_add_epi32(s[0], s[1]);
                let d = _mm512_mul_ps(dw, _mm512_set1_ps(*sc.d.get_unchecked((t0 + t) * nb + b)));
                let d_hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d), 1));
                acc[0] = _mm512_fmadd_pd(
                    _mm512_cvtps_pd(_mm512_castps512_ps256(d)),
                    _mm512_cvtepi32_pd(_mm512_castsi512_si256(sum)),
                    acc[0],
                );
                acc[1] = _mm512_fmadd_pd(
                    _mm512_cvtps_pd(d_hi),
                    _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(sum, 1)),
                    acc[1],
                );
            }
            b += 4;
        }
        for (l, acc) in lanes.iter_mut().zip(acc) {
            l[k] = acc;
        }
    }
}

/// A token's sixteen row sums from its lanes, with Q4_1's minimum terms
/// (`m · s` per block, in lanes of their own) added last.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
unsafe fn finish<const F: u8>(
    packed: &Packed,
    nb: usize,
    sc: &ActScales,
    at: usize,
    acc: &Lanes,
) -> [f64; ROWS] {
    let add =
        |x: [__m512d; 2], y: [__m512d; 2]| [_mm512_add_pd(x[0], y[0]), _mm512_add_pd(x[1], y[1])];
    let sum = |l: &Lanes| add(add(l[0], l[2]), add(l[1], l[3]));
    let mut total = sum(acc);
    if F == Q4_1 {
        let mut mins = [[_mm512_setzero_pd(); 2]; 4];
        for b in 0..nb {
            let m = _mm512_mul_ps(
                *packed.m.get_unchecked(b),
                _mm512_set1_ps(*sc.s.get_unchecked(at + b)),
            );
            let m_hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m), 1));
            let l = &mut mins[b % 4];
            l[0] = _mm512_add_pd(l[0], _mm512_cvtps_pd(_mm512_castps512_ps256(m)));
            l[1] = _mm512_add_pd(l[1], _mm512_cvtps_pd(m_hi));
        }
        total = add(total, sum(&mins));
    }
    let mut sums = [0.0f64; ROWS];
    _mm512_storeu_pd(sums.as_mut_ptr(), total[0]);
    _mm512_storeu_pd(sums.as_mut_ptr().add(8), total[1]);
    sums
}
