//! f32 vector primitives for attention: a dot product and `y += a x`.
//!
//! The dot product keeps 8 partial sums, one per lane, and adds them in a
//! fixed tree at the end, so it vectorizes (a single running sum is a chain
//! of dependent adds the compiler may not reorder). Both are
//! `#[inline(always)]` so a caller compiles them into its own AVX2 function,
//! where LLVM widens them to 256-bit vectors, and into its portable one.
//! Neither fuses multiply and add, so both copies give the same bits on
//! every machine, and every layout the same activations.

const LANES: usize = 8;

/// `sum a[i] b[i]` over the shorter length, in 8 lanes.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    for (i, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[i] += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// `y[i] += a x[i]`.
#[inline(always)]
pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_definition() {
        for n in [0, 1, 7, 8, 9, 64, 100, 128] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let got = dot(&a, &b);
            assert!((got as f64 - exact).abs() < 1e-4, "n={n}: {got} vs {exact}");
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
