//! The dispatched kernels (AVX2 or NEON where the CPU has them) on raw
//! blocks the quantizers would never write: random bit patterns, zero
//! scales, all-max nibbles, extreme activations, odd row counts, rows of one
//! block, and token counts that exercise every tile remainder. Every kernel
//! family the CPU runs is checked bitwise against the portable block
//! products (summed in the kernels' documented order, see [`expected`]) and
//! within a bound against dequantize-then-f64.

use std::mem::offset_of;

use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::blocks::{
    as_blocks, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
    BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1,
};
use super::dequant::dequantize_row;
use super::dot::{dot_row, dot_rows, dot_rows_interleaved_isa, dot_rows_isa, Isa};
use super::interleave::{has_layout, interleave};
use super::quantize::{activation_type, quantize_row};
use super::QuantType;

const TYPES: [QuantType; 10] = [
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::Q2K,
    QuantType::Q3K,
    QuantType::Q4K,
    QuantType::Q5K,
    QuantType::Q6K,
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Edge {
    Random,
    ZeroScales,
    MaxQuants,
    MinQuants,
}

const EDGES: [Edge; 4] = [
    Edge::Random,
    Edge::ZeroScales,
    Edge::MaxQuants,
    Edge::MinQuants,
];

fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

/// A scale that is sometimes negative, sometimes tiny, sometimes large.
fn any_scale(rng: &mut StdRng) -> f32 {
    let mag = match rng.random_range(0..4) {
        0 => rng.random_range(1e-4..1e-2f32),
        1 => rng.random_range(1e-2..1.0f32),
        2 => rng.random_range(1.0..30.0f32),
        _ => 6e-5,
    };
    if rng.random::<bool>() {
        -mag
    } else {
        mag
    }
}

/// Offsets of the f16 scales in a weight block (everything else is quants
/// or packed scales, where any byte is valid).
fn f16_offsets(dtype: QuantType) -> Vec<usize> {
    match dtype {
        QuantType::Q4_0 => vec![offset_of!(BlockQ4_0, d)],
        QuantType::Q5_0 => vec![offset_of!(BlockQ5_0, d)],
        QuantType::Q8_0 => vec![offset_of!(BlockQ8_0, d)],
        QuantType::Q4_1 => vec![offset_of!(BlockQ4_1, d), offset_of!(BlockQ4_1, m)],
        QuantType::Q5_1 => vec![offset_of!(BlockQ5_1, d), offset_of!(BlockQ5_1, m)],
        QuantType::Q2K => vec![offset_of!(BlockQ2K, d), offset_of!(BlockQ2K, dmin)],
        QuantType::Q3K => vec![offset_of!(BlockQ3K, d)],
        QuantType::Q4K => vec![offset_of!(BlockQ4K, d), offset_of!(BlockQ4K, dmin)],
        QuantType::Q5K => vec![offset_of!(BlockQ5K, d), offset_of!(BlockQ5K, dmin)],
        QuantType::Q6K => vec![offset_of!(BlockQ6K, d)],
        _ => vec![],
    }
}

fn weight_row(dtype: QuantType, blocks: usize, edge: Edge, rng: &mut StdRng) -> Vec<u8> {
    let bb = dtype.block_bytes();
    let mut row = vec![0u8; blocks * bb];
    for blk in row.chunks_exact_mut(bb) {
        for b in blk.iter_mut() {
            *b = match edge {
                Edge::MaxQuants => 0xff,
                Edge::MinQuants => 0x00,
                _ => rng.random(),
            };
        }
        // Q8_0's most negative weight is -128; keep one in every block.
        if dtype == QuantType::Q8_0 && edge != Edge::MaxQuants {
            blk[offset_of!(BlockQ8_0, qs) + rng.random_range(0..32)] = 0x80;
        }
        for at in f16_offsets(dtype) {
            let v = match edge {
                Edge::ZeroScales => 0.0,
                Edge::MaxQuants | Edge::MinQuants => 30.0,
                Edge::Random => any_scale(rng),
            };
            blk[at..at + 2].copy_from_slice(&f16_bytes(v));
        }
    }
    row
}

/// One activation row of `n` values in `act`'s format, quants in
/// `lo..=hi`, with consistent sums (Q8_1's `d * sum`, Q8_K's group sums).
fn act_row(act: QuantType, n: usize, lo: i32, hi: i32, rng: &mut StdRng) -> Vec<u8> {
    let bl = act.block_len();
    let mut out = Vec::new();
    for _ in 0..n / bl {
        let q: Vec<i8> = (0..bl).map(|_| rng.random_range(lo..=hi) as i8).collect();
        // As the quantizers write: amax / 127, so Q8_1's d * sum stays finite in f16.
        let d = any_scale(rng).abs().min(1.0);
        match act {
            QuantType::Q8_0 => out.extend(f16_bytes(d)),
            QuantType::Q8_1 => {
                let d16 = f16::from_f32(d).to_f32();
                let sum: i32 = q.iter().map(|&v| v as i32).sum();
                out.extend(f16_bytes(d16));
                out.extend(f16_bytes(d16 * sum as f32));
            }
            _ => out.extend(d.to_le_bytes()),
        }
        out.extend(q.iter().map(|&v| v as u8));
        if act == QuantType::Q8K {
            for g in q.chunks_exact(16) {
                let s: i32 = g.iter().map(|&v| v as i32).sum();
                out.extend((s as i16).to_le_bytes());
            }
        }
    }
    out
}

/// The largest magnitude any weight in the block can dequantize to, by
/// format: the f32 dequantizer's rounding is relative to this, not to the
/// (possibly cancelled) value.
fn block_bound(dtype: QuantType, blk: &[u8]) -> f64 {
    let h = |at: usize| f16::from_le_bytes([blk[at], blk[at + 1]]).to_f64().abs();
    let f = f16_offsets(dtype);
    match dtype {
        QuantType::Q4_0 => 8.0 * h(f[0]),
        QuantType::Q4_1 => 15.0 * h(f[0]) + h(f[1]),
        QuantType::Q5_0 => 16.0 * h(f[0]),
        QuantType::Q5_1 => 31.0 * h(f[0]) + h(f[1]),
        QuantType::Q8_0 => 128.0 * h(f[0]),
        QuantType::Q2K => 15.0 * 3.0 * h(f[0]) + 15.0 * h(f[1]),
        QuantType::Q3K => 32.0 * 4.0 * h(f[0]),
        QuantType::Q4K => 63.0 * 15.0 * h(f[0]) + 63.0 * h(f[1]),
        QuantType::Q5K => 63.0 * 31.0 * h(f[0]) + 63.0 * h(f[1]),
        _ => 128.0 * 32.0 * h(f[0]),
    }
}

/// The 32-value formats that have hand-written kernels.
fn has_block32_kernel(dtype: QuantType) -> bool {
    matches!(
        dtype,
        QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q5_0 | QuantType::Q5_1 | QuantType::Q8_0
    )
}

/// What `isa` must give, bit for bit, for one row pair. Block products are
/// the portable bodies' (exact in f64). The portable path and the K-quant
/// kernels add them in row order; the 32-value kernels (`avx2.rs`,
/// `neon.rs`) into four lanes, lane k taking block k of each group of four,
/// summed as `(l0 + l2) + (l1 + l3)`, with Q4_1's and Q5_1's minimum terms in lanes of
/// their own, added last.
fn expected(isa: Isa, dtype: QuantType, wrow: &[u8], arow: &[u8]) -> f64 {
    if isa == Isa::Portable || !has_block32_kernel(dtype) {
        return dot_row(dtype, wrow, arow);
    }
    let (wbb, abb) = (dtype.block_bytes(), activation_type(dtype).block_bytes());
    let (mut acc, mut mins) = ([0.0f64; 4], [0.0f64; 4]);
    let has_minimum = matches!(dtype, QuantType::Q4_1 | QuantType::Q5_1);
    for (b, (wb, ab)) in wrow
        .chunks_exact(wbb)
        .zip(arow.chunks_exact(abb))
        .enumerate()
    {
        if has_minimum {
            // The integer part alone: the portable body with the minimum zeroed.
            let m = f16_offsets(dtype)[1];
            let mut no_min = wb.to_vec();
            no_min[m..m + 2].fill(0);
            acc[b % 4] += dot_row(dtype, &no_min, ab);
            let h = |v: &[u8], at: usize| f16::from_le_bytes([v[at], v[at + 1]]).to_f32();
            mins[b % 4] += (h(wb, m) * h(ab, offset_of!(BlockQ8_1, s))) as f64;
        } else {
            acc[b % 4] += dot_row(dtype, wb, ab);
        }
    }
    let hsum = |l: [f64; 4]| (l[0] + l[2]) + (l[1] + l[3]);
    if has_minimum {
        hsum(acc) + hsum(mins)
    } else {
        hsum(acc)
    }
}

/// Runs every kernel family this CPU has on the product and checks each
/// (row, token) bitwise against [`expected`]; returns what [`dot_rows`] gives
/// (the fastest family's bits).
fn dispatched(
    dtype: QuantType,
    rows: &[u8],
    rb: usize,
    acts: &[u8],
    arb: usize,
    t: usize,
    what: &str,
) -> Vec<f64> {
    let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    let n_rows = rows.len() / rb;
    let mut last = Vec::new();
    for &isa in Isa::detected() {
        let mut out = vec![f64::NAN; n_rows * t];
        dot_rows_isa(isa, dtype, rows, rb, acts, arb, t, &mut out);
        for r in 0..n_rows {
            for tok in 0..t {
                let want = expected(isa, dtype, &rows[r * rb..][..rb], &acts[tok * arb..][..arb]);
                let got = out[r * t + tok];
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{what} {isa:?} row {r} token {tok}: {got} vs portable {want}"
                );
            }
        }
        // The same weight interleaved at load gives the same bits.
        if has_layout(dtype) {
            let packed = interleave(dtype, rows, n_rows, rb);
            let mut from_packed = vec![f64::NAN; n_rows * t];
            dot_rows_interleaved_isa(isa, dtype, &packed, rb, acts, arb, t, &mut from_packed);
            assert_eq!(bits(&from_packed), bits(&out), "{what} {isa:?} interleaved");
        }
        last = out;
    }
    let mut out = vec![f64::NAN; n_rows * t];
    dot_rows(dtype, rows, rb, acts, arb, t, &mut out);
    assert_eq!(
        bits(&out),
        bits(&last),
        "{what}: dot_rows is not the fastest family"
    );
    out
}

