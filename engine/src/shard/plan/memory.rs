//! Predicted memory of one node for a layout: its weight slices, its KV
//! cache at full context, prefill scratch and a runtime baseline. Loading
//! compares this with the node's budget before anything is read, so a plan
//! that would swap is refused up front (docs/ARCHITECTURE.md, "Memory prediction").

use std::collections::HashMap;

use serde::Serialize;

use super::error::PlanError;
use super::summary::{ModelSummary, TensorSummary};
use super::KvSpec;
use crate::model::attention;
use crate::model::config::ModelConfig;
use crate::model::gguf::GgmlType;
use crate::model::layout::LocalLayout;
use crate::model::moe::EXPERT_CHUNK;
use crate::model::weights::{tensor_plan, SliceRule};

/// A node's resident memory with a shard loaded, before any prompt: the
/// binary's touched pages, the worker threads' stacks, allocator arenas,
/// the connection buffers. Measured: 9.5-10 MiB for a SmolLM2 node (idle,
/// before a load, 6 MiB).
pub const RUNTIME_OVERHEAD_BYTES: u64 = 10 << 20;

/// The largest prefill batch: tokens whose activations are alive at once.
use crate::model::segments::HEAD_ROWS;
pub use crate::model::transformer::PREFILL_BATCH;

/// Attention keeps per-thread tiles and chunk partials; this is the thread
/// count the estimate assumes.
pub const SCORE_THREADS: usize = 16;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemoryPrediction {
    pub weights: u64,
    pub kv_cache: u64,
    pub scratch: u64,
    pub overhead: u64,
}

impl MemoryPrediction {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.scratch + self.overhead
    }
}

/// What one node running `layout` with the KV cache `cache` will hold.
pub fn predict(
    model: &ModelSummary,
    layout: &LocalLayout,
    cache: KvSpec,
) -> Result<MemoryPrediction, PlanError> {
    Ok(MemoryPrediction {
        weights: weight_bytes(model, layout)?,
        kv_cache: kv_cache_bytes(&model.config, layout, cache),
        scratch: scratch_bytes(&model.config, layout, cache.context),
        overhead: RUNTIME_OVERHEAD_BYTES,
    })
}

/// Bytes of exactly the slices `layout` needs, as the loader cuts them
/// (rows: `len x row_bytes`; input columns: `rows x row_bytes(len)`). A tied
/// output head is a view of the embedding and costs nothing more.
pub fn weight_bytes(model: &ModelSummary, layout: &LocalLayout) -> Result<u64, PlanError> {
    sum_over_tensors(model, layout, slice_bytes)
}

/// One tensor slice a layout holds.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightSlice {
    pub name: String,
    pub dtype: GgmlType,
    pub bytes: u64,
    /// Rows as the kernels see them (a row of an expert counts once per expert).
    pub rows: u64,
    /// An expert tensor, of which a token reads only the routed share.
    pub routed: bool,
}

/// Each tensor slice a layout holds.
pub fn weight_slices(
    model: &ModelSummary,
    layout: &LocalLayout,
) -> Result<Vec<WeightSlice>, PlanError> {
    let mut out = Vec::new();
    sum_over_tensors(model, layout, |name, t, rule| {
        let bytes = slice_bytes(name, t, rule)?;
        let (rows, routed) = match rule {
            SliceRule::Whole | SliceRule::Cols(_) => (t.rows, false),
            SliceRule::Rows(r) => (r.len(), false),
            SliceRule::ExpertRows { experts, rows, .. } => (experts.len() * rows.len(), true),
            SliceRule::ExpertCols {
                experts,
                per_expert,
                ..
            } => (experts.len() * per_expert, true),
        };
        out.push(WeightSlice {
            name: name.to_string(),
            dtype: t.dtype,
            bytes,
            rows: rows as u64,
            routed,
        });
        Ok(bytes)
    })?;
    Ok(out)
}

/// Bytes of one tensor's slice, as the loader cuts it.
fn slice_bytes(name: &str, t: &TensorSummary, rule: &SliceRule) -> Result<u64, PlanError> {
    Ok(match rule {
        SliceRule::Whole => t.bytes(),
        SliceRule::Rows(r) => r.len() as u64 * t.row_bytes(t.cols),
        SliceRule::Cols(r) => {
            let block = t.dtype.block_len();
            if !r.start.is_multiple_of(block) || !r.end.is_multiple_of(block) {
                return Err(PlanError::Misaligned {
                    tensor: name.to_string(),
                    dtype: t.dtype.name().to_string(),
                    cols: t.cols,
                    start: r.start,
                    end: r.end,
                    block,
                });
            }
            t.rows as u64 * t.row_bytes(r.len())
        }
        SliceRule::ExpertRows { experts, rows, .. } => {
            (experts.len() * rows.len()) as u64 * t.row_bytes(t.cols)
        }
        SliceRule::ExpertCols {
            experts,
            per_expert,
            cols,
        } => {
            let block = t.dtype.block_len();
            if !cols.start.is_multiple_of(block) || !cols.end.is_multiple_of(block) {
                return Err(PlanError::Misaligned {
                    tensor: name.to_string(),
                    dtype: t.dtype.name().to_string(),
                    cols: t.cols,
                    start: cols.start,
                    end: cols.end,
                    block,
                });
            }
            (experts.len() * per_expert) as u64 * t.row_bytes(cols.len())
        }
    })
}

