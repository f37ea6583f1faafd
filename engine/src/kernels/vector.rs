//! f32 vector primitives for attention: a dot product and `y += a x`.
//!
//! The dot product keeps 8 partial sums, one per lane, and adds them in a
//! fixed tree at the end, so it vectorizes (a single running sum is a chain
//! of dependent adds the compiler may not reorder). The body is written once
//! and compiled twice: plainly, and inside an AVX2 function so LLVM widens
//! it to 256-bit vectors. Neither fuses multiply and add, so both give the
//! same bits on every machine, and every layout the same activations.

const LANES: usize = 8;

/// The dot product's body, for kernels that compile it into their own
/// AVX2 functions (so it inlines there); [`dot`] dispatches by itself.
#[inline(always)]
pub(crate) fn dot_body(a: &[f32], b: &[f32]) -> f32 {
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

/// `y += a x`'s body, as [`dot_body`].
#[inline(always)]
pub(crate) fn axpy_body(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_avx2(y: &mut [f32], a: f32, x: &[f32]) {
    axpy_body(y, a, x)
}

/// Whether this CPU runs the AVX2 copies (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx2"))
}

/// `sum a[i] b[i]` over the shorter length, in 8 lanes.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, the only feature the function enables.
        return unsafe { dot_avx2(a, b) };
    }
    dot_body(a, b)
}

/// `y[i] += a x[i]`.
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as in `dot`.
        return unsafe { axpy_avx2(y, a, x) };
    }
    axpy_body(y, a, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_definition_and_both_bodies_agree() {
        for n in [0, 1, 7, 8, 9, 64, 100, 128] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let got = dot(&a, &b);
            assert!((got as f64 - exact).abs() < 1e-4, "n={n}: {got} vs {exact}");
            assert_eq!(got.to_bits(), dot_body(&a, &b).to_bits(), "n={n}");
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