/// Checks every (row, token) of a `rows x tokens` product: bitwise per
/// kernel family, and against the dequantized values.
fn check(
    dtype: QuantType,
    blocks: usize,
    rows: usize,
    tokens: usize,
    edge: Edge,
    act_lo: i32,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let act = activation_type(dtype);
    let n = blocks * dtype.block_len();
    let rb = dtype.block_bytes() * blocks;
    let w: Vec<u8> = (0..rows)
        .flat_map(|_| weight_row(dtype, blocks, edge, &mut rng))
        .collect();
    let (lo, hi) = match edge {
        Edge::MaxQuants => (127, 127),
        Edge::MinQuants => (act_lo, act_lo),
        _ => (act_lo, 127),
    };
    let acts: Vec<u8> = (0..tokens)
        .flat_map(|_| act_row(act, n, lo, hi, &mut rng))
        .collect();
    let arb = acts.len() / tokens;
    let what =
        format!("{dtype} {edge:?} blocks={blocks} rows={rows} tokens={tokens} acts>={act_lo}");
    let got = dispatched(dtype, &w, rb, &acts, arb, tokens, &what);
    for r in 0..rows {
        let wrow = &w[r * rb..(r + 1) * rb];
        let mut wf = vec![0.0f32; n];
        dequantize_row(dtype, wrow, &mut wf);
        for t in 0..tokens {
            let arow = &acts[t * arb..(t + 1) * arb];
            let g = got[r * tokens + t];
            let mut af = vec![0.0f32; n];
            dequantize_row(act, arow, &mut af);
            let bl = dtype.block_len();
            let blocks_of = || wrow.chunks_exact(dtype.block_bytes()).zip(af.chunks(bl));
            let abs_sum = |ab: &[f32]| ab.iter().map(|&v| (v as f64).abs()).sum::<f64>();
            let reference: f64 = wf.iter().zip(&af).map(|(&a, &b)| a as f64 * b as f64).sum();
            let mut tol = 1e-30;
            for (blk, ab) in blocks_of() {
                let asum = abs_sum(ab);
                // f32 dequantization: a few ulps of the block's largest term.
                tol += block_bound(dtype, blk) * asum * 4.0 * f32::EPSILON as f64;
                if matches!(dtype, QuantType::Q4_1 | QuantType::Q5_1) {
                    // Q8_1 stores d * sum rounded to f16.
                    let m = f16_offsets(dtype)[1];
                    tol += f16::from_le_bytes([blk[m], blk[m + 1]]).to_f64().abs() * asum * 1e-3;
                }
            }
            assert!(
                (g - reference).abs() <= tol,
                "{what} row {r} token {t}: {g} vs dequantized {reference} (tolerance {tol:e})"
            );
        }
    }
}

