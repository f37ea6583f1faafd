//! What one node does per token under a layout, counted from the model's
//! tensors: weight bytes per weight type, matmul calls, KV bytes per cached
//! position, attention width. Pure arithmetic on the summary; the cost
//! model (`terms`) prices it.

use serde::Serialize;

use super::super::error::PlanError;
use super::super::memory::weight_slices;
use super::super::summary::ModelSummary;
use crate::model::gguf::GgmlType;
use crate::model::kv_type::KvType;
use crate::model::layout::LocalLayout;

/// One weight type's share of a node's per-token work.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TypeWork {
    pub dtype: GgmlType,
    /// Bytes of weights read per token (experts: the expected routed share).
    pub bytes: f64,
    /// Weight rows those bytes come in (each costs the kernel a little
    /// beyond its bytes).
    pub rows: f64,
}

/// A node's work per token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeWork {
    pub types: Vec<TypeWork>,
    /// Matmul calls per token (each pays the thread pool's dispatch).
    pub matmuls: usize,
    /// KV cache bytes read per cached position per token.
    pub kv_bytes_per_position: f64,
    /// Query heads x head_dim x layers: attention's multiply-adds per cached
    /// position, for the scores and again for the values.
    pub attention_width: f64,
    /// Layers run.
    pub layers: usize,
}

impl NodeWork {
    pub fn weight_bytes(&self) -> f64 {
        self.types.iter().map(|t| t.bytes).sum()
    }
}

/// The work of a node running `layout` with a KV cache of `kv`.
pub fn node_work(
    model: &ModelSummary,
    layout: &LocalLayout,
    kv: KvType,
) -> Result<NodeWork, PlanError> {
    let c = &model.config;
    let (used, n_experts) = c.moe.as_ref().map_or((1.0, 1.0), |m| {
        (m.n_experts_used as f64, m.n_experts.max(1) as f64)
    });
    let mut types: Vec<TypeWork> = Vec::new();
    for slice in weight_slices(model, layout)? {
        let share = if slice.name == "token_embd.weight" {
            // A lookup reads one row; a tied head reads the node's vocabulary rows.
            if layout.head && c.tied_embeddings {
                layout.vocab.len() as f64 / c.vocab.max(1) as f64
            } else {
                0.0
            }
        } else if slice.routed {
            used / n_experts
        } else {
            1.0
        };
        let (bytes, rows) = (slice.bytes as f64 * share, slice.rows as f64 * share);
        match types.iter_mut().find(|t| t.dtype == slice.dtype) {
            Some(t) => {
                t.bytes += bytes;
                t.rows += rows;
            }
            None => types.push(TypeWork {
                dtype: slice.dtype,
                bytes,
                rows,
            }),
        }
    }
    types.retain(|t| t.bytes > 0.0);
    let layers = layout.layers.len();
    // q, k, v, output, gate, up, down; a MoE layer adds its router.
    let per_layer = if c.moe.is_some() { 8 } else { 7 };
    let kv_heads = layout.kv_heads(c).len();
    Ok(NodeWork {
        types,
        matmuls: layers * per_layer + usize::from(layout.head),
        kv_bytes_per_position: (2 * layers * kv.row_bytes(kv_heads * c.head_dim)) as f64,
        attention_width: (layout.q_heads.len() * c.head_dim * layers) as f64,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::plan::fixtures::smollm2_summary;

    #[test]
    fn a_whole_smollm2_reads_its_layers_and_tied_head_but_not_a_lookup() {
        let model = smollm2_summary();
        let whole = LocalLayout::whole(&model.config);
        let w = node_work(&model, &whole, KvType::F16).unwrap();
        // SmolLM2 ties its head to the embedding: the head reads the whole
        // table once per token, so every byte counts.
        assert_eq!(w.weight_bytes(), model.total_weight_bytes() as f64);
        assert_eq!(w.matmuls, 30 * 7 + 1);
        // 3 KV heads x 64 x f16 x (K and V) x 30 layers.
        assert_eq!(w.kv_bytes_per_position, (3 * 64 * 2 * 2 * 30) as f64);
        assert_eq!(w.attention_width, (9 * 64 * 30) as f64);
        // A first stage without the head reads no embedding table.
        let first = LocalLayout {
            layers: 0..15,
            head: false,
            vocab: 0..0,
            ..whole.clone()
        };
        let f = node_work(&model, &first, KvType::F16).unwrap();
        let embd = model.tensor("token_embd.weight").unwrap().bytes() as f64;
        let norms = (30 * 2 * 576 * 4 + 576 * 4) as f64;
        let layer_bytes = w.weight_bytes() - embd;
        assert!(
            (f.weight_bytes() - layer_bytes / 2.0).abs() < norms,
            "{} vs {}",
            f.weight_bytes(),
            layer_bytes / 2.0
        );
        assert_eq!(f.matmuls, 15 * 7);
    }
}
