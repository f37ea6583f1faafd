//! f32 vector primitives for attention: `y += a x`, the scores of one query
//! against a tile of keys stored dimension-major, and an exponential that
//! vectorizes.
//!
//! All are `#[inline(always)]` so a caller compiles them into its own AVX2
//! function, where LLVM widens them to 256-bit vectors, and into its
//! portable one. None fuses multiply and add, so both copies give the same
//! bits on every machine, and every layout the same activations.

/// `y[i] += a x[i]`.
#[inline(always)]
pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Keys per [`scores_tile`] call: 32 lanes, four 8-wide registers.
pub(crate) const SCORE_TILE: usize = 32;

/// `out[j] = scale * sum_d q[d] keys_t[d][j]` for the [`SCORE_TILE`] keys of
/// a tile stored dimension-major (`keys_t[d * SCORE_TILE + j]`). Summing
/// along d for all keys at once needs no horizontal adds, so each key costs
/// one multiply and one add per dimension in 8-wide registers.
#[inline(always)]
pub(crate) fn scores_tile(q: &[f32], keys_t: &[f32], scale: f32, out: &mut [f32; SCORE_TILE]) {
    let mut acc = [0.0f32; SCORE_TILE];
    for (d, &qd) in q.iter().enumerate() {
        let k = &keys_t[d * SCORE_TILE..][..SCORE_TILE];
        for j in 0..SCORE_TILE {
            acc[j] += qd * k[j];
        }
    }
    for j in 0..SCORE_TILE {
        out[j] = acc[j] * scale;
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
    // 2^n from its exponent bits; n is in -126..=127 after the clamp.
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * two_n
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
        let mut kt = vec![0.0f32; hd * SCORE_TILE];
        for (j, k) in keys.iter().enumerate() {
            for d in 0..hd {
                kt[d * SCORE_TILE + j] = k[d];
            }
        }
        let mut out = [0.0f32; SCORE_TILE];
        scores_tile(&q, &kt, 0.5, &mut out);
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
    fn axpy_adds_a_scaled_row() {
        let mut y = vec![1.0f32; 19];
        let x: Vec<f32> = (0..19).map(|i| i as f32).collect();
        axpy(&mut y, 0.5, &x);
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, 1.0 + 0.5 * i as f32);
        }
    }
}