#[test]
fn this_cpu_runs_the_kernels_it_has() {
    // On x86-64 build machines without AVX2 only the portable path exists;
    // the list is never empty and always starts with it.
    let isas = Isa::detected();
    assert_eq!(isas.first(), Some(&Isa::Portable));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        assert!(isas.contains(&Isa::Avx2), "{isas:?}");
    }
    #[cfg(target_arch = "aarch64")]
    {
        assert!(isas.contains(&Isa::Neon), "{isas:?}");
        let dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
        assert_eq!(isas.contains(&Isa::NeonDot), dotprod, "{isas:?}");
    }
    // Lets a run under an emulated CPU model prove which families it tested.
    if let Ok(want) = std::env::var("SHARDLAB_EXPECT_KERNELS") {
        let have: Vec<String> = isas.iter().map(|i| format!("{i:?}")).collect();
        assert_eq!(have.join(","), want, "SHARDLAB_EXPECT_KERNELS");
    }
}

#[test]
fn dispatched_kernels_match_portable_and_dequantized_on_raw_blocks() {
    let mut seed = 100;
    for dtype in TYPES {
        // 32-value formats: one block, a group of four, every remainder, a
        // long row. K-quants: one, two and three super-blocks.
        let lengths: &[usize] = if dtype.block_len() == 32 {
            &[1, 3, 4, 5, 6, 8, 9, 37]
        } else {
            &[1, 2, 3]
        };
        for &blocks in lengths {
            for edge in EDGES {
                // One token over 4 and 9 rows: the four-row decode kernel
                // and its remainder. Eight tokens or more over 8 and 17
                // rows: the interleaved batch kernel and its remainder;
                // eleven tokens are whole tiles (of four with VNNI, two
                // without) and tokens after them.
                // One and three tokens over 17 rows: Q4_0, Q4_1 and Q8_0
                // interleaved at load, two groups and a row in the file
                // layout. With VNNI,
                // 41 and 33 rows: sixteen-row pairs of groups, a last group
                // of eight and a row in the file layout. A few tokens
                // on interleaved rows (two to four, to seven for Q4_0 and
                // Q8_0; none for Q4_K with VNNI, whose sixteen-row batches
                // take three and four tokens here) take the one-token
                // kernel token by token, 96 KiB
                // of rows at a time: 161 rows of 37 blocks are two or more
                // such chunks and a row.
                let shapes = [
                    (1usize, 1usize),
                    (4, 1),
                    (9, 1),
                    (3, 5),
                    (5, 9),
                    (2, 4),
                    (1, 7),
                    (8, 8),
                    (17, 11),
                    (17, 1),
                    (17, 3),
                    (41, 11),
                    (33, 6),
                    (161, 4),
                    (161, 7),
                ];
                for (rows, tokens) in shapes {
                    seed += 1;
                    check(dtype, blocks, rows, tokens, edge, -127, seed);
                }
            }
        }
    }
}

