//! Causal multi-head attention with grouped KV heads over the cache.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use crate::kernels::dot::Isa;
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

/// One token's owned Q heads that read one KV head: they share every K and
/// V row, so each row is read once for all of them.
#[derive(Clone, Copy)]
struct Unit {
    token: usize,
    /// Local index of the KV head.
    kv: usize,
    /// Local Q heads `first..end`, contiguous.
    first: usize,
    end: usize,
}

/// What every unit of one call reads.
struct Inputs<'a> {
    shape: &'a AttnShape,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    pos: usize,
}

/// `q` is `tokens x n_q x head_dim` for positions `pos..pos+tokens`;
/// `k`/`v` hold positions `0..pos+tokens`, `[pos][n_kv][head_dim]`.
/// Writes `tokens x n_q x head_dim` into `out`.
///
/// Work is split by (token, KV head): the scores of all Q heads of a group
/// are computed from one pass over the K rows, then the outputs from one
/// pass over the V rows. Each head's arithmetic is the same as computing it
/// alone (same dot products, same order of sums), so the split changes
/// speed, not bits.
pub fn attend(shape: &AttnShape, q: &[f32], k: &[f32], v: &[f32], pos: usize, out: &mut [f32]) {
    let hd = shape.head_dim;
    if hd == 0 || shape.n_q == 0 {
        return;
    }
    let tokens = q.len() / (shape.n_q * hd);
    let units = units(shape, tokens);
    let mut outputs = Vec::with_capacity(units.len());
    let mut rest = out;
    for u in &units {
        let (mine, after) = rest.split_at_mut((u.end - u.first) * hd);
        outputs.push(mine);
        rest = after;
    }
    let inputs = Inputs {
        shape,
        q,
        k,
        v,
        pos,
    };
    units
        .into_par_iter()
        .zip(outputs)
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, (u, o)| {
            run_unit(&inputs, u, scores, o)
        });
}

/// The units of `tokens` tokens, in output order.
fn units(shape: &AttnShape, tokens: usize) -> Vec<Unit> {
    let kv_of = |h: usize| (shape.q_start + h) / shape.group - shape.kv_start;
    let mut units = Vec::new();
    for token in 0..tokens {
        let mut first = 0;
        while first < shape.n_q {
            let kv = kv_of(first);
            let mut end = first + 1;
            while end < shape.n_q && kv_of(end) == kv {
                end += 1;
            }
            units.push(Unit {
                token,
                kv,
                first,
                end,
            });
            first = end;
        }
    }
    units
}

fn run_unit(inputs: &Inputs, u: Unit, scores: &mut Vec<f32>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::detected().contains(&Isa::Avx2) {
        // SAFETY: the CPU has AVX2, the only feature the function enables.
        return unsafe { unit_avx2(inputs, u, scores, out) };
    }
    unit_body(inputs, u, scores, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn unit_avx2(inputs: &Inputs, u: Unit, scores: &mut Vec<f32>, out: &mut [f32]) {
    unit_body(inputs, u, scores, out)
}

/// Scores, softmax and weighted values for one unit.
#[inline(always)]
fn unit_body(inputs: &Inputs, u: Unit, scores: &mut Vec<f32>, out: &mut [f32]) {
    let s = inputs.shape;
    let hd = s.head_dim;
    let kv_row = s.n_kv * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    let heads = u.end - u.first;
    let n = inputs.pos + u.token + 1;
    let q = &inputs.q[(u.token * s.n_q + u.first) * hd..(u.token * s.n_q + u.end) * hd];
    fn row(m: &[f32], at: usize, hd: usize) -> &[f32] {
        &m[at..at + hd]
    }
    let at = |j: usize| j * kv_row + u.kv * hd;
    scores.clear();
    scores.resize(heads * n, 0.0);
    for j in 0..n {
        let kj = row(inputs.k, at(j), hd);
        for h in 0..heads {
            scores[h * n + j] = dot(&q[h * hd..(h + 1) * hd], kj) * scale;
        }
    }
    for h in 0..heads {
        let sc = &mut scores[h * n..(h + 1) * n];
        let max = sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0.0f64;
        for x in sc.iter_mut() {
            *x = (*x - max).exp();
            sum += *x as f64;
        }
        let inv = (1.0 / sum) as f32;
        sc.iter_mut().for_each(|x| *x *= inv);
    }
    out.fill(0.0);
    for j in 0..n {
        let vj = row(inputs.v, at(j), hd);
        for h in 0..heads {
            axpy(&mut out[h * hd..(h + 1) * hd], scores[h * n + j], vj);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention one head at a time, straight from the definition, in f64.
    fn reference(s: &AttnShape, q: &[f32], k: &[f32], v: &[f32], pos: usize) -> Vec<f32> {
        let hd = s.head_dim;
        let tokens = q.len() / (s.n_q * hd);
        let mut out = vec![0.0f32; q.len()];
        for t in 0..tokens {
            for h in 0..s.n_q {
                let kv = (s.q_start + h) / s.group - s.kv_start;
                let qh = &q[(t * s.n_q + h) * hd..][..hd];
                let n = pos + t + 1;
                let at = |j: usize| (j * s.n_kv + kv) * hd;
                let scores: Vec<f64> = (0..n)
                    .map(|j| {
                        let d: f64 = qh
                            .iter()
                            .zip(&k[at(j)..at(j) + hd])
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum();
                        d / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let o: f64 = (0..n).map(|j| e[j] / sum * v[at(j) + d] as f64).sum();
                    out[(t * s.n_q + h) * hd + d] = o as f32;
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn grouped_heads_match_the_definition_also_when_a_split_starts_mid_group() {
        // 6 Q heads in groups of 3 over 2 KV heads; then a tensor-split
        // node owning Q heads 2..5 (reading KV heads 0 and 1).
        let whole = AttnShape {
            head_dim: 16,
            n_q: 6,
            n_kv: 2,
            q_start: 0,
            kv_start: 0,
            group: 3,
        };
        let part = AttnShape {
            n_q: 3,
            q_start: 2,
            ..whole
        };
        for s in [&whole, &part] {
            let (tokens, pos) = (5, 7);
            let q = values(tokens * s.n_q * s.head_dim, 1);
            let k = values((pos + tokens) * s.n_kv * s.head_dim, 2);
            let v = values((pos + tokens) * s.n_kv * s.head_dim, 3);
            let mut out = vec![0.0f32; q.len()];
            attend(s, &q, &k, &v, pos, &mut out);
            let want = reference(s, &q, &k, &v, pos);
            let worst = out
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "q_start {}: off by {worst}", s.q_start);
        }
    }
}
