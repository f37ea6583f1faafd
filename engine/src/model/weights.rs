//! The weights one process holds, looked up by GGUF tensor name and cut to
//! its [`LocalLayout`]. [`tensor_plan`] lists every tensor a layout needs and
//! how it is sliced; the loader and the coordinator that streams
//! slices to nodes share it, so they cannot disagree.

use std::ops::Range;

use super::config::ModelConfig;
use super::error::ModelError;
use super::gguf::GgufModel;
use super::layout::LocalLayout;
pub use super::moe::MoeWeights;
use crate::kernels::{Weight, WeightBytes};
use crate::shard::slice::{slice_cols, slice_rows};

/// How a tensor is cut for one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SliceRule {
    Whole,
    /// Output-dimension slice (column-parallel): contiguous rows.
    Rows(Range<usize>),
    /// Input-dimension slice (row-parallel): whole blocks of each row.
    Cols(Range<usize>),
    /// Of a 3-D expert tensor (experts stacked outermost, `per_expert` rows
    /// each): experts `experts`, and rows `rows` of each. Whole experts are
    /// one contiguous range of rows (a view); a row range within each copies.
    ExpertRows {
        experts: Range<usize>,
        per_expert: usize,
        rows: Range<usize>,
    },
    /// Experts `experts` (each `per_expert` rows), input columns `cols` of each row.
    ExpertCols {
        experts: Range<usize>,
        per_expert: usize,
        cols: Range<usize>,
    },
}

impl SliceRule {
    /// Applies the rule to a whole tensor `w`.
    pub fn apply(&self, w: &Weight) -> Result<Weight, crate::shard::slice::SliceError> {
        Ok(match self {
            SliceRule::Whole => w.clone(),
            // A vector (a bias) has one row: its output slice is a range of
            // its values.
            SliceRule::Rows(r) if w.rows == 1 => slice_cols(w, r.clone())?,
            SliceRule::Rows(r) => slice_rows(w, r.clone())?,
            SliceRule::Cols(r) => slice_cols(w, r.clone())?,
            SliceRule::ExpertRows {
                experts,
                per_expert,
                rows,
            } => {
                let whole = slice_rows(w, experts.start * per_expert..experts.end * per_expert)?;
                if *rows == (0..*per_expert) {
                    whole
                } else {
                    let parts = (0..experts.len())
                        .map(|e| {
                            slice_rows(
                                &whole,
                                e * per_expert + rows.start..e * per_expert + rows.end,
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    stack_rows(&parts)
                }
            }
            SliceRule::ExpertCols {
                experts,
                per_expert,
                cols,
            } => {
                let whole = slice_rows(w, experts.start * per_expert..experts.end * per_expert)?;
                slice_cols(&whole, cols.clone())?
            }
        })
    }
}

/// Row blocks of the same type and width, one after another (a copy).
fn stack_rows(parts: &[Weight]) -> Weight {
    let Some(first) = parts.first() else {
        return Weight {
            dtype: crate::kernels::QuantType::F32,
            rows: 0,
            cols: 0,
            data: WeightBytes::owned(Vec::new()),
        };
    };
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.byte_len()).sum());
    for p in parts {
        bytes.extend_from_slice(&p.data);
    }
    Weight {
        dtype: first.dtype,
        rows: parts.iter().map(|p| p.rows).sum(),
        cols: first.cols,
        data: WeightBytes::owned(bytes),
    }
}

/// Anything that can hand out tensors by GGUF name.
pub trait TensorSource {
    /// What to call the source in error messages (usually a file path).
    fn source_name(&self) -> String;

    /// A whole tensor as a matrix (`cols` = the contiguous dimension).
    fn tensor(&self, name: &str) -> Result<Option<Weight>, ModelError>;

    /// The tensor cut by `rule`. Sources that already hold slices override it.
    fn local_tensor(&self, name: &str, rule: &SliceRule) -> Result<Option<Weight>, ModelError> {
        let Some(w) = self.tensor(name)? else {
            return Ok(None);
        };
        let bad = |e: crate::shard::slice::SliceError| ModelError::BadTensor {
            source_name: self.source_name(),
            tensor: name.to_string(),
            problem: e.to_string(),
        };
        Ok(Some(rule.apply(&w).map_err(bad)?))
    }