/// The K-quant batch kernel (`avx2_gemm_k.rs`) takes rows eight at a
/// time, super-blocks four at a time and tokens in tiles of two (four
/// with VNNI): 70 rows (eight groups and six rows left to the row
/// kernel), five super-blocks (a chunk and one) and 37 tokens (tiles and
/// one left over), for every K-quant it takes.
#[test]
fn k_quant_batches_with_remainders_of_rows_blocks_and_tokens() {
    for (i, dtype) in [
        QuantType::Q2K,
        QuantType::Q3K,
        QuantType::Q4K,
        QuantType::Q5K,
        QuantType::Q6K,
    ]
    .into_iter()
    .enumerate()
    {
        check(dtype, 5, 70, 37, Edge::Random, -127, 700 + i as u64);
    }
}

/// Unsigned-weight kernels multiply activations with `maddubs` directly,
/// so even -128 (which the quantizers never write) is handled; the NEON
/// products are exact for any pair of bytes, so there every kernel is.
#[test]
fn kernels_take_minus_128_activations() {
    let types: &[QuantType] = if cfg!(target_arch = "aarch64") {
        &[
            QuantType::Q4_0,
            QuantType::Q4_1,
            QuantType::Q5_0,
            QuantType::Q5_1,
            QuantType::Q8_0,
            QuantType::Q2K,
            QuantType::Q3K,
            QuantType::Q4K,
            QuantType::Q5K,
            QuantType::Q6K,
        ]
    } else {
        &[
            QuantType::Q4_1,
            QuantType::Q5_1,
            QuantType::Q2K,
            QuantType::Q3K,
            QuantType::Q4K,
            QuantType::Q5K,
            QuantType::Q6K,
        ]
    };
    for (i, &dtype) in types.iter().enumerate() {
        for edge in [Edge::Random, Edge::MinQuants, Edge::MaxQuants] {
            check(dtype, 2, 3, 6, edge, -128, 900 + i as u64);
            check(dtype, 5, 9, 8, edge, -128, 950 + i as u64);
        }
    }
}

