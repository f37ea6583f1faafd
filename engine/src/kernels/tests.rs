//! Kernel cross-checks for every weight type: the quantizers against the
//! dequantizers, the quantized row dots against a float reference, the matmul
//! against the row dots, and the matmul against itself across thread counts.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::dequant::dequantize_row;
use super::dot::{dot_row, dot_rows};
use super::matmul::{matmul, matmul_each, MatmulScratch};
use super::quantize::{activation_type, quantize_row};
use super::quantize_weights::{quantize_weights, QuantizeError};
use super::weight::{Weight, WeightBytes};
use super::QuantType;

const WEIGHT_TYPES: [QuantType; 13] = [
    QuantType::F32,
    QuantType::F16,
    QuantType::BF16,
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

/// Two K-quant super-blocks, sixteen 32-blocks.
const COLS: usize = 512;

/// Roughly normal values (sum of uniforms), deterministic per seed.
fn normal(rng: &mut StdRng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let s: f32 = (0..4).map(|_| rng.random::<f32>()).sum();
            (s - 2.0) * 1.732 * std
        })
        .collect()
}

/// Named weight rows: random ones and the edge cases quantizers get wrong.
fn cases(seed: u64) -> Vec<(&'static str, Vec<f32>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut huge = normal(&mut rng, COLS, 0.02);
    huge[37] = 1000.0;
    let negative: Vec<f32> = normal(&mut rng, COLS, 1.0)
        .into_iter()
        .map(|v| -v.abs() - 0.5)
        .collect();
    // The largest magnitude every weight type accepts (Q4_1 stores its block
    // minimum as f16), with mixed signs.
    let max_mag: Vec<f32> = (0..COLS)
        .map(|i| {
            let m = 60000.0 - rng.random_range(0.0..1000.0f32);
            if i % 3 == 0 {
                -m
            } else {
                m
            }
        })
        .collect();
    let tiny: Vec<f32> = normal(&mut rng, COLS, 1e-30);
    let small: Vec<f32> = normal(&mut rng, COLS, 1e-6);
    let mut ramp: Vec<f32> = (0..COLS).map(|i| (i % 97) as f32 / 97.0 - 0.3).collect();
    ramp.reverse();
    vec![
        ("random std 0.02", normal(&mut rng, COLS, 0.02)),
        ("random std 1", normal(&mut rng, COLS, 1.0)),
        ("random std 3", normal(&mut rng, COLS, 3.0)),
        ("all zeros", vec![0.0; COLS]),
        ("one huge value", huge),
        ("all negative", negative),
        ("max magnitude", max_mag),
        ("denormal-ish 1e-30", tiny),
        ("small 1e-6", small),
        ("ramp", ramp),
    ]
}

fn dequant(dtype: QuantType, q: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    dequantize_row(dtype, q, &mut out);
    out
}

/// Largest tolerated RMS error after a quantize/dequantize round trip, as a
/// fraction of the row's RMS. Reference-quality rounding, with margin.
fn rms_bound(dtype: QuantType) -> f64 {
    match dtype {
        QuantType::F32 => 0.0,
        QuantType::F16 => 1e-3,
        QuantType::BF16 => 5e-3,
        QuantType::Q8_0 => 0.01,
        QuantType::Q6K => 0.03,
        QuantType::Q5_0 | QuantType::Q5_1 | QuantType::Q5K => 0.06,
        QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q4K => 0.12,
        QuantType::Q3K => 0.25,
        _ => 0.5,
    }
}

/// Scales below f16's smallest step (6e-8) flush towards zero, so rows of
/// tiny values lose up to one step per level of the block's scale: an
/// absolute error floor that has nothing to do with the layout.
fn underflow_floor(dtype: QuantType) -> f64 {
    let levels = match dtype {
        QuantType::F32 | QuantType::BF16 => return 0.0,
        QuantType::F16 => 1.0,
        QuantType::Q4_0 => 8.0,
        QuantType::Q4_1 => 15.0,
        QuantType::Q5_0 => 16.0,
        QuantType::Q5_1 => 31.0,
        QuantType::Q2K => 3.0 * 15.0,
        QuantType::Q3K => 4.0 * 32.0,
        QuantType::Q4K => 15.0 * 63.0,
        QuantType::Q5K => 31.0 * 63.0,
        QuantType::Q6K => 32.0 * 127.0,
        _ => 127.0,
    };
    6e-8 * levels
}

fn rms(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x * x, n + 1));
    (s / n.max(1) as f64).sqrt()
}