    /// Drops the resident pages of tensor `name` from this process, where
    /// the source maps a file: its bytes are read back from the file if
    /// asked for again. For a reader that is done with a tensor (a
    /// coordinator that has sent it, a node that copied its columns), so
    /// resident memory holds what is in use and not the whole file.
    fn release(&self, _name: &str) {}
}

/// Tensors straight from a mapped GGUF model, each from the shard that holds
/// it when the model is split (no copies).
pub struct GgufSource<'a> {
    pub file: &'a GgufModel,
}

impl TensorSource for GgufSource<'_> {
    fn source_name(&self) -> String {
        self.file.describe()
    }

    fn tensor(&self, name: &str) -> Result<Option<Weight>, ModelError> {
        let Some((shard, info)) = self.file.locate(name) else {
            return Ok(None);
        };
        let (rows, cols) = info.rows_cols();
        let start = (shard.data_offset + info.offset) as usize;
        Ok(Some(Weight {
            dtype: info.dtype.into(),
            rows,
            cols,
            data: WeightBytes::Mapped {
                map: shard.map().clone(),
                start,
                len: info.size as usize,
            },
        }))
    }

    fn release(&self, name: &str) {
        if let Ok(Some(whole)) = self.tensor(name) {
            whole.data.release_mapped_pages(0..whole.data.len());
        }
    }
}

/// A GGUF model is a source by itself (through [`GgufSource`]).
impl TensorSource for GgufModel {
    fn source_name(&self) -> String {
        GgufSource { file: self }.source_name()
    }

    fn tensor(&self, name: &str) -> Result<Option<Weight>, ModelError> {
        GgufSource { file: self }.tensor(name)
    }

    fn release(&self, name: &str) {
        GgufSource { file: self }.release(name)
    }
}

/// One tensor a layout needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorNeed {
    pub name: String,
    pub rule: SliceRule,
    /// Absent tensors are fine (biases on llama, a tied output head).
    pub optional: bool,
}

/// Every tensor `layout` needs, with its slice rule.
pub fn tensor_plan(config: &ModelConfig, layout: &LocalLayout) -> Vec<TensorNeed> {
    let hd = config.head_dim;
    let q_rows = layout.q_heads.start * hd..layout.q_heads.end * hd;
    let kv = layout.kv_heads(config);
    let kv_rows = kv.start * hd..kv.end * hd;
    let whole_width = layout.is_whole_width(config);
    let rows = |r: &Range<usize>, full: usize| {
        if whole_width && *r == (0..full) {
            SliceRule::Whole
        } else {
            SliceRule::Rows(r.clone())
        }
    };
    let cols = |r: &Range<usize>, full: usize| {
        if *r == (0..full) {
            SliceRule::Whole
        } else {
            SliceRule::Cols(r.clone())
        }
    };
    let need = |name: String, rule: SliceRule, optional: bool| TensorNeed {
        name,
        rule,
        optional,
    };
    let mut out = Vec::new();
    if layout.embed || (layout.head && config.tied_embeddings) {
        out.push(need("token_embd.weight".into(), SliceRule::Whole, false));
    }
    for l in layout.layers.clone() {
        let p = |s: &str| format!("blk.{l}.{s}");
        out.push(need(p("attn_norm.weight"), SliceRule::Whole, false));
        out.push(need(
            p("attn_q.weight"),
            rows(&q_rows, config.q_dim()),
            false,
        ));
        out.push(need(
            p("attn_k.weight"),
            rows(&kv_rows, config.kv_dim()),
            false,
        ));
        out.push(need(
            p("attn_v.weight"),
            rows(&kv_rows, config.kv_dim()),
            false,
        ));
        out.push(need(
            p("attn_output.weight"),
            cols(&q_rows, config.q_dim()),
            false,
        ));
        if config.attn_bias {
            out.push(need(p("attn_q.bias"), rows(&q_rows, config.q_dim()), true));
            out.push(need(
                p("attn_k.bias"),
                rows(&kv_rows, config.kv_dim()),
                true,
            ));
            out.push(need(
                p("attn_v.bias"),
                rows(&kv_rows, config.kv_dim()),
                true,
            ));
        }
        if config.qk_norm {
            out.push(need(p("attn_q_norm.weight"), SliceRule::Whole, false));
            out.push(need(p("attn_k_norm.weight"), SliceRule::Whole, false));
        }
        out.push(need(p("ffn_norm.weight"), SliceRule::Whole, false));
        if config.has_dense_ffn(l) && !layout.ffn.is_empty() {
            let [gate, up, down] = dense_ffn_names(config, l);
            out.push(need(p(gate), rows(&layout.ffn, config.ffn), false));
            out.push(need(p(up), rows(&layout.ffn, config.ffn), false));
            out.push(need(p(down), cols(&layout.ffn, config.ffn), false));
        }
        if let Some(m) = config.moe.as_ref().filter(|m| m.is_moe_layer(l)) {
            if m.shared_expert {
                out.push(need(
                    p("ffn_gate_inp_shexp.weight"),
                    SliceRule::Whole,
                    false,
                ));
            }
            if !layout.experts.is_empty() && !layout.expert_ffn.is_empty() {
                out.push(need(p("ffn_gate_inp.weight"), SliceRule::Whole, false));
                let rows = SliceRule::ExpertRows {
                    experts: layout.experts.clone(),
                    per_expert: m.expert_ffn,
                    rows: layout.expert_ffn.clone(),
                };
                out.push(need(p("ffn_gate_exps.weight"), rows.clone(), false));
                out.push(need(p("ffn_up_exps.weight"), rows, false));
                let cols = SliceRule::ExpertCols {
                    experts: layout.experts.clone(),
                    per_expert: config.hidden,
                    cols: layout.expert_ffn.clone(),
                };
                out.push(need(p("ffn_down_exps.weight"), cols, false));
            }
        }
    }
    if layout.head {
        out.push(need("output_norm.weight".into(), SliceRule::Whole, false));
        if !config.tied_embeddings {
            out.push(need(
                "output.weight".into(),
                rows(&layout.vocab, config.vocab),
                false,
            ));
        }
    }
    out
}

