//! Models the plan tests share: SmolLM2's real summary (from the model store,
//! through `smollm2_path`) and hand-built summaries of other shapes.

use std::sync::OnceLock;

use super::summary::ModelSummary;
use super::NodeBudget;
use crate::model::config::{Arch, ModelConfig, RopeScaling, RopeStyle};
use crate::model::gguf::{GgmlType, GgufModel};
use crate::model::store::testutil::smollm2_path;

pub fn smollm2_summary() -> ModelSummary {
    static SUMMARY: OnceLock<ModelSummary> = OnceLock::new();
    SUMMARY
        .get_or_init(|| {
            let file = GgufModel::open(smollm2_path()).unwrap();
            ModelSummary::from_gguf(&file).unwrap()
        })
        .clone()
}

/// A llama config; `heads` is (Q heads, KV heads, head_dim).
pub fn config(
    name: &str,
    n_layers: usize,
    hidden: usize,
    heads: (usize, usize, usize),
    ffn: usize,
    vocab: usize,
    tied_embeddings: bool,
) -> ModelConfig {
    ModelConfig {
        arch: Arch::Llama,
        name: name.into(),
        n_layers,
        hidden,
        n_heads: heads.0,
        n_kv_heads: heads.1,
        head_dim: heads.2,
        ffn,
        vocab,
        train_context: 4096,
        rms_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_dim: heads.2,
        rope_style: RopeStyle::Interleaved,
        rope_scaling: RopeScaling::None,
        attn_bias: false,
        qk_norm: false,
        tied_embeddings,
        moe: None,
    }
}

/// A small untied Q4_0 llama.
pub fn synthetic_llama() -> ModelSummary {
    ModelSummary::synthetic(
        config("tiny-llama", 4, 256, (8, 4, 32), 512, 1000, false),
        GgmlType::Q4_0,
    )
}

/// Qwen2-0.5B's attention: 14 Q heads over 2 KV heads, biases, tied, Q8_0.
pub fn qwen2_like() -> ModelSummary {
    let mut c = config("qwen2-like", 24, 896, (14, 2, 64), 4864, 151_936, true);
    c.arch = Arch::Qwen2;
    c.attn_bias = true;
    c.rope_style = RopeStyle::Neox;
    ModelSummary::synthetic(c, GgmlType::Q8_0)
}

/// TinyLlama's shape in Q4_K: 256-wide blocks, head_dim 64.
pub fn kquant_model() -> ModelSummary {
    ModelSummary::synthetic(
        config("tinyllama-k", 22, 2048, (32, 8, 64), 5632, 32_000, false),
        GgmlType::Q4K,
    )
}

/// Llama-3-70B's shape in Q4_K.
pub fn llama70b() -> ModelSummary {
    static SUMMARY: OnceLock<ModelSummary> = OnceLock::new();
    SUMMARY
        .get_or_init(|| {
            ModelSummary::synthetic(
                config("llama3-70b", 80, 8192, (64, 8, 128), 28_672, 128_256, false),
                GgmlType::Q4K,
            )
        })
        .clone()
}

/// Nodes named n0, n1, ... with the given budgets in MiB.
pub fn nodes_mib(budgets: &[f64]) -> Vec<NodeBudget> {
    budgets
        .iter()
        .enumerate()
        .map(|(i, &m)| NodeBudget {
            name: format!("n{i}"),
            budget_bytes: (m * 1024.0 * 1024.0) as u64,
            speed: 1.0,
        })
        .collect()
}

/// A qwen3moe config: `experts` of width `expert_ffn`, `used` per token.
pub fn moe_config(
    name: &str,
    hidden: usize,
    experts: usize,
    used: usize,
    expert_ffn: usize,
) -> ModelConfig {
    ModelConfig {
        arch: Arch::Qwen3Moe,
        qk_norm: true,
        rope_style: RopeStyle::Neox,
        moe: Some(crate::model::config::MoeConfig {
            n_experts: experts,
            n_experts_used: used,
            expert_ffn,
            norm_topk: true,
            shared_expert: false,
            dense_layers: Vec::new(),
        }),
        ..config(name, 4, hidden, (16, 4, 128), 6144, 2048, false)
    }
}

/// Nodes with budgets in bytes, named node1, node2, ...
pub fn budgets(bytes: &[u64]) -> Vec<NodeBudget> {
    bytes
        .iter()
        .enumerate()
        .map(|(i, &b)| NodeBudget {
            name: format!("node{}", i + 1),
            budget_bytes: b,
            speed: 1.0,
        })
        .collect()
}
