//! The decoder-only transformer forward pass (llama, qwen2, qwen3) over the
//! part of the model a [`LocalLayout`] names.
//!
//! The pass is split at the points where a distributed run exchanges data:
//! [`Transformer::embed`] (token ids in), [`Transformer::forward_layers`]
//! (which calls an [`AllReduce`] after each row-parallel projection), and
//! [`Transformer::head`] (logits out). One process running the whole model
//! composes them in [`Transformer::forward`].

use std::time::Instant;

use super::attention::{attend, AttnShape};
use super::config::ModelConfig;
use super::error::ModelError;
use super::kv_cache::KvCache;
use super::kv_type::KvType;
use super::layout::LocalLayout;
use super::moe::{moe_ffn, shared_expert_scales, ExpertLoad, MoeScratch};
use super::ops::{rms_norm, rms_norm_in_place, swiglu_in_place, Rope};
use super::segments::{Piece, Segment};
use super::weights::ModelWeights;
use crate::kernels::{matmul, matmul_each, matmul_partial, MatmulScratch};

/// The most prompt tokens one pass through the layers takes at once (as
/// llama.cpp's default batch); longer prompts run in batches of this size.
pub const PREFILL_BATCH: usize = 512;

/// Sums partial activations across the processes sharing a layer. The sum
/// must come out bit-identical on every participant. Partials are the f64
/// sums of row-parallel matmuls, rounded to f32 only after the reduction,
/// so a split layer gives the same f32 as the whole one.
pub trait AllReduce {
    fn all_reduce(&mut self, buf: &mut [f64]) -> Result<(), ModelError>;
}

/// The single-process case: nothing to sum with.
pub struct NoReduce;

impl AllReduce for NoReduce {
    fn all_reduce(&mut self, _buf: &mut [f64]) -> Result<(), ModelError> {
        Ok(())
    }
}

pub struct Transformer {
    config: ModelConfig,
    layout: LocalLayout,
    weights: ModelWeights,
    cache: KvCache,
    rope: Rope,
    scratch: MatmulScratch,
    moe_scratch: MoeScratch,
    /// Tokens routed to this process's experts since it was made.
    expert_load: ExpertLoad,
    /// When each MoE FFN of the last call started, and its seconds.
    expert_spans: Vec<(Instant, f64)>,
}