/// The dense FFN's gate, up and down tensors in layer `l`: a MoE layer's
/// dense FFN is its shared expert.
pub fn dense_ffn_names(config: &ModelConfig, l: usize) -> [&'static str; 3] {
    if config.is_moe_layer(l) {
        [
            "ffn_gate_shexp.weight",
            "ffn_up_shexp.weight",
            "ffn_down_shexp.weight",
        ]
    } else {
        ["ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"]
    }
}

/// A layer's matmul weight as the kernels run it fastest: interleaved at
/// load where its type has such a layout on this CPU, the original's
/// mapped pages released as it is copied, so resident memory holds one
/// copy. (The token embedding, and so a tied output head, keeps the file
/// layout: it is read by rows. Experts are interleaved by `MoeWeights`,
/// whose views must not split a group of rows.)
fn for_decode(w: Weight) -> Weight {
    w.interleaved().unwrap_or(w)
}

pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub wq: Weight,
    pub wk: Weight,
    pub wv: Weight,
    pub wo: Weight,
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    /// The dense FFN, or a MoE layer's shared expert (absent without one,
    /// or when this process owns none of its columns).
    pub ffn: Option<FfnWeights>,
    /// A MoE layer's router and the experts this process owns.
    pub moe: Option<MoeWeights>,
}

/// A SwiGLU FFN: `down(silu(gate x) * up x)`.
#[derive(Clone)]
pub struct FfnWeights {
    pub gate: Weight,
    pub up: Weight,
    pub down: Weight,
}

impl FfnWeights {
    fn byte_len(&self) -> usize {
        self.gate.byte_len() + self.up.byte_len() + self.down.byte_len()
    }
}

pub struct ModelWeights {
    pub token_embd: Option<Weight>,
    pub layers: Vec<LayerWeights>,
    pub output_norm: Option<Vec<f32>>,
    /// The (vocab-sliced) output head; a row view of the embedding when tied.
    pub output: Option<Weight>,
    /// The output head is a view of `token_embd` (counted once).
    pub output_tied: bool,
}

