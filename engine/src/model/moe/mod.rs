//! A mixture-of-experts FFN: the router picks `k` of `n` experts per token,
//! and the token's FFN output is the weighted sum of theirs (llama.cpp's
//! `build_moe_ffn` with softmax gating).
//!
//! Expert weights keep GGUF's order, three-dimensional with experts
//! outermost, so one expert's gate, up or down matrix is a contiguous run of
//! rows: a view of the stack, never a copy of its own. Where the CPU has
//! interleaved kernels, the stack is interleaved at load in groups that do
//! not cross experts, like the dense weights.
//!
//! A process owns a range of experts (the expert layout) and a range of
//! each one's FFN columns (the tensor layout); it runs only the routed
//! tokens through the experts it owns and leaves unrounded f64 partial
//! sums, which the all-reduce adds across processes.
//!
//! Decode reads only the chosen experts' bytes. Prefill groups the batch's
//! tokens by expert, so each expert's weights stream once per batch.

use std::ops::Range;

use super::config::MoeConfig;
use super::ops::swiglu_in_place;
use super::weights::FfnWeights;
use crate::kernels::interleave::ROWS;
use crate::kernels::{matmul, matmul_each, matmul_partial, MatmulScratch, Weight};
use crate::shard::slice::slice_rows;

/// llama.cpp clamps the sum of the chosen weights before dividing by it.
const MIN_WEIGHT_SUM: f32 = 6.103_515_6e-5;

/// The router and the experts one process owns in one layer.
pub struct MoeWeights {
    /// Global indices of the owned experts.
    pub experts: Range<usize>,
    /// `n_experts x hidden`, replicated on every process that owns experts.
    pub router: Option<Weight>,
    /// The owned experts stacked (views into the 3-D tensors).
    pub stacked: Option<FfnWeights>,
    /// One FFN per owned expert, views of `stacked`.
    pub per_expert: Vec<FfnWeights>,
    /// qwen2moe: the shared expert's scalar gate, `sigmoid(shared_gate · x)`.
    pub shared_gate: Option<Vec<f32>>,
}