impl Transformer {
    /// `context` caps the sequence length (KV cache positions), stored at
    /// precision `kv`.
    pub fn new(
        config: ModelConfig,
        layout: LocalLayout,
        weights: ModelWeights,
        context: usize,
        kv: KvType,
    ) -> Self {
        let kv_row = layout.kv_heads(&config).len() * config.head_dim;
        let rope = Rope::new(
            config.rope_style,
            config.rope_dim,
            config.head_dim,
            config.rope_theta,
            &config.rope_scaling,
        );
        Self {
            cache: KvCache::new(layout.layers.len(), kv_row, context, kv),
            config,
            layout,
            weights,
            rope,
            scratch: MatmulScratch::default(),
            moe_scratch: MoeScratch::default(),
            expert_load: ExpertLoad::default(),
            expert_spans: Vec::new(),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn layout(&self) -> &LocalLayout {
        &self.layout
    }

    pub fn weights(&self) -> &ModelWeights {
        &self.weights
    }

    /// (token, expert) pairs routed to this process's experts, and in all,
    /// since it was made (zero for a dense model).
    pub fn expert_load(&self) -> ExpertLoad {
        self.expert_load
    }

    /// When each routed-expert FFN of the last [`Self::forward_layers`] call
    /// started, and how many seconds it took (for `:trace`).
    pub fn expert_spans(&self) -> &[(Instant, f64)] {
        &self.expert_spans
    }

    /// Starts the expert counters again (with the other metrics).
    pub fn reset_expert_load(&mut self) {
        self.expert_load = ExpertLoad::default();
    }

    /// The expert counters as metrics, `None` for a dense model.
    pub fn expert_metrics(&self) -> Option<crate::cluster::messages::ExpertMetrics> {
        self.config.moe.as_ref()?;
        Some(crate::cluster::messages::ExpertMetrics {
            owned: self.layout.experts.clone(),
            routed: self.expert_load.routed,
            total: self.expert_load.total,
        })
    }

    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Exchanges the KV cache for `other`, so one set of weights can serve
    /// several sequences, each with its own cache.
    pub fn swap_cache(&mut self, other: &mut KvCache) {
        std::mem::swap(&mut self.cache, other);
    }

    /// An empty KV cache shaped like this process's own.
    pub fn new_cache(&self) -> KvCache {
        let kv_row = self.layout.kv_heads(&self.config).len() * self.config.head_dim;
        KvCache::new(
            self.layout.layers.len(),
            kv_row,
            self.cache.context(),
            self.cache.kind(),
        )
    }

    /// Positions already in the KV cache.
    pub fn position(&self) -> usize {
        self.cache.len()
    }

    /// Forgets every position from `pos` on (0 starts a new sequence).
    pub fn truncate(&mut self, pos: usize) {
        self.cache.truncate(pos);
    }

    /// Token ids to embeddings, `tokens x hidden`.
    pub fn embed(&self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let embd =
            self.weights.token_embd.as_ref().ok_or_else(|| {
                ModelError::Config("this process holds no token embedding".into())
            })?;
        let h = self.config.hidden;
        let mut x = vec![0.0f32; tokens.len() * h];
        for (&id, row) in tokens.iter().zip(x.chunks_exact_mut(h)) {
            if id as usize >= embd.rows {
                return Err(ModelError::BadToken {
                    id,
                    vocab: embd.rows,
                });
            }
            embd.dequantize_row(id as usize, row);
        }
        Ok(x)
    }

    /// Runs the owned layers on `x` (`tokens x hidden`, positions `pos..`) in
    /// place, appending to the KV cache. A long prompt runs in batches of
    /// [`PREFILL_BATCH`] tokens, so its working buffers stay that size
    /// whatever the prompt's length (what the memory prediction counts);
    /// every member of a tensor group cuts the same batches.
    pub fn forward_layers(
        &mut self,
        x: &mut [f32],
        tokens: usize,
        pos: usize,
        reduce: &mut dyn AllReduce,
    ) -> Result<(), ModelError> {
        let end = pos + tokens;
        if end > self.cache.context() {
            return Err(ModelError::ContextFull {
                needed: end,
                context: self.cache.context(),
            });
        }
        if pos > self.cache.len() {
            return Err(ModelError::Other(format!(
                "position {pos} skips ahead of the {} cached positions",
                self.cache.len()
            )));
        }
        let h = self.config.hidden;
        if x.len() != tokens * h {
            return Err(ModelError::Other(format!(
                "{} activations for {tokens} tokens of width {h}",
                x.len()
            )));
        }
        self.expert_spans.clear();
        if tokens == 0 {
            return Ok(());
        }
        let mut own = [Segment {
            seq: 0,
            rows: tokens,
            pos,
            cache: None,
        }];
        self.run_segments(x, &mut own, reduce)
    }

    /// Forgets the expert spans of the last call (a new pass starts).
    pub(super) fn clear_expert_spans(&mut self) {
        self.expert_spans.clear();
    }

    /// Runs rows `pieces` (at most [`PREFILL_BATCH`] in all) through the
    /// owned layers as one batch: every matmul over all rows at once, RoPE
    /// at each row's own position, KV append and attention per piece on its
    /// segment's cache. Checks were made by the caller.
    pub(super) fn forward_chunk(
        &mut self,
        x: &mut [f32],
        pieces: &[Piece],
        segments: &mut [Segment],
        reduce: &mut dyn AllReduce,
    ) -> Result<(), ModelError> {
        let tokens: usize = pieces.iter().map(|p| p.rows).sum();
        let c = &self.config;
        let (h, hd) = (c.hidden, c.head_dim);
        let kv = self.layout.kv_heads(c);
        let shape = AttnShape {
            head_dim: hd,
            n_q: self.layout.q_heads.len(),
            n_kv: kv.len(),
            q_start: self.layout.q_heads.start,
            kv_start: kv.start,
            group: c.group_size(),
        };
        let (qd, kvd, nf) = (shape.n_q * hd, shape.n_kv * hd, self.layout.ffn.len());
        let mut xn = vec![0.0f32; tokens * h];
        let mut q = vec![0.0f32; tokens * qd];
        let mut k = vec![0.0f32; tokens * kvd];
        let mut v = vec![0.0f32; tokens * kvd];
        let mut attn = vec![0.0f32; tokens * qd];
        let mut proj = vec![0.0f64; tokens * h];
        let mut gate = vec![0.0f32; tokens * nf];
        let mut up = vec![0.0f32; tokens * nf];
        let half = c.rope_dim / 2;
        let (mut cos, mut sin) = (vec![0.0f32; tokens * half], vec![0.0f32; tokens * half]);
        let row_positions = pieces.iter().flat_map(|p| p.pos..p.pos + p.rows);
        for (t, at) in row_positions.enumerate() {
            self.rope.angles(
                at,
                &mut cos[t * half..(t + 1) * half],
                &mut sin[t * half..(t + 1) * half],
            );
        }

        for (li, lw) in self.weights.layers.iter().enumerate() {
            rms_norm(x, &lw.attn_norm, c.rms_eps, &mut xn);
            let s = &mut self.scratch;
            let qkv = &mut [
                (&lw.wq, &mut q[..]),
                (&lw.wk, &mut k[..]),
                (&lw.wv, &mut v[..]),
            ];
            matmul_each(qkv, &xn, tokens, s);
            add_bias(&mut q, lw.bq.as_deref());
            add_bias(&mut k, lw.bk.as_deref());
            add_bias(&mut v, lw.bv.as_deref());
            if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
                rms_norm_in_place(&mut q, qn, c.rms_eps);
                rms_norm_in_place(&mut k, kn, c.rms_eps);
            }
            for t in 0..tokens {
                let (cs, sn) = (
                    &cos[t * half..(t + 1) * half],
                    &sin[t * half..(t + 1) * half],
                );
                self.rope.apply(&mut q[t * qd..(t + 1) * qd], cs, sn);
                self.rope.apply(&mut k[t * kvd..(t + 1) * kvd], cs, sn);
            }
            let mut first = 0;
            for p in pieces {
                let cache: &mut KvCache = match segments[p.segment].cache.as_deref_mut() {
                    Some(own) => own,
                    None => &mut self.cache,
                };
                let rows = first..first + p.rows;
                let (qr, kr) = (
                    qd * rows.start..qd * rows.end,
                    kvd * rows.start..kvd * rows.end,
                );
                cache.append(li, p.pos, &k[kr.clone()], &v[kr]);
                let (kc, vc) = cache.layer(li, p.pos + p.rows);
                attend(&shape, &q[qr.clone()], kc, vc, p.pos, &mut attn[qr]);
                first = rows.end;
            }
            matmul_partial(&lw.wo, &attn, tokens, &mut proj, s);
            if !self.layout.replicated_attention {
                reduce.all_reduce(&mut proj)?;
            }
            add_rounded(x, &proj);

            rms_norm(x, &lw.ffn_norm, c.rms_eps, &mut xn);
            proj.fill(0.0);
            if let Some(ffn) = &lw.ffn {
                matmul_each(
                    &mut [(&ffn.gate, &mut gate[..]), (&ffn.up, &mut up[..])],
                    &xn,
                    tokens,
                    s,
                );
                swiglu_in_place(&mut gate, &up);
                matmul_partial(&ffn.down, &gate, tokens, &mut proj, s);
            }
            if let (Some(moe), Some(mc)) = (&lw.moe, &c.moe) {
                if let Some(g) = &moe.shared_gate {
                    // qwen2moe: the shared expert's output, scaled per token.
                    let scales = shared_expert_scales(g, &xn, h);
                    for (row, scale) in proj.chunks_exact_mut(h).zip(scales) {
                        row.iter_mut().for_each(|v| *v *= scale as f64);
                    }
                }
                let started = Instant::now();
                let load = moe_ffn(moe, mc, &xn, tokens, &mut proj, &mut self.moe_scratch, s);
                self.expert_spans
                    .push((started, started.elapsed().as_secs_f64()));
                self.expert_load.routed += load.routed;
                self.expert_load.total += load.total;
            }
            reduce.all_reduce(&mut proj)?;
            add_rounded(x, &proj);
        }
        for p in pieces {
            match segments[p.segment].cache.as_deref_mut() {
                Some(own) => own.commit(p.pos + p.rows),
                None => self.cache.commit(p.pos + p.rows),
            }
        }
        Ok(())
    }

    /// Final norm and output head for one hidden row: this process's slice
    /// of the vocabulary logits.
    pub fn head(&mut self, x_last: &[f32]) -> Result<Vec<f32>, ModelError> {
        let mut out = Vec::new();
        self.head_rows(x_last, &mut out)?;
        Ok(out)
    }

    /// [`Self::head`] for several hidden rows at once (one matmul, so the
    /// head's weights are read once): `out` becomes `rows x` this process's
    /// vocabulary slice, each row the bits [`Self::head`] gives it alone.
    pub fn head_rows(&mut self, rows: &[f32], out: &mut Vec<f32>) -> Result<(), ModelError> {
        let (Some(norm), Some(w)) = (&self.weights.output_norm, &self.weights.output) else {
            return Err(ModelError::Config(
                "this process holds no output head".into(),
            ));
        };
        let h = self.config.hidden;
        if rows.is_empty() || !rows.len().is_multiple_of(h) {
            return Err(ModelError::Other(format!(
                "{} values are not whole hidden rows of width {h}",
                rows.len()
            )));
        }
        let n = rows.len() / h;
        let mut xn = vec![0.0f32; rows.len()];
        rms_norm(rows, norm, self.config.rms_eps, &mut xn);
        out.clear();
        out.resize(n * w.rows, 0.0);
        matmul(w, &xn, n, out, &mut self.scratch);
        Ok(())
    }

    /// The whole model in this process: logits for the last of `tokens`.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Other("no tokens to run".into()));
        }
        let mut x = self.embed(tokens)?;
        self.forward_layers(&mut x, tokens.len(), pos, &mut NoReduce)?;
        let h = self.config.hidden;
        let last = &x[(tokens.len() - 1) * h..];
        self.head(last)
    }
}

fn add_bias(x: &mut [f32], bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in x.chunks_exact_mut(b.len()) {
            for (v, &bv) in row.iter_mut().zip(b) {
                *v += bv;
            }
        }
    }
}

/// The residual add: the reduced f64 sum is rounded to f32 once, here.
fn add_rounded(x: &mut [f32], y: &[f64]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b as f32;
    }
}
