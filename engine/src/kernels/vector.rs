//! f32 vector primitives for attention: `y += a x`, the scores of one query
//! against a tile of keys, an exponential that vectorizes, and a tile's
//! weighted sum of value rows.
//!
//! All are `#[inline(always)]` so a caller compiles them into its own AVX2
//! function, where LLVM widens them to 256-bit vectors, and into its
//! portable one; the scores and the weighted sum also have AVX versions
//! written out (module `avx`), and 512-bit ones for prompt batches (module
//! `avx512`: two queries' scores at once), with the same operations in the
//! same order.
//! None fuses multiply and add, so every copy gives the same bits on every
//! machine, and every layout the same activations.

#[cfg(target_arch = "x86_64")]
mod avx512;

/// `y[i] += a x[i]`.
#[inline(always)]
pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Keys per [`scores_tile`] call: 32 lanes, four 8-wide registers.
pub(crate) const SCORE_TILE: usize = 32;

const LANES: usize = 8;

/// `out[j] = scale * q . keys[j]` for the [`SCORE_TILE`] keys of a tile
/// stored row after row (`keys[j * q.len()..]`). Eight keys at a time, each
/// with 8 lanes of partial sums that the head dimension streams through,
/// added in a fixed tree at the end: the loads of `q` are shared by eight
/// keys, and the sums vectorize (a single running sum per key would be a
/// chain of dependent adds). A head size that is not a multiple of 8 adds
/// its last values into the first lanes.
#[inline(always)]
pub(crate) fn scores_tile(q: &[f32], keys: &[f32], scale: f32, out: &mut [f32; SCORE_TILE]) {
    assert!(keys.len() >= SCORE_TILE * q.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX, all the function enables; `keys` holds
        // the tile (asserted above).
        return unsafe { avx::scores_tile(q, keys, scale, out) };
    }
    scores_portable(q, keys, scale, out)
}

/// [`scores_tile`] of two queries against one tile: `out[0]` for `qa`,
/// `out[1]` for `qb`. With AVX-512 one pass over the keys serves both.
#[inline(always)]
pub(crate) fn scores_tile_pair(
    qa: &[f32],
    qb: &[f32],
    keys: &[f32],
    scale: f32,
    out: &mut [[f32; SCORE_TILE]; 2],
) {
    let hd = qa.len();
    assert!(qb.len() == hd && keys.len() >= SCORE_TILE * hd);
    #[cfg(target_arch = "x86_64")]
    if hd.is_multiple_of(LANES) && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; the lengths are asserted above.
        return unsafe { avx512::scores_pair(qa, qb, keys, scale, out) };
    }
    let [a, b] = out;
    scores_tile(qa, keys, scale, a);
    scores_tile(qb, keys, scale, b);
}

/// [`scores_tile`] in plain loops.
#[inline(always)]
fn scores_portable(q: &[f32], keys: &[f32], scale: f32, out: &mut [f32; SCORE_TILE]) {
    let hd = q.len();
    let whole = hd - hd % LANES;
    for (group, o) in out.chunks_exact_mut(LANES).enumerate() {
        let rows = &keys[group * LANES * hd..][..LANES * hd];
        let mut acc = [[0.0f32; LANES]; LANES];
        for c in (0..whole).step_by(LANES) {
            let qc = &q[c..c + LANES];
            for (j, a) in acc.iter_mut().enumerate() {
                let k = &rows[j * hd + c..][..LANES];
                for l in 0..LANES {
                    a[l] += qc[l] * k[l];
                }
            }
        }
        for (j, (o, a)) in o.iter_mut().zip(&mut acc).enumerate() {
            *o = finish_score(a, q, &rows[j * hd..][..hd], whole, scale);
        }
    }
}

/// One key's score from its 8 lanes: the head dimensions past the last
/// whole 8 go into the first lanes, then the lanes meet in a fixed tree.
#[inline(always)]
fn finish_score(a: &mut [f32; LANES], q: &[f32], key: &[f32], whole: usize, scale: f32) -> f32 {
    for (l, d) in (whole..q.len()).enumerate() {
        a[l] += q[d] * key[d];
    }
    (((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))) * scale
}

