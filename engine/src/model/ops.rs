//! Elementwise and per-row operations of the forward pass, written to follow
//! llama.cpp's CPU arithmetic where it matters for matching its output
//! (RMSNorm sums squares in f64; RoPE angles advance by repeated products).

use super::config::{RopeScaling, RopeStyle};

/// `x[i] = x[i] / rms(x) * w[i]` for each row of `x`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    for (row, o) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let scale = 1.0 / ((sum / n as f64) as f32 + eps).sqrt();
        for ((o, &v), &g) in o.iter_mut().zip(row).zip(w) {
            *o = v * scale * g;
        }
    }
}

/// In-place RMSNorm of every `w.len()`-sized chunk (qwen3's per-head Q/K norm).
pub fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    for row in x.chunks_exact_mut(n) {
        let sum: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let scale = 1.0 / ((sum / n as f64) as f32 + eps).sqrt();
        for (v, &g) in row.iter_mut().zip(w) {
            *v = *v * scale * g;
        }
    }
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Values per task of [`swiglu_in_place`]: a prefill's gate is tens of
/// thousands of values per token, and one `exp` each is worth the pool.
const SWIGLU_CHUNK: usize = 1 << 14;

/// `gate[i] = silu(gate[i]) * up[i]`, on the pool for large batches (each
/// value alone, so the bits do not depend on the split).
pub fn swiglu_in_place(gate: &mut [f32], up: &[f32]) {
    use rayon::prelude::*;
    let one = |(g, u): (&mut [f32], &[f32])| {
        for (g, u) in g.iter_mut().zip(u) {
            *g = silu(*g) * u;
        }
    };
    if gate.len() > SWIGLU_CHUNK {
        gate.par_chunks_mut(SWIGLU_CHUNK)
            .zip(up.par_chunks(SWIGLU_CHUNK))
            .for_each(one);
    } else {
        one((gate, up));
    }
}

/// Precomputed per-pair frequencies for rotary position embeddings.
#[derive(Debug, Clone)]
pub struct Rope {
    style: RopeStyle,
    dim: usize,
    head_dim: usize,
    theta_scale: f32,
    /// Position multiplier (linear scaling) and per-pair divisors.
    pos_scale: f32,
    freq_factors: Option<Vec<f32>>,
}

impl Rope {
    pub fn new(
        style: RopeStyle,
        dim: usize,
        head_dim: usize,
        base: f32,
        scaling: &RopeScaling,
    ) -> Self {
        let (pos_scale, freq_factors) = match scaling {
            RopeScaling::None => (1.0, None),
            RopeScaling::Linear(f) => (1.0 / f, None),
            RopeScaling::FreqFactors(f) => (1.0, Some(f.clone())),
        };
        Self {
            style,
            dim,
            head_dim,
            theta_scale: base.powf(-2.0 / dim as f32),
            pos_scale,
            freq_factors,
        }
    }

    /// Fills `cos`/`sin` (length dim/2) for one position.
    pub fn angles(&self, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        let mut theta = pos as f32;
        for i in 0..self.dim / 2 {
            let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
            let t = self.pos_scale * (theta / ff);
            cos[i] = t.cos();
            sin[i] = t.sin();
            theta *= self.theta_scale;
        }
    }

    /// Rotates every head in `x` (heads of `head_dim` values, one position).
    pub fn apply(&self, x: &mut [f32], cos: &[f32], sin: &[f32]) {
        let half = self.dim / 2;
        for head in x.chunks_exact_mut(self.head_dim) {
            match self.style {
                RopeStyle::Interleaved => {
                    for i in 0..half {
                        let (a, b) = (head[2 * i], head[2 * i + 1]);
                        head[2 * i] = a * cos[i] - b * sin[i];
                        head[2 * i + 1] = a * sin[i] + b * cos[i];
                    }
                }
                RopeStyle::Neox => {
                    for i in 0..half {
                        let (a, b) = (head[i], head[i + half]);
                        head[i] = a * cos[i] - b * sin[i];
                        head[i + half] = a * sin[i] + b * cos[i];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_unit_weights_gives_unit_rms() {
        let x = [3.0f32, -4.0, 0.0, 5.0];
        let mut out = [0.0; 4];
        rms_norm(&x, &[1.0; 4], 0.0, &mut out);
        let rms = (out.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-6, "{rms}");
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        for style in [RopeStyle::Interleaved, RopeStyle::Neox] {
            let rope = Rope::new(style, 8, 8, 10_000.0, &RopeScaling::None);
            let (mut c, mut s) = ([0.0; 4], [0.0; 4]);
            let orig: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
            let mut x = orig.clone();
            rope.angles(0, &mut c, &mut s);
            rope.apply(&mut x, &c, &s);
            assert_eq!(x, orig);
            rope.angles(17, &mut c, &mut s);
            rope.apply(&mut x, &c, &s);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = x.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-3);
            assert_ne!(x, orig);
        }
    }

    #[test]
    fn neox_on_unpermuted_equals_interleaved_on_permuted() {
        // llama.cpp's converter permutes each head's rows so that
        // interleaved RoPE on the permuted vector equals NeoX on the original.
        let d = 8;
        let orig: Vec<f32> = (0..d).map(|i| (i as f32 * 0.7).sin()).collect();
        let permuted: Vec<f32> = (0..d)
            .map(|i| {
                if i % 2 == 0 {
                    orig[i / 2]
                } else {
                    orig[i / 2 + d / 2]
                }
            })
            .collect();
        let (mut c, mut s) = ([0.0; 4], [0.0; 4]);
        let neox = Rope::new(RopeStyle::Neox, d, d, 10_000.0, &RopeScaling::None);
        let inter = Rope::new(RopeStyle::Interleaved, d, d, 10_000.0, &RopeScaling::None);
        neox.angles(5, &mut c, &mut s);
        let mut a = orig.clone();
        neox.apply(&mut a, &c, &s);
        let mut b = permuted.clone();
        inter.apply(&mut b, &c, &s);
        for i in 0..d {
            let back = if i % 2 == 0 {
                a[i / 2]
            } else {
                a[i / 2 + d / 2]
            };
            assert!((back - b[i]).abs() < 1e-6);
        }
    }
}