impl MoeWeights {
    /// `stacked` holds `experts.len()` experts, each `rows / n` rows of gate
    /// and up and `hidden` rows of down.
    pub fn new(
        experts: Range<usize>,
        owned: Option<(Weight, FfnWeights)>,
        shared_gate: Option<Vec<f32>>,
        hidden: usize,
    ) -> Result<Self, String> {
        let Some((router, stacked)) = owned else {
            return Ok(Self {
                experts: 0..0,
                router: None,
                stacked: None,
                per_expert: Vec::new(),
                shared_gate,
            });
        };
        let n = experts.len();
        let width = stacked.gate.rows / n.max(1);
        let stacked = FfnWeights {
            gate: interleaved_by_expert(stacked.gate, width),
            up: interleaved_by_expert(stacked.up, width),
            down: interleaved_by_expert(stacked.down, hidden),
        };
        let view = |w: &Weight, rows: usize, e: usize| {
            slice_rows(w, e * rows..(e + 1) * rows).map_err(|e| e.to_string())
        };
        let per_expert = (0..n)
            .map(|e| {
                Ok(FfnWeights {
                    gate: view(&stacked.gate, width, e)?,
                    up: view(&stacked.up, width, e)?,
                    down: view(&stacked.down, hidden, e)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            experts,
            router: Some(router),
            stacked: Some(stacked),
            per_expert,
            shared_gate,
        })
    }

    pub fn byte_len(&self) -> usize {
        let router = self.router.as_ref().map_or(0, |w| w.byte_len());
        let stacked = self.stacked.as_ref().map_or(0, |s| {
            s.gate.byte_len() + s.up.byte_len() + s.down.byte_len()
        });
        router + stacked + self.shared_gate.as_ref().map_or(0, |g| g.len() * 4)
    }
}

/// The stacked experts in the layout the kernels run fastest, as the dense
/// weights are (`Weight::interleaved`: one copy, the file's pages released
/// as it is made), when every expert's rows are whole groups of
/// [`ROWS`]: a group straddling two experts would leave no expert a view
/// of its own rows. Otherwise, or where this CPU has no such layout, the
/// file's layout.
fn interleaved_by_expert(w: Weight, rows_per_expert: usize) -> Weight {
    if rows_per_expert.is_multiple_of(ROWS) {
        w.interleaved().unwrap_or(w)
    } else {
        w
    }
}

/// The experts chosen for one token and their weights, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub experts: Vec<usize>,
    pub weights: Vec<f32>,
    /// Softmax probability of the k-th choice minus the (k+1)-th: a small
    /// margin means rounding could flip which expert runs.
    pub margin: f32,
}

/// Softmax over the router's logits, the top `k`, renormalised if the model
/// says so. Ties go to the lower expert index.
pub fn route(logits: &[f32], config: &MoeConfig) -> Routing {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = probs.iter().sum();
    for p in &mut probs {
        *p /= sum;
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let k = config.n_experts_used.min(order.len());
    let experts = order[..k].to_vec();
    let mut weights: Vec<f32> = experts.iter().map(|&e| probs[e]).collect();
    if config.norm_topk {
        let total = weights.iter().sum::<f32>().max(MIN_WEIGHT_SUM);
        for w in &mut weights {
            *w /= total;
        }
    }
    let margin = match order.get(k) {
        Some(&next) if k > 0 => probs[order[k - 1]] - probs[next],
        _ => f32::INFINITY,
    };
    Routing {
        experts,
        weights,
        margin,
    }
}

/// What one process's experts did in one call, for `:stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpertLoad {
    /// (token, expert) pairs routed to experts this process owns.
    pub routed: u64,
    /// (token, expert) pairs routed anywhere.
    pub total: u64,
}

/// The most tokens one expert runs at once. A prefill batch's tokens go
/// to each expert in chunks of this many, so the expert buffers (gathered
/// rows, gate, up and down) hold at most this many rows whatever the
/// routing, and the plan can predict them (`shard/plan/memory.rs`). A
/// chunk still streams an expert's weights once for 64 tokens; rows do not
/// depend on the batch they are in, so the sums are the same bits.
pub const EXPERT_CHUNK: usize = 64;

/// Buffers reused across layers and calls.
#[derive(Default)]
pub struct MoeScratch {
    logits: Vec<f32>,
    x: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    down: Vec<f64>,
}

/// Adds this process's share of the MoE FFN of `xn` (`tokens x hidden`,
/// normalised) into `out` (f64 partial sums, `tokens x hidden`).
pub fn moe_ffn(
    w: &MoeWeights,
    config: &MoeConfig,
    xn: &[f32],
    tokens: usize,
    out: &mut [f64],
    s: &mut MoeScratch,
    mm: &mut MatmulScratch,
) -> ExpertLoad {
    let mut load = ExpertLoad {
        routed: 0,
        total: (tokens * config.n_experts_used) as u64,
    };
    let Some(router) = &w.router else {
        return load;
    };
    let hidden = xn.len() / tokens.max(1);
    s.logits.resize(tokens * config.n_experts, 0.0);
    matmul(router, xn, tokens, &mut s.logits, mm);
    // Per owned expert, the (token, weight) pairs routed to it.
    let mut assigned: Vec<Vec<(usize, f32)>> = vec![Vec::new(); w.experts.len()];
    for (t, logits) in s.logits.chunks_exact(config.n_experts).enumerate() {
        let r = route(logits, config);
        for (&e, &wt) in r.experts.iter().zip(&r.weights) {
            if w.experts.contains(&e) {
                assigned[e - w.experts.start].push((t, wt));
            }
        }
    }
    for (ffn, all_routed) in w.per_expert.iter().zip(&assigned) {
        load.routed += all_routed.len() as u64;
        for routed in all_routed.chunks(EXPERT_CHUNK) {
            expert_rows(ffn, routed, xn, hidden, out, s, mm);
        }
    }
    load
}

/// Runs one expert on the `routed` tokens (at most [`EXPERT_CHUNK`]) and
/// adds its weighted rows into `out`.
fn expert_rows(
    ffn: &FfnWeights,
    routed: &[(usize, f32)],
    xn: &[f32],
    hidden: usize,
    out: &mut [f64],
    s: &mut MoeScratch,
    mm: &mut MatmulScratch,
) {
    let n = routed.len();
    s.x.clear();
    for &(t, _) in routed {
        s.x.extend_from_slice(&xn[t * hidden..(t + 1) * hidden]);
    }
    let width = ffn.gate.rows;
    s.gate.resize(n * width, 0.0);
    s.up.resize(n * width, 0.0);
    s.down.resize(n * hidden, 0.0);
    let gate_up = &mut [(&ffn.gate, &mut s.gate[..]), (&ffn.up, &mut s.up[..])];
    matmul_each(gate_up, &s.x, n, mm);
    swiglu_in_place(&mut s.gate, &s.up);
    matmul_partial(&ffn.down, &s.gate, n, &mut s.down, mm);
    for (&(t, wt), row) in routed.iter().zip(s.down.chunks_exact(hidden)) {
        let dst = &mut out[t * hidden..(t + 1) * hidden];
        for (o, &v) in dst.iter_mut().zip(row) {
            *o += wt as f64 * v;
        }
    }
}

/// qwen2moe's shared-expert gate for each token: `sigmoid(gate · x)`.
pub fn shared_expert_scales(gate: &[f32], xn: &[f32], hidden: usize) -> Vec<f32> {
    xn.chunks_exact(hidden)
        .map(|x| {
            let dot: f64 = gate.iter().zip(x).map(|(&g, &v)| g as f64 * v as f64).sum();
            1.0 / (1.0 + (-(dot as f32)).exp())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(k: usize, norm: bool) -> MoeConfig {
        MoeConfig {
            n_experts: 4,
            n_experts_used: k,
            expert_ffn: 8,
            norm_topk: norm,
            shared_expert: false,
            dense_layers: Vec::new(),
        }
    }

    #[test]
    fn routing_takes_the_top_k_and_renormalises() {
        let r = route(&[0.0, 2.0, 1.0, -1.0], &cfg(2, true));
        assert_eq!(r.experts, vec![1, 2]);
        assert!((r.weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let e = std::f32::consts::E;
        assert!((r.weights[0] - e / (e + 1.0)).abs() < 1e-6, "{r:?}");
        assert!(r.margin > 0.0);
    }

    #[test]
    fn without_renormalising_weights_are_softmax_probabilities() {
        let r = route(&[0.0, 0.0, 0.0, 0.0], &cfg(2, false));
        // Ties go to the lower index; every probability is a quarter.
        assert_eq!(r.experts, vec![0, 1]);
        assert_eq!(r.weights, vec![0.25, 0.25]);
        assert_eq!(r.margin, 0.0);
    }

    #[test]
    fn shared_gate_is_a_sigmoid() {
        let s = shared_expert_scales(&[1.0, 1.0], &[0.0, 0.0, 1.0, -3.0], 2);
        assert_eq!(s[0], 0.5);
        assert!((s[1] - 1.0 / (1.0 + 2.0f32.exp())).abs() < 1e-6);
    }
}

#[cfg(test)]
mod forward_tests;