/// Multiply-adds per token of the weights a layout computes with: one per
/// weight element it uses. The measure of work for balancing stages, since
/// the kernels cost per element, whatever the bytes per element.
pub fn weight_elements(model: &ModelSummary, layout: &LocalLayout) -> Result<u64, PlanError> {
    let (used, n_experts) = model.config.moe.as_ref().map_or((1, 1), |m| {
        (m.n_experts_used as u64, m.n_experts.max(1) as u64)
    });
    sum_over_tensors(model, layout, |_, t, rule| {
        let (rows, cols) = (t.rows as u64, t.cols as u64);
        Ok(match rule {
            SliceRule::Whole => rows * cols,
            SliceRule::Rows(r) => r.len() as u64 * cols,
            SliceRule::Cols(r) => rows * r.len() as u64,
            // A token runs only the experts routed to it: count the
            // expected share, `used / experts` of those held.
            SliceRule::ExpertRows {
                experts, rows: r, ..
            } => experts.len() as u64 * r.len() as u64 * cols * used / n_experts,
            SliceRule::ExpertCols {
                experts,
                per_expert,
                cols: c,
            } => experts.len() as u64 * *per_expert as u64 * c.len() as u64 * used / n_experts,
        })
    })
}

/// `measure` summed over every tensor (slice) a layout needs; a missing
/// optional tensor counts nothing, a missing required one is an error.
fn sum_over_tensors(
    model: &ModelSummary,
    layout: &LocalLayout,
    mut measure: impl FnMut(&str, &TensorSummary, &SliceRule) -> Result<u64, PlanError>,
) -> Result<u64, PlanError> {
    // Indexed once per call: big models have hundreds of tensors.
    let by_name: HashMap<&str, &TensorSummary> =
        model.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut total = 0;
    for need in tensor_plan(&model.config, layout) {
        let Some(t) = by_name.get(need.name.as_str()) else {
            if need.optional {
                continue;
            }
            return Err(PlanError::MissingTensor { tensor: need.name });
        };
        total += measure(&need.name, t, &need.rule)?;
    }
    Ok(total)
}

/// Owned KV heads' row (heads x head_dim at the cache's precision) x 2 (K
/// and V) x layers x context. Replicated KV heads (more nodes than KV
/// heads) count on every node.
pub fn kv_cache_bytes(config: &ModelConfig, layout: &LocalLayout, cache: KvSpec) -> u64 {
    let row = cache
        .kv
        .row_bytes(layout.kv_heads(config).len() * config.head_dim) as u64;
    row * 2 * layout.layers.len() as u64 * cache.context as u64
}