impl ModelWeights {
    /// Bytes of weight data held (norms included).
    pub fn byte_len(&self) -> usize {
        let v = |x: &Vec<f32>| x.len() * 4;
        let ov = |x: &Option<Vec<f32>>| x.as_ref().map_or(0, v);
        let mut n = self.token_embd.as_ref().map_or(0, |w| w.byte_len());
        n += ov(&self.output_norm);
        if !self.output_tied {
            n += self.output.as_ref().map_or(0, |w| w.byte_len());
        }
        for l in &self.layers {
            n += v(&l.attn_norm) + v(&l.ffn_norm);
            n += [&l.wq, &l.wk, &l.wv, &l.wo]
                .iter()
                .map(|w| w.byte_len())
                .sum::<usize>();
            n += l.ffn.as_ref().map_or(0, FfnWeights::byte_len);
            n += l.moe.as_ref().map_or(0, MoeWeights::byte_len);
            n += ov(&l.bq) + ov(&l.bk) + ov(&l.bv) + ov(&l.q_norm) + ov(&l.k_norm);
        }
        n
    }

    pub fn load(
        config: &ModelConfig,
        layout: &LocalLayout,
        source: &dyn TensorSource,
    ) -> Result<Self, ModelError> {
        let plan = tensor_plan(config, layout);
        let mut loader = Loader { source, config };
        let rule_of = |name: &str| {
            plan.iter()
                .find(|n| n.name == name)
                .map_or(SliceRule::Whole, |n| n.rule.clone())
        };
        let hd = config.head_dim;
        let nq = layout.q_heads.len();
        let nkv = layout.kv_heads(config).len();
        let nf = layout.ffn.len();
        let h = config.hidden;

        let token_embd = if plan.iter().any(|n| n.name == "token_embd.weight") {
            Some(loader.matrix("token_embd.weight", &SliceRule::Whole, config.vocab, h)?)
        } else {
            None
        };
        let mut layers = Vec::with_capacity(layout.layers.len());
        for l in layout.layers.clone() {
            let n = |s: &str| format!("blk.{l}.{s}");
            let mut m = |s: &str, rows, cols| {
                let name = n(s);
                loader.matrix(&name, &rule_of(&name), rows, cols)
            };
            let wq = for_decode(m("attn_q.weight", nq * hd, h)?);
            let wk = for_decode(m("attn_k.weight", nkv * hd, h)?);
            let wv = for_decode(m("attn_v.weight", nkv * hd, h)?);
            let wo = for_decode(m("attn_output.weight", h, nq * hd)?);
            let ffn = if config.has_dense_ffn(l) && nf > 0 {
                let [gate, up, down] = dense_ffn_names(config, l);
                Some(FfnWeights {
                    gate: for_decode(m(gate, nf, h)?),
                    up: for_decode(m(up, nf, h)?),
                    down: for_decode(m(down, h, nf)?),
                })
            } else {
                None
            };
            let moe = match config.moe.as_ref().filter(|m| m.is_moe_layer(l)) {
                Some(mc) => {
                    let (ne, nef) = (layout.experts.len(), layout.expert_ffn.len());
                    let experts = if ne > 0 && nef > 0 {
                        let router = m("ffn_gate_inp.weight", mc.n_experts, h)?;
                        let gate = m("ffn_gate_exps.weight", ne * nef, h)?;
                        let up = m("ffn_up_exps.weight", ne * nef, h)?;
                        let down = m("ffn_down_exps.weight", ne * h, nef)?;
                        Some((router, FfnWeights { gate, up, down }))
                    } else {
                        None
                    };
                    let shared_gate = if mc.shared_expert {
                        let name = n("ffn_gate_inp_shexp.weight");
                        loader.vector(&name, &SliceRule::Whole, h, false)?
                    } else {
                        None
                    };
                    Some(
                        MoeWeights::new(layout.experts.clone(), experts, shared_gate, h).map_err(
                            |problem| ModelError::BadTensor {
                                source_name: source.source_name(),
                                tensor: n("ffn_gate_exps.weight"),
                                problem,
                            },
                        )?,
                    )
                }
                None => None,
            };
            let mut vec = |s: &str, len: usize, optional: bool| {
                let name = n(s);
                loader.vector(&name, &rule_of(&name), len, optional)
            };
            let attn_norm = vec("attn_norm.weight", h, false)?.unwrap_or_default();
            let ffn_norm = vec("ffn_norm.weight", h, false)?.unwrap_or_default();
            let (bq, bk, bv) = if config.attn_bias {
                (
                    vec("attn_q.bias", nq * hd, true)?,
                    vec("attn_k.bias", nkv * hd, true)?,
                    vec("attn_v.bias", nkv * hd, true)?,
                )
            } else {
                (None, None, None)
            };
            let (q_norm, k_norm) = if config.qk_norm {
                (
                    vec("attn_q_norm.weight", hd, false)?,
                    vec("attn_k_norm.weight", hd, false)?,
                )
            } else {
                (None, None)
            };
            layers.push(LayerWeights {
                attn_norm,
                wq,
                wk,
                wv,
                wo,
                bq,
                bk,
                bv,
                q_norm,
                k_norm,
                ffn_norm,
                ffn,
                moe,
            });
        }
        let (output_norm, output) = if layout.head {
            let norm = loader.vector("output_norm.weight", &SliceRule::Whole, h, false)?;
            let head = if config.tied_embeddings {
                let embd = token_embd.as_ref().ok_or_else(|| {
                    ModelError::Config("a tied output head needs the token embedding".into())
                })?;
                slice_rows(embd, layout.vocab.clone()).map_err(|e| ModelError::BadTensor {
                    source_name: source.source_name(),
                    tensor: "token_embd.weight".into(),
                    problem: e.to_string(),
                })?
            } else {
                for_decode(loader.matrix(
                    "output.weight",
                    &rule_of("output.weight"),
                    layout.vocab.len(),
                    h,
                )?)
            };
            (norm, Some(head))
        } else {
            (None, None)
        };
        Ok(Self {
            token_embd: if layout.embed { token_embd } else { None },
            layers,
            output_norm,
            output,
            output_tied: layout.head && config.tied_embeddings && layout.embed,
        })
    }
}