/// The same operations in the same order as the portable loops of
/// [`scores_tile`] and [`weighted_rows`] (a multiply, then an add, per
/// lane), so the same bits. Written out because the portable loops, bounds
/// checked per key row, kept their eight accumulators on the stack: a
/// store per key and dimension block, in the loop that is most of a long
/// context's attention.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx {
    use std::arch::x86_64::*;

    use super::{finish_score, LANES, OUT_BLOCK, SCORE_TILE};

    /// # Safety
    /// AVX, and `keys.len() >= SCORE_TILE * q.len()`.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn scores_tile(
        q: &[f32],
        keys: &[f32],
        scale: f32,
        out: &mut [f32; SCORE_TILE],
    ) {
        let hd = q.len();
        let whole = hd - hd % LANES;
        for (group, o) in out.chunks_exact_mut(LANES).enumerate() {
            let rows = keys[group * LANES * hd..].as_ptr();
            let mut acc = [_mm256_setzero_ps(); LANES];
            for c in (0..whole).step_by(LANES) {
                let qc = _mm256_loadu_ps(q.as_ptr().add(c));
                for (j, a) in acc.iter_mut().enumerate() {
                    let k = _mm256_loadu_ps(rows.add(j * hd + c));
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(qc, k));
                }
            }
            if whole == hd {
                let sums = _mm256_mul_ps(tree_sums(&acc), _mm256_set1_ps(scale));
                _mm256_storeu_ps(o.as_mut_ptr(), sums);
                continue;
            }
            for (j, (o, a)) in o.iter_mut().zip(&acc).enumerate() {
                let mut lanes = [0.0f32; LANES];
                _mm256_storeu_ps(lanes.as_mut_ptr(), *a);
                let key = &keys[(group * LANES + j) * hd..][..hd];
                *o = finish_score(&mut lanes, q, key, whole, scale);
            }
        }
    }

    /// The eight keys' lanes added in [`finish_score`]'s tree, all eight at
    /// once: lane `l` of key `j` is `acc[j][l]`, and lane `j` of the result
    /// is `((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7))` of key `j`
    /// (each add is commutative, so the order within a pair is free).
    ///
    /// # Safety
    /// AVX.
    #[target_feature(enable = "avx")]
    #[inline]
    pub(crate) unsafe fn tree_sums(acc: &[__m256; LANES]) -> __m256 {
        // hadd pairs adjacent lanes: (l0+l4)+(l1+l5) and (l2+l6)+(l3+l7),
        // then those two, giving keys 0..4 in the low half, 4..8 in the high.
        let pairs01 = _mm256_hadd_ps(halves(acc[0], acc[4]), halves(acc[1], acc[5]));
        let pairs23 = _mm256_hadd_ps(halves(acc[2], acc[6]), halves(acc[3], acc[7]));
        _mm256_hadd_ps(pairs01, pairs23)
    }

    /// Keys `a` and `b` side by side, each lane `l` plus lane `l + 4`:
    /// `[a0+a4, a1+a5, a2+a6, a3+a7, b0+b4, ..]`.
    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn halves(a: __m256, b: __m256) -> __m256 {
        let low = _mm256_permute2f128_ps::<0x20>(a, b);
        let high = _mm256_permute2f128_ps::<0x31>(a, b);
        _mm256_add_ps(low, high)
    }

    /// # Safety
    /// AVX, `out.len() >= whole`, and `rows` holds `weights.len()` rows of
    /// `out.len()` values.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn weighted_blocks(
        out: &mut [f32],
        weights: &[f32],
        rows: &[f32],
        whole: usize,
    ) {
        let n = out.len();
        for d0 in (0..whole).step_by(OUT_BLOCK) {
            let o = out.as_mut_ptr().add(d0);
            let mut acc = [_mm256_setzero_ps(); OUT_BLOCK / LANES];
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm256_loadu_ps(o.add(i * LANES));
            }
            for (j, &w) in weights.iter().enumerate() {
                let row = rows.as_ptr().add(j * n + d0);
                let w = _mm256_set1_ps(w);
                for (i, a) in acc.iter_mut().enumerate() {
                    let v = _mm256_loadu_ps(row.add(i * LANES));
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(w, v));
                }
            }
            for (i, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.add(i * LANES), *a);
            }
        }
    }
}

/// `e^x` to about 2 ulp, in plain f32 arithmetic with no branches per
/// value, so a loop of it vectorizes (libm's `exp` is a call per value) and
/// gives the same bits wherever it runs. Inputs below -87 give 0, as
/// softmax wants for scores far under the maximum.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so n * LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E).round();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor terms to r^6 in Horner form: |r| <= ln2/2 keeps it within 2 ulp.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * two_to(n)
}

/// `2^n` for a whole `n` in -126..=127, built from its exponent bits.
/// Adding 2^23 + 127 puts `n + 127` (1..=254) in the low mantissa bits
/// exactly, and the shift moves it into the exponent. This is what
/// `(n as i32 + 127) << 23` gives, without the saturating float-to-int cast
/// (a compare and two conditional moves per value) that keeps a loop of
/// [`exp`] from vectorizing.
#[inline(always)]
fn two_to(n: f32) -> f32 {
    const BIAS: f32 = 8_388_608.0 + 127.0;
    f32::from_bits((n + BIAS).to_bits() << 23)
}