/// Activations alive during a prefill batch of `b = min(PREFILL_BATCH,
/// context)` tokens, following the forward pass's buffers:
///
/// `4 b (3 hidden + 2 q + 2 kv + 2 ffn + rope_dim + max_rows + max_cols + router)`
/// `+ 8 b hidden (1 + 2 r) + experts + 4 HEAD_ROWS (vocab + hidden) + attention`
///
/// where q, kv and ffn are the local widths; the three hidden rows are the
/// input, its norm and the residual; `max_rows` is the matmul's transposed
/// output and `max_cols` bounds its quantized activations (4 bytes a value
/// covers f32 weights too); `router` is a MoE layer's router scores, and
/// `experts` the buffers of one expert's chunk of tokens: `min(EXPERT_CHUNK,
/// b)` rows of the gathered input (f32), gate and up (f32, local expert
/// width) and down (f64). The f64 rows are the partial sums
/// of the row-parallel projections, and, in a tensor group (`r` = 1), the
/// all-reduce's send and receive buffers. `vocab` is the local logits row of
/// a head node, [`HEAD_ROWS`] of them with their normed hidden rows (a
/// batched step runs the head for that many sequences at once; its rows
/// in all stay within the prefill batch); `attention` is [`attention::scratch_bytes`] for
/// [`SCORE_THREADS`] workers. Nothing is counted for a node that runs no layers and no
/// head. Checked against measured peak RSS in tests/memory.rs.
pub fn scratch_bytes(config: &ModelConfig, layout: &LocalLayout, context: usize) -> u64 {
    let b = PREFILL_BATCH.min(context) as u64;
    let hd = config.head_dim;
    let h = config.hidden;
    let q = layout.q_heads.len() * hd;
    let kv = layout.kv_heads(config).len() * hd;
    // A dense FFN exists where some layer has one (a MoE model may have none).
    let dense = (0..config.n_layers).any(|l| config.has_dense_ffn(l));
    let f = if dense { layout.ffn.len() } else { 0 };
    // The router's scores for every token of the batch; the expert buffers
    // hold one chunk of tokens at a time (`moe_ffn`).
    let router = config.moe.as_ref().map_or(0, |m| m.n_experts);
    let experts = config.moe.as_ref().map_or(0, |_| {
        let rows = EXPERT_CHUNK.min(b as usize) as u64;
        rows * (4 * h + 8 * layout.expert_ffn.len() + 8 * h) as u64
    });
    let mut bytes = 0u64;
    if !layout.layers.is_empty() {
        let max_rows = h.max(q).max(kv).max(f);
        let max_cols = h.max(q).max(f);
        let per_token =
            3 * h + 2 * q + 2 * kv + 2 * f + config.rope_dim + max_rows + max_cols + router;
        let reduced = if layout.is_whole_width(config) { 1 } else { 3 };
        bytes += 4 * b * per_token as u64 + 8 * b * (reduced * h) as u64 + experts;
        bytes += attention::scratch_bytes(hd, layout.q_heads.len(), context, SCORE_THREADS);
    } else if layout.embed {
        bytes += 4 * b * h as u64;
    }
    if layout.head {
        bytes += 4 * (HEAD_ROWS * (layout.vocab.len() + h)) as u64;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kv_type::KvType;
    use crate::shard::plan::fixtures::{smollm2_summary, synthetic_llama};

    #[test]
    fn whole_model_weights_are_every_tensor_smollm2() {
        let model = smollm2_summary();
        let layout = LocalLayout::whole(&model.config);
        let m = predict(&model, &layout, KvSpec::new(2048, KvType::F16)).unwrap();
        assert_eq!(m.weights, model.total_weight_bytes());
        assert_eq!(m.weights, 96_576_768);
        // 3 KV heads x 64 x 2 x 30 layers x 2048 positions x 2 bytes (f16).
        assert_eq!(m.kv_cache, 3 * 64 * 2 * 30 * 2048 * 2);
        let f32_cache = predict(&model, &layout, KvSpec::new(2048, KvType::F32)).unwrap();
        assert_eq!(f32_cache.kv_cache, 2 * m.kv_cache);
        let q8_cache = predict(&model, &layout, KvSpec::new(2048, KvType::Q8_0)).unwrap();
        // 192 values a row: 6 blocks of 34 bytes.
        assert_eq!(q8_cache.kv_cache, 6 * 34 * 2 * 30 * 2048);
        assert_eq!(m.overhead, RUNTIME_OVERHEAD_BYTES);
        let per_token = 3 * 576 + 2 * 576 + 2 * 192 + 2 * 1536 + 64 + 1536 + 1536;
        // Attention: 16 threads x (two 32x64 tiles + 8 chunks x 8 tokens x
        // 9 heads x 66), and the few-token path's 8 x 8 x 9 x 66.
        let attention = 16 * (2 * 32 * 64 + 8 * 8 * 9 * 66) + 8 * 8 * 9 * 66;
        // The head: 8 logits rows of 49152 and their 8 normed hidden rows.
        let want = 4 * (512 * per_token + attention + 8 * (49152 + 576)) + 8 * 512 * 576;
        assert_eq!(m.scratch, want as u64);
        assert_eq!(m.total(), m.weights + m.kv_cache + m.scratch + m.overhead);
    }

    #[test]
    fn sliced_weights_count_only_the_slice() {
        let model = synthetic_llama();
        let c = &model.config;
        let mut layout = LocalLayout::whole(c);
        let whole = weight_bytes(&model, &layout).unwrap();
        layout.ffn = 0..c.ffn / 2;
        let half_ffn = weight_bytes(&model, &layout).unwrap();
        let ffn_bytes: u64 = (0..c.n_layers)
            .flat_map(|l| ["ffn_gate", "ffn_up", "ffn_down"].map(|s| format!("blk.{l}.{s}.weight")))
            .map(|n| model.tensor(&n).unwrap().bytes())
            .sum();
        assert_eq!(whole - half_ffn, ffn_bytes / 2);
        // An input-column cut that is not on a block boundary is refused.
        layout.ffn = 0..c.ffn / 2 + 1;
        let err = weight_bytes(&model, &layout).unwrap_err().to_string();
        assert!(
            err.contains("ffn_down.weight") && err.contains("32-wide blocks"),
            "{err}"
        );
    }

    #[test]
    fn missing_tensor_is_named() {
        let mut model = synthetic_llama();
        model.tensors.retain(|t| t.name != "blk.1.attn_k.weight");
        let err = weight_bytes(&model, &LocalLayout::whole(&model.config)).unwrap_err();
        assert!(err.to_string().contains("'blk.1.attn_k.weight'"), "{err}");
    }
}