/// The signed-weight kernels rely on activations never being -128.
#[test]
fn activation_quantizers_never_write_minus_128() {
    let mut rng = StdRng::seed_from_u64(7);
    for act in [QuantType::Q8_0, QuantType::Q8_1, QuantType::Q8K] {
        let n = 512;
        for case in 0..50 {
            let mut x: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0f32)).collect();
            // Extremes of either sign, and exact ties with the block maximum.
            x[case % n] = if case % 2 == 0 { -3.0 } else { 3.0 };
            x[(case * 7 + 1) % n] = -x[case % n];
            let mut out = vec![0u8; act.row_bytes(n).expect("whole blocks")];
            quantize_row(act, &x, &mut out);
            let quants: Vec<i8> = match act {
                QuantType::Q8_0 => as_blocks::<BlockQ8_0>(&out)
                    .iter()
                    .flat_map(|b| b.qs)
                    .collect(),
                QuantType::Q8_1 => as_blocks::<BlockQ8_1>(&out)
                    .iter()
                    .flat_map(|b| b.qs)
                    .collect(),
                _ => as_blocks::<BlockQ8K>(&out)
                    .iter()
                    .flat_map(|b| b.qs)
                    .collect(),
            };
            assert_eq!(quants.len(), n);
            assert!(
                !quants.contains(&-128),
                "{act} case {case}: quantizer wrote -128"
            );
        }
    }
}
