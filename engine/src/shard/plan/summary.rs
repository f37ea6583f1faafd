//! What the planner knows of a model: its config and each tensor's type and
//! shape. Planning never touches tensor data, so a summary is all it needs,
//! and a summary can be written by hand for shapes no file on disk has.

use serde::Serialize;

use super::error::PlanError;
use crate::model::config::ModelConfig;
use crate::model::gguf::{GgmlType, GgufModel};
use crate::model::weights::dense_ffn_names;

/// One tensor as a matrix: `cols` is the contiguous (innermost) dimension,
/// `rows` the product of the others (1 for a vector).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSummary {
    pub name: String,
    pub dtype: GgmlType,
    pub rows: usize,
    pub cols: usize,
}

impl TensorSummary {
    /// Bytes of `len` values of one row. A length that is not a whole number
    /// of blocks is rounded up to one (only malformed hand-written summaries
    /// have such rows; the slicing checks report them where it matters).
    pub fn row_bytes(&self, len: usize) -> u64 {
        let blocks = len.div_ceil(self.dtype.block_len());
        (blocks * self.dtype.block_bytes()) as u64
    }

    pub fn bytes(&self) -> u64 {
        self.rows as u64 * self.row_bytes(self.cols)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    pub config: ModelConfig,
    pub tensors: Vec<TensorSummary>,
}

impl ModelSummary {
    pub fn from_gguf(file: &GgufModel) -> Result<Self, PlanError> {
        let config = ModelConfig::from_gguf(file)?;
        let tensors = file
            .tensors()
            .map(|t| {
                let (rows, cols) = t.rows_cols();
                TensorSummary {
                    name: t.name.clone(),
                    dtype: t.dtype,
                    rows,
                    cols,
                }
            })
            .collect();
        Ok(Self { config, tensors })
    }

    /// The tensors a GGUF file of this shape would hold, with every matrix
    /// in `weights` (the embedding and output head included) and norms and
    /// biases in F32: for planning shapes no file on disk has.
    pub fn synthetic(config: ModelConfig, weights: GgmlType) -> Self {
        let (h, q, kv, f) = (config.hidden, config.q_dim(), config.kv_dim(), config.ffn);
        let mut tensors = Vec::new();
        let mut add = |name: String, dtype, rows, cols| {
            tensors.push(TensorSummary {
                name,
                dtype,
                rows,
                cols,
            })
        };
        add("token_embd.weight".into(), weights, config.vocab, h);
        for l in 0..config.n_layers {
            let p = |s: &str| format!("blk.{l}.{s}");
            add(p("attn_norm.weight"), GgmlType::F32, 1, h);
            add(p("attn_q.weight"), weights, q, h);
            add(p("attn_k.weight"), weights, kv, h);
            add(p("attn_v.weight"), weights, kv, h);
            add(p("attn_output.weight"), weights, h, q);
            if config.attn_bias {
                add(p("attn_q.bias"), GgmlType::F32, 1, q);
                add(p("attn_k.bias"), GgmlType::F32, 1, kv);
                add(p("attn_v.bias"), GgmlType::F32, 1, kv);
            }
            if config.qk_norm {
                add(p("attn_q_norm.weight"), GgmlType::F32, 1, config.head_dim);
                add(p("attn_k_norm.weight"), GgmlType::F32, 1, config.head_dim);
            }
            add(p("ffn_norm.weight"), GgmlType::F32, 1, h);
            if config.has_dense_ffn(l) {
                let [gate, up, down] = dense_ffn_names(&config, l);
                add(p(gate), weights, f, h);
                add(p(up), weights, f, h);
                add(p(down), weights, h, f);
            }
            if let Some(m) = config.moe.as_ref().filter(|m| m.is_moe_layer(l)) {
                let (e, ef) = (m.n_experts, m.expert_ffn);
                add(p("ffn_gate_inp.weight"), GgmlType::F32, e, h);
                add(p("ffn_gate_exps.weight"), weights, e * ef, h);
                add(p("ffn_up_exps.weight"), weights, e * ef, h);
                add(p("ffn_down_exps.weight"), weights, e * h, ef);
                if m.shared_expert {
                    add(p("ffn_gate_inp_shexp.weight"), GgmlType::F32, 1, h);
                }
            }
        }
        add("output_norm.weight".into(), GgmlType::F32, 1, h);
        if !config.tied_embeddings {
            add("output.weight".into(), weights, config.vocab, h);
        }
        Self { config, tensors }
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorSummary> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Bytes of every tensor in the model, as stored.
    pub fn total_weight_bytes(&self) -> u64 {
        self.tensors.iter().map(TensorSummary::bytes).sum()
    }

    /// The tensor `name`, or an error saying the layout needs it.
    pub(crate) fn require(&self, name: &str) -> Result<&TensorSummary, PlanError> {
        self.tensor(name).ok_or_else(|| PlanError::MissingTensor {
            tensor: name.to_string(),
        })
    }

    /// The block every `blk.*.{suffix}` tensor's input dimension must be cut
    /// on: the least common multiple of their block lengths (types may
    /// differ by layer, as in Q4_K_M), and the type with the widest block,
    /// for messages.
    pub(crate) fn input_block(&self, suffix: &str) -> Result<(usize, GgmlType), PlanError> {
        let all: Vec<usize> = (0..self.config.n_layers).collect();
        self.input_block_in(suffix, &all)
    }

    /// As [`Self::input_block`], over the given layers only.
    pub(crate) fn input_block_in(
        &self,
        suffix: &str,
        layers: &[usize],
    ) -> Result<(usize, GgmlType), PlanError> {
        let mut block = 1;
        let mut widest = GgmlType::F32;
        for &l in layers {
            let t = self.require(&format!("blk.{l}.{suffix}"))?;
            let b = t.dtype.block_len();
            block = lcm(block, b);
            if b > widest.block_len() {
                widest = t.dtype;
            }
        }
        Ok((block, widest))
    }
}

pub(crate) fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

pub(crate) fn lcm(a: usize, b: usize) -> usize {
    if a == 0 || b == 0 {
        0
    } else {
        a / gcd(a, b) * b
    }
}