#[test]
fn quantize_then_dequantize_is_close_for_every_type_and_case() {
    for dtype in WEIGHT_TYPES {
        for (case, x) in cases(1) {
            let q = quantize_weights(dtype, &x).unwrap_or_else(|e| panic!("{dtype} {case}: {e}"));
            assert_eq!(q.len(), dtype.row_bytes(COLS).expect("whole blocks"));
            let y = dequant(dtype, &q, COLS);
            assert!(
                y.iter().all(|v| v.is_finite()),
                "{dtype} {case}: non-finite"
            );
            let err = rms(x.iter().zip(&y).map(|(&a, &b)| a as f64 - b as f64));
            let scale = rms(x.iter().map(|&a| a as f64));
            let floor = underflow_floor(dtype);
            assert!(
                err <= rms_bound(dtype) * scale + floor,
                "{dtype} {case}: rms error {err:e} vs rms {scale:e}"
            );
            if case == "all zeros" {
                assert!(y.iter().all(|&v| v == 0.0), "{dtype}: zeros stay zeros");
            }
        }
    }
}

#[test]
fn largest_value_survives_symmetric_quantization() {
    // The value of largest magnitude maps to a level exactly, up to the f16 scale.
    let mut rng = StdRng::seed_from_u64(7);
    let mut x = normal(&mut rng, COLS, 0.1);
    x[100] = -2.5;
    for dtype in [
        QuantType::Q4_0,
        QuantType::Q5_0,
        QuantType::Q8_0,
        QuantType::Q3K,
        QuantType::Q6K,
    ] {
        let y = dequant(dtype, &quantize_weights(dtype, &x).expect("quantize"), COLS);
        assert!(
            (y[100] + 2.5).abs() < 2.5 * 3e-3,
            "{dtype}: {} for -2.5",
            y[100]
        );
    }
}

#[test]
fn quantizer_errors_name_the_problem() {
    let e = quantize_weights(QuantType::Q4K, &[0.0; 300]).expect_err("partial block");
    assert_eq!(
        e.to_string(),
        "300 values are not a whole number of Q4_K blocks of 256"
    );
    let mut x = vec![0.0f32; 32];
    x[5] = f32::NAN;
    let e = quantize_weights(QuantType::Q8_0, &x).expect_err("NaN");
    assert!(
        matches!(e, QuantizeError::NotFinite { index: 5, .. }),
        "{e}"
    );
    x[5] = 1e9;
    let e = quantize_weights(QuantType::Q4_0, &x).expect_err("too large");
    assert!(
        e.to_string().contains("index 5") && e.to_string().contains("Q4_0"),
        "{e}"
    );
    x[5] = 70000.0;
    assert!(quantize_weights(QuantType::F16, &x).is_err(), "beyond f16");
    assert!(quantize_weights(QuantType::BF16, &x).is_ok());
    assert!(matches!(
        quantize_weights(QuantType::Q8K, &[0.0; 256]),
        Err(QuantizeError::NotAWeightType { .. })
    ));
}

fn quantize_acts(dtype: QuantType, x: &[f32]) -> Vec<u8> {
    let act = activation_type(dtype);
    let mut out = vec![0u8; act.row_bytes(x.len()).expect("whole blocks")];
    quantize_row(act, x, &mut out);
    out
}

/// The activation's quantization error bounds the dot's: half a level of the
/// activation block's scale per element, times that element's weight.
fn dot_tolerance(dtype: QuantType, w: &[f32], x: &[f32]) -> f64 {
    let act = activation_type(dtype);
    if act == QuantType::F32 {
        let mag: f64 = w
            .iter()
            .zip(x)
            .map(|(&a, &b)| (a as f64 * b as f64).abs())
            .sum();
        return 1e-5 * mag + 1e-30;
    }
    let bl = act.block_len();
    let mut tol = 0.0f64;
    for (wb, xb) in w.chunks(bl).zip(x.chunks(bl)) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        let wsum: f64 = wb.iter().map(|&v| (v as f64).abs()).sum();
        // 0.5/127 per level, plus f16 rounding of the block scale and sum.
        tol += wsum * amax * (0.5 / 127.0 + 2e-3);
    }
    tol + 1e-30
}

#[test]
fn row_dot_matches_dequantized_float_dot() {
    let mut rng = StdRng::seed_from_u64(2);
    for dtype in WEIGHT_TYPES {
        for (case, w) in cases(3) {
            let wq = quantize_weights(dtype, &w).expect("quantize");
            let wd = dequant(dtype, &wq, COLS);
            for x_std in [1.0f32, 0.01] {
                let x = normal(&mut rng, COLS, x_std);
                let got = dot_row(dtype, &wq, &quantize_acts(dtype, &x));
                let want: f64 = wd.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
                let tol = dot_tolerance(dtype, &wd, &x);
                assert!(
                    (got - want).abs() <= tol,
                    "{dtype} {case} (x std {x_std}): dot {got} vs reference {want} (tolerance {tol:e})"
                );
            }
        }
    }
}