/// Replaces each score by `e^(score - max)` and returns their sum, added
/// in order. The exponentials vectorize; the sum stays a chain so its bits
/// do not depend on the vector width.
#[inline(always)]
pub(crate) fn exp_shifted(scores: &mut [f32], max: f32) -> f32 {
    for s in scores.iter_mut() {
        *s = exp(*s - max);
    }
    scores.iter().fold(0.0, |sum, &e| sum + e)
}

/// Dimensions of the output one pass of [`weighted_rows`] keeps in registers.
const OUT_BLOCK: usize = 32;

/// `out[d] += Σ_j weights[j] rows[j][d]` for rows of `out.len()` values
/// stored one after another, each output added to in `j` order: the same
/// bits as an [`axpy`] per row, but each block of outputs stays in
/// registers while every row passes, instead of a load and a store of the
/// whole output per row.
#[inline(always)]
pub(crate) fn weighted_rows(out: &mut [f32], weights: &[f32], rows: &[f32]) {
    let n = out.len();
    let whole = n - n % OUT_BLOCK;
    assert!(rows.len() >= weights.len() * n);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; `rows` holds every row (asserted above).
        unsafe { avx512::weighted_blocks(out, weights, rows, whole) };
    } else if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX; `rows` holds every row (asserted above).
        unsafe { avx::weighted_blocks(out, weights, rows, whole) };
    } else {
        weighted_blocks(out, weights, rows, whole);
    }
    #[cfg(not(target_arch = "x86_64"))]
    weighted_blocks(out, weights, rows, whole);
    if whole < n {
        for (j, &w) in weights.iter().enumerate() {
            axpy(&mut out[whole..], w, &rows[j * n + whole..][..n - whole]);
        }
    }
}