struct Loader<'a> {
    source: &'a dyn TensorSource,
    config: &'a ModelConfig,
}

impl Loader<'_> {
    fn bad(&self, tensor: &str, problem: String) -> ModelError {
        ModelError::BadTensor {
            source_name: self.source.source_name(),
            tensor: tensor.to_string(),
            problem,
        }
    }

    fn matrix(
        &mut self,
        name: &str,
        rule: &SliceRule,
        rows: usize,
        cols: usize,
    ) -> Result<Weight, ModelError> {
        let w = self
            .source
            .local_tensor(name, rule)?
            .ok_or_else(|| ModelError::MissingTensor {
                source_name: self.source.source_name(),
                tensor: name.to_string(),
            })?;
        if (w.rows, w.cols) != (rows, cols) {
            return Err(self.bad(
                name,
                format!(
                    "shape is {}x{}, the {} config needs {rows}x{cols}",
                    w.rows,
                    w.cols,
                    self.config.arch.name()
                ),
            ));
        }
        if w.dtype.is_activation_only() {
            return Err(self.bad(
                name,
                format!("{} is an activation format, not a weight format", w.dtype),
            ));
        }
        Weight::check_shape(w.dtype, w.rows, w.cols, w.byte_len())
            .map_err(|p| self.bad(name, p))?;
        Ok(w)
    }

    fn vector(
        &mut self,
        name: &str,
        rule: &SliceRule,
        len: usize,
        optional: bool,
    ) -> Result<Option<Vec<f32>>, ModelError> {
        let Some(w) = self.source.local_tensor(name, rule)? else {
            if optional {
                return Ok(None);
            }
            return Err(ModelError::MissingTensor {
                source_name: self.source.source_name(),
                tensor: name.to_string(),
            });
        };
        let n = w.rows * w.cols;
        if n != len {
            return Err(self.bad(name, format!("has {n} values, expected {len}")));
        }
        Weight::check_shape(w.dtype, w.rows, w.cols, w.byte_len())
            .map_err(|p| self.bad(name, p))?;
        let mut out = vec![0.0f32; n];
        crate::kernels::dequant::dequantize_row(w.dtype, &w.data, &mut out);
        Ok(Some(out))
    }
}
