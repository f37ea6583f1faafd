//! Which part of the model one process computes. A single node computes the
//! whole model; in tensor parallelism a node owns a range of Q heads (and the
//! KV heads they read) and a range of FFN columns; in pipeline parallelism a
//! range of layers. The forward pass only ever sees a [`LocalLayout`].

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::config::ModelConfig;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalLayout {
    /// Layers this process runs, half-open.
    pub layers: Range<usize>,
    /// Q heads this process owns (global indices), half-open.
    pub q_heads: Range<usize>,
    /// FFN intermediate columns this process owns, half-open: of the dense
    /// FFN, or of a MoE model's shared expert and dense layers.
    pub ffn: Range<usize>,
    /// Routed experts this process runs (global indices), half-open; empty
    /// for a dense model. The expert layout gives each node some experts.
    pub experts: Range<usize>,
    /// Columns of each owned expert's FFN this process computes; the tensor
    /// layout splits every expert this way.
    pub expert_ffn: Range<usize>,
    /// Output-head rows (vocabulary entries) this process computes.
    pub vocab: Range<usize>,
    /// Whether this process turns token ids into embeddings.
    pub embed: bool,
    /// Whether this process applies the final norm and output head.
    pub head: bool,
    /// Every node of the tensor group computes all heads, so the attention
    /// output is already whole and is not all-reduced. The expert layout
    /// falls back to this when block alignment forbids splitting the heads.
    #[serde(default)]
    pub replicated_attention: bool,
}

impl LocalLayout {
    pub fn whole(config: &ModelConfig) -> Self {
        Self {
            layers: 0..config.n_layers,
            q_heads: 0..config.n_heads,
            ffn: 0..config.ffn,
            experts: 0..config.moe.as_ref().map_or(0, |m| m.n_experts),
            expert_ffn: 0..config.moe.as_ref().map_or(0, |m| m.expert_ffn),
            vocab: 0..config.vocab,
            embed: true,
            head: true,
            replicated_attention: false,
        }
    }

    /// The KV heads the owned Q heads read: a GQA group is never split
    /// across KV heads, so this is a contiguous range.
    pub fn kv_heads(&self, config: &ModelConfig) -> Range<usize> {
        let g = config.group_size();
        if self.q_heads.is_empty() {
            return 0..0;
        }
        self.q_heads.start / g..(self.q_heads.end - 1) / g + 1
    }

    /// Whether the tensor-parallel parts cover the whole model (no all-reduce needed).
    pub fn is_whole_width(&self, config: &ModelConfig) -> bool {
        let whole = Self::whole(config);
        self.q_heads == whole.q_heads
            && self.ffn == whole.ffn
            && self.experts == whole.experts
            && self.expert_ffn == whole.expert_ffn
    }
}