/// A weight whose rows are every case, repeated to `rows`.
fn weight(dtype: QuantType, rows: usize) -> Weight {
    let all = cases(4);
    let mut bytes = Vec::new();
    for r in 0..rows {
        bytes.extend(quantize_weights(dtype, &all[r % all.len()].1).expect("quantize"));
    }
    Weight {
        dtype,
        rows,
        cols: COLS,
        data: WeightBytes::owned(bytes),
    }
}

fn run_matmul(w: &Weight, x: &[f32], tokens: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; tokens * w.rows];
    matmul(w, x, tokens, &mut out, &mut MatmulScratch::default());
    out
}

#[test]
fn matmul_equals_row_dots_exactly() {
    let mut rng = StdRng::seed_from_u64(5);
    for dtype in WEIGHT_TYPES {
        let w = weight(dtype, 13);
        for tokens in [1usize, 7] {
            let x = normal(&mut rng, tokens * COLS, 1.0);
            let out = run_matmul(&w, &x, tokens);
            for t in 0..tokens {
                let acts = quantize_acts(dtype, &x[t * COLS..(t + 1) * COLS]);
                for r in 0..w.rows {
                    // The same dispatch (AVX2 or portable) the matmul uses.
                    let mut one = [0.0f64];
                    dot_rows(
                        dtype,
                        w.row(r),
                        w.row_bytes(),
                        &acts,
                        acts.len(),
                        1,
                        &mut one,
                    );
                    let want = one[0] as f32;
                    let got = out[t * w.rows + r];
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{dtype} tokens={tokens} token {t} row {r}: {got} vs {want}"
                    );
                    // And the hand-written kernels agree with the portable reference.
                    let portable = dot_row(dtype, w.row(r), &acts);
                    assert!(
                        (one[0] - portable).abs() <= 1e-9 * portable.abs().max(1.0),
                        "{dtype}: dispatched {} vs portable {portable}",
                        one[0]
                    );
                }
            }
        }
    }
}

#[test]
fn matmul_is_bitwise_identical_on_one_and_two_threads() {
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("thread pool")
    };
    let (one, two) = (pool(1), pool(2));
    let mut rng = StdRng::seed_from_u64(6);
    for dtype in WEIGHT_TYPES {
        // Enough rows that two threads split the work into many tasks.
        let w = weight(dtype, 70);
        for tokens in [1usize, 7] {
            let x = normal(&mut rng, tokens * COLS, 1.0);
            let a = one.install(|| run_matmul(&w, &x, tokens));
            let b = two.install(|| run_matmul(&w, &x, tokens));
            assert!(a.iter().all(|v| v.is_finite()), "{dtype}: finite output");
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "{dtype} tokens={tokens}");
        }
    }
}

/// `matmul_each` runs weights that read one activation type as one pass
/// over all their rows: each output must still be that weight's own
/// `matmul`, bit for bit, on one thread and on two, with the activation
/// type changing between neighbours (Q4_K reads Q8_K; Q4_0 and Q8_0 read
/// Q8_0) and rows that no task size divides.
#[test]
fn matmul_each_equals_each_matmul_alone() {
    let mut rng = StdRng::seed_from_u64(7);
    let weights = [
        weight(QuantType::Q4K, 70),
        weight(QuantType::Q4_0, 33),
        weight(QuantType::Q8_0, 50),
        weight(QuantType::Q4K, 17),
    ];
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        for tokens in [1usize, 7] {
            let x = normal(&mut rng, tokens * COLS, 1.0);
            let alone: Vec<Vec<f32>> = weights
                .iter()
                .map(|w| pool.install(|| run_matmul(w, &x, tokens)))
                .collect();
            let mut outs: Vec<Vec<f32>> = weights
                .iter()
                .map(|w| vec![f32::NAN; tokens * w.rows])
                .collect();
            let mut products: Vec<(&Weight, &mut [f32])> = weights
                .iter()
                .zip(outs.iter_mut())
                .map(|(w, o)| (w, o.as_mut_slice()))
                .collect();
            pool.install(|| matmul_each(&mut products, &x, tokens, &mut MatmulScratch::default()));
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            for (i, (a, b)) in alone.iter().zip(&outs).enumerate() {
                assert_eq!(
                    bits(a),
                    bits(b),
                    "weight {i}, {threads} threads, tokens={tokens}"
                );
            }
        }
    }
}
