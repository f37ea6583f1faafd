//! f32 vector primitives for attention: `y += a x`, the scores of one query
//! against a tile of keys, and an exponential that vectorizes.
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
        for (j, a) in acc.iter_mut().enumerate() {
            for (l, d) in (whole..hd).enumerate() {
                a[l] += q[d] * rows[j * hd + d];
            }
        }
        for (o, a) in o.iter_mut().zip(&acc) {
            *o = (((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))) * scale;
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
    fn axpy_adds_a_scaled_row() {
        let mut y = vec![1.0f32; 19];
        let x: Vec<f32> = (0..19).map(|i| i as f32).collect();
        axpy(&mut y, 0.5, &x);
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, 1.0 + 0.5 * i as f32);
        }
    }
}