/// The whole blocks of [`OUT_BLOCK`] outputs of [`weighted_rows`].
#[inline(always)]
fn weighted_blocks(out: &mut [f32], weights: &[f32], rows: &[f32], whole: usize) {
    let n = out.len();
    for d0 in (0..whole).step_by(OUT_BLOCK) {
        let mut acc = [0.0f32; OUT_BLOCK];
        acc.copy_from_slice(&out[d0..d0 + OUT_BLOCK]);
        for (j, &w) in weights.iter().enumerate() {
            let row = &rows[j * n + d0..][..OUT_BLOCK];
            for l in 0..OUT_BLOCK {
                acc[l] += w * row[l];
            }
        }
        out[d0..d0 + OUT_BLOCK].copy_from_slice(&acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_and_underflows_to_zero() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 4e-7, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    /// The written-out AVX versions give the bits of the portable loops,
    /// at head sizes with and without a remainder past the last 8 (and
    /// past the last 32 outputs).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx_versions_give_the_portable_bits() {
        if !std::arch::is_x86_feature_detected!("avx") {
            return;
        }
        for hd in [64, 128, 70, 5] {
            let value = |i: usize| ((i as f32) * 0.731).sin() * 3.0;
            let q: Vec<f32> = (0..hd).map(|i| value(i + 7)).collect();
            let keys: Vec<f32> = (0..SCORE_TILE * hd).map(value).collect();
            let (mut want, mut got) = ([0.0f32; SCORE_TILE], [0.0f32; SCORE_TILE]);
            scores_portable(&q, &keys, 0.125, &mut want);
            // SAFETY: AVX checked above; `keys` holds the whole tile.
            unsafe { avx::scores_tile(&q, &keys, 0.125, &mut got) };
            assert_eq!(
                got.map(f32::to_bits),
                want.map(f32::to_bits),
                "scores, {hd}"
            );

            // SAFETY: AVX checked above; the helper passes every row.
            weighted_gives_the_portable_bits(hd, |o, w, r, whole| unsafe {
                avx::weighted_blocks(o, w, r, whole)
            });
        }
    }

    /// `fast` gives [`weighted_blocks`]'s bits over a tile of `hd`-value rows.
    #[cfg(target_arch = "x86_64")]
    fn weighted_gives_the_portable_bits(
        hd: usize,
        fast: impl Fn(&mut [f32], &[f32], &[f32], usize),
    ) {
        let value = |i: usize| ((i as f32) * 0.731).sin() * 3.0;
        let rows: Vec<f32> = (0..SCORE_TILE * hd).map(value).collect();
        let weights: Vec<f32> = (0..SCORE_TILE).map(|j| value(j + 3).abs()).collect();
        let start: Vec<f32> = (0..hd).map(|d| value(d + 11)).collect();
        let whole = hd - hd % OUT_BLOCK;
        let mut want = start.clone();
        weighted_blocks(&mut want, &weights, &rows, whole);
        let mut got = start;
        fast(&mut got, &weights, &rows, whole);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "weighted rows, {hd}");
    }

    /// Two queries scored in one pass give each query's portable bits.
    #[test]
    fn scores_of_a_pair_give_the_bits_of_each_alone() {
        let value = |i: usize| ((i as f32) * 0.731).sin() * 3.0;
        for hd in [64, 128, 72, 5] {
            let qa: Vec<f32> = (0..hd).map(|i| value(i + 7)).collect();
            let qb: Vec<f32> = (0..hd).map(|i| value(3 * i + 1)).collect();
            let keys: Vec<f32> = (0..SCORE_TILE * hd).map(value).collect();
            let mut want = [[0.0f32; SCORE_TILE]; 2];
            scores_portable(&qa, &keys, 0.125, &mut want[0]);
            scores_portable(&qb, &keys, 0.125, &mut want[1]);
            let mut got = [[0.0f32; SCORE_TILE]; 2];
            scores_tile_pair(&qa, &qb, &keys, 0.125, &mut got);
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.map(f32::to_bits), w.map(f32::to_bits), "{hd}");
            }
        }
    }

    /// The 512-bit weighted sums give the portable bits, at head sizes
    /// that take each of their blocks (128, 64, 32 outputs) and a rest.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_weighted_rows_give_the_portable_bits() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        for hd in [32, 64, 96, 128, 224, 256, 70] {
            // SAFETY: AVX-512F checked above; the helper passes every row.
            weighted_gives_the_portable_bits(hd, |o, w, r, whole| unsafe {
                avx512::weighted_blocks(o, w, r, whole)
            });
        }
    }

    #[test]
    fn scores_tile_matches_dot_products() {
        let hd = 24;
        let q: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.3).sin()).collect();
        let keys: Vec<Vec<f32>> = (0..SCORE_TILE)
            .map(|j| {
                (0..hd)
                    .map(|d| ((j * hd + d) as f32 * 0.07).cos())
                    .collect()
            })
            .collect();
        let rows: Vec<f32> = keys.concat();
        let mut out = [0.0f32; SCORE_TILE];
        scores_tile(&q, &rows, 0.5, &mut out);
        for (j, k) in keys.iter().enumerate() {
            let want: f64 = q
                .iter()
                .zip(k)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>()
                * 0.5;
            assert!(
                (out[j] as f64 - want).abs() < 1e-5,
                "key {j}: {} vs {want}",
                out[j]
            );
        }
    }

    #[test]
    fn two_to_is_the_exponent_bits_of_n() {
        for n in -126..=127 {
            let want = f32::from_bits(((n + 127) as u32) << 23);
            assert_eq!(two_to(n as f32).to_bits(), want.to_bits(), "2^{n}");
        }
    }

    #[test]
    fn weighted_rows_gives_the_bits_of_one_axpy_per_row() {
        // 70 values: two register blocks and a remainder of 6.
        for n in [64, 70, 5] {
            let rows: Vec<f32> = (0..n * 9).map(|i| (i as f32 * 0.37).sin()).collect();
            let weights: Vec<f32> = (0..9).map(|j| (j as f32 * 0.11).cos()).collect();
            let start: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
            let mut want = start.clone();
            for (j, &w) in weights.iter().enumerate() {
                axpy(&mut want, w, &rows[j * n..][..n]);
            }
            let mut got = start;
            weighted_rows(&mut got, &weights, &rows);
            assert_eq!(got, want, "{n} values");
        }
    }

    #[test]
    fn exp_shifted_sums_in_order() {
        let mut s: Vec<f32> = (0..37).map(|i| i as f32 * -0.3).collect();
        let want: Vec<f32> = s.iter().map(|&x| exp(x - 0.5)).collect();
        let sum = exp_shifted(&mut s, 0.5);
        assert_eq!(s, want);
        assert_eq!(sum, want.iter().fold(0.0, |a, &e| a + e));
    }

    #[test]
    fn axpy_adds_a_scaled_row() {
        let mut y = vec![1.0f32; 19];
        let x: Vec<f32> = (0..19).map(|i| i as f32).collect();
        axpy(&mut y, 0.5, &x);
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, 1.0 + 0.5 * i as f32);
        }
    }
}
