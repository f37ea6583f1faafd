//! Causal multi-head attention with grouped KV heads over the cache.

use rayon::prelude::*;

use crate::kernels::vector::{axpy, dot};

/// Shapes for one attention call.
pub struct AttnShape {
    pub head_dim: usize,
    /// Owned Q heads and how many of them read each owned KV head.
    pub n_q: usize,
    pub n_kv: usize,
    /// Global index of the first owned Q head, and of the first owned KV head.
    pub q_start: usize,
    pub kv_start: usize,
    pub group: usize,
}

/// `q` is `tokens x n_q x head_dim` for positions `pos..pos+tokens`;
/// `k`/`v` hold positions `0..pos+tokens`, `[pos][n_kv][head_dim]`.
/// Writes `tokens x n_q x head_dim` into `out`.
pub fn attend(shape: &AttnShape, q: &[f32], k: &[f32], v: &[f32], pos: usize, out: &mut [f32]) {
    let hd = shape.head_dim;
    let kv_row = shape.n_kv * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    out.par_chunks_mut(hd)
        .zip(q.par_chunks(hd))
        .enumerate()
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, (i, (o, qh))| {
            let (t, h) = (i / shape.n_q, i % shape.n_q);
            let kvh = (shape.q_start + h) / shape.group - shape.kv_start;
            let n = pos + t + 1;
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for j in 0..n {
                let kj = &k[j * kv_row + kvh * hd..j * kv_row + kvh * hd + hd];
                let s = dot(qh, kj) * scale;
                max = max.max(s);
                scores.push(s);
            }
            let mut sum = 0.0f64;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s as f64;
            }
            let inv = (1.0 / sum) as f32;
            o.fill(0.0);
            for (j, &w) in scores.iter().enumerate() {
                let vj = &v[j * kv_row + kvh * hd..j * kv_row + kvh * hd + hd];
                axpy(o, w * inv, vj);
            }
        });
}
