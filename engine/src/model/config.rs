//! The arch-neutral model configuration every loader produces and the
//! forward pass reads. GGUF metadata and Hugging Face `config.json` are each
//! converted into a [`ModelConfig`] once, at load.

use serde::{Deserialize, Serialize};

use super::gguf::{GgufError, GgufModel};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    /// Also Mistral, and Mixtral (llama with `llama.expert_count`).
    Llama,
    Qwen2,
    Qwen3,
    /// Qwen1.5-MoE / Qwen2-MoE: qwen2 attention, experts plus a gated shared expert.
    Qwen2Moe,
    /// Qwen3-30B-A3B, Qwen3-235B-A22B: qwen3 attention, renormalised top-k experts.
    Qwen3Moe,
}

impl Arch {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "llama" | "mistral" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "qwen3" => Some(Self::Qwen3),
            "qwen2moe" | "qwen2_moe" => Some(Self::Qwen2Moe),
            "qwen3moe" | "qwen3_moe" => Some(Self::Qwen3Moe),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Qwen2Moe => "qwen2moe",
            Self::Qwen3Moe => "qwen3moe",
        }
    }

    pub const SUPPORTED: &'static str =
        "llama, mistral, mixtral (llama with experts), qwen2, qwen3, qwen2moe, qwen3moe";

    /// Q/K/V projections carry biases.
    pub fn has_attn_bias(self) -> bool {
        matches!(self, Self::Qwen2 | Self::Qwen2Moe)
    }

    /// Per-head RMSNorm on Q and K before RoPE.
    pub fn has_qk_norm(self) -> bool {
        matches!(self, Self::Qwen3 | Self::Qwen3Moe)
    }

    /// GGUF llama weights were permuted by llama.cpp's converter for
    /// interleaved RoPE; the Qwen families rotate halves.
    pub fn gguf_rope_style(self) -> RopeStyle {
        match self {
            Self::Llama => RopeStyle::Interleaved,
            _ => RopeStyle::Neox,
        }
    }

    /// Whether llama.cpp divides the chosen experts' weights by their sum
    /// for this arch (its `build_moe_ffn` `norm_w` argument).
    pub fn default_norm_topk(self) -> bool {
        !matches!(self, Self::Qwen2Moe)
    }
}

/// The mixture-of-experts part of a model: which layers route, to how many
/// experts, and how the router's scores become weights. Every routed layer
/// has the same expert count and width (true of every family supported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoeConfig {
    pub n_experts: usize,
    /// Experts each token is sent to (top-k).
    pub n_experts_used: usize,
    /// Intermediate width of one expert's FFN.
    pub expert_ffn: usize,
    /// The top-k softmax weights are divided by their sum (qwen3moe,
    /// mixtral) rather than used as they are (qwen2moe).
    pub norm_topk: bool,
    /// A shared expert of width [`ModelConfig::ffn`] runs on every token,
    /// scaled by `sigmoid(gate_inp_shexp · x)` (qwen2moe).
    pub shared_expert: bool,
    /// Layers with a plain dense FFN of width [`ModelConfig::ffn`] instead
    /// (Hugging Face `mlp_only_layers` and `decoder_sparse_step`).
    pub dense_layers: Vec<usize>,
}

impl MoeConfig {
    /// Whether `layer` routes to experts.
    pub fn is_moe_layer(&self, layer: usize) -> bool {
        !self.dense_layers.contains(&layer)
    }
}

/// Which dimensions RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RopeStyle {
    /// Pairs (2i, 2i+1): GGUF llama, whose Q/K rows llama.cpp's converter permuted.
    Interleaved,
    /// Pairs (i, i + d/2): Qwen, and Hugging Face llama weights (not permuted).
    Neox,
}

/// serde: an f32 that is finite. A JSON number past f32's range would
/// otherwise read as infinity, which JSON writes back as `null`.
fn finite_f32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    let v = <f32 as Deserialize>::deserialize(d)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!("{v} is not a finite f32")))
    }
}

/// serde: f32 values that are all finite, as [`finite_f32`].
fn finite_f32s<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    let v = <Vec<f32> as Deserialize>::deserialize(d)?;
    match v.iter().find(|x| !x.is_finite()) {
        None => Ok(v),
        Some(x) => Err(serde::de::Error::custom(format!("{x} is not a finite f32"))),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RopeScaling {
    None,
    /// Positions divided by the factor.
    Linear(#[serde(deserialize_with = "finite_f32")] f32),
    /// Per-frequency divisors (Llama 3.1's `rope_freqs`), one per rotated pair.
    FreqFactors(#[serde(deserialize_with = "finite_f32s")] Vec<f32>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub name: String,
    pub n_layers: usize,
    pub hidden: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    /// The context length the model was trained for.
    pub train_context: usize,
    #[serde(deserialize_with = "finite_f32")]
    pub rms_eps: f32,
    #[serde(deserialize_with = "finite_f32")]
    pub rope_theta: f32,
    pub rope_dim: usize,
    pub rope_style: RopeStyle,
    pub rope_scaling: RopeScaling,
    /// Q/K/V projections carry biases (qwen2).
    pub attn_bias: bool,
    /// Per-head RMSNorm on Q and K before RoPE (qwen3).
    pub qk_norm: bool,
    /// The output head reuses the token embedding.
    pub tied_embeddings: bool,
    /// Present for mixture-of-experts models.
    pub moe: Option<MoeConfig>,
}

impl ModelConfig {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Whether `layer` has a routed expert FFN.
    pub fn is_moe_layer(&self, layer: usize) -> bool {
        self.moe.as_ref().is_some_and(|m| m.is_moe_layer(layer))
    }

    /// Whether a layer of this model has a dense FFN (or shared expert) of width `ffn`.
    pub fn has_dense_ffn(&self, layer: usize) -> bool {
        match &self.moe {
            None => true,
            Some(m) => m.shared_expert || !m.is_moe_layer(layer),
        }
    }

    /// Q heads per KV head.
    pub fn group_size(&self) -> usize {
        self.n_heads / self.n_kv_heads.max(1)
    }

    /// Checks the relations the forward pass relies on.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("block count", self.n_layers),
            ("embedding length", self.hidden),
            ("head count", self.n_heads),
            ("KV head count", self.n_kv_heads),
            ("head dimension", self.head_dim),
            ("feed-forward length", self.ffn),
            ("vocabulary size", self.vocab),
        ];
        for (what, v) in positive {
            if v == 0 {
                return Err(format!("{what} is 0"));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(format!(
                "{} heads is not a multiple of {} KV heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return Err(format!(
                "RoPE dimension {} must be even and at most the head dimension {}",
                self.rope_dim, self.head_dim
            ));
        }
        if let Some(m) = &self.moe {
            if m.n_experts == 0 || m.expert_ffn == 0 {
                return Err(format!(
                    "{} experts of width {}: both must be positive",
                    m.n_experts, m.expert_ffn
                ));
            }
            if m.n_experts_used == 0 || m.n_experts_used > m.n_experts {
                return Err(format!(
                    "{} experts used per token, of {} experts",
                    m.n_experts_used, m.n_experts
                ));
            }
            if let Some(&l) = m.dense_layers.iter().find(|&&l| l >= self.n_layers) {
                return Err(format!(
                    "dense layer {l} is past the {} layers",
                    self.n_layers
                ));
            }
        }
        if let RopeScaling::FreqFactors(f) = &self.rope_scaling {
            if f.len() != self.rope_dim / 2 {
                return Err(format!(
                    "rope_freqs has {} entries, expected {}",
                    f.len(),
                    self.rope_dim / 2
                ));
            }
        }
        Ok(())
    }

    /// Reads llama.cpp's `{arch}.*` keys.
    pub fn from_gguf(file: &GgufModel) -> Result<Self, GgufError> {
        let arch_name = file.require_str("general.architecture")?;
        let arch = Arch::from_name(arch_name).ok_or_else(|| {
            file.metadata_error(
                "general.architecture",
                format!(
                    "architecture '{arch_name}' is not supported (supported: {})",
                    Arch::SUPPORTED
                ),
            )
        })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let req = |k: &str| -> Result<usize, GgufError> { Ok(file.require_u64(&key(k))? as usize) };
        let n_layers = req("block_count")?;
        let hidden = req("embedding_length")?;
        let n_heads = req("attention.head_count")?;
        let n_kv_heads = match file.get_u64(&key("attention.head_count_kv"))? {
            Some(v) => v as usize,
            None => n_heads,
        };
        let head_dim = match file.get_u64(&key("attention.key_length"))? {
            Some(v) => v as usize,
            None if n_heads > 0 => hidden / n_heads,
            None => 0,
        };
        let moe = moe_from_gguf(file, arch, arch_name)?;
        let ffn = match (
            &moe,
            file.get_u64(&key("expert_shared_feed_forward_length"))?,
        ) {
            // qwen2moe: the one dense FFN is the shared expert.
            (Some(m), Some(shared)) if m.shared_expert => shared as usize,
            (Some(m), _) => file
                .get_u64(&key("feed_forward_length"))?
                .map_or(m.expert_ffn, |v| v as usize),
            (None, _) => req("feed_forward_length")?,
        };
        let vocab = match file.get_u64(&key("vocab_size"))? {
            Some(v) => v as usize,
            None => match file.get_array("tokenizer.ggml.tokens")? {
                Some(a) => a.len(),
                None => match file.tensor("token_embd.weight") {
                    Some(t) => t.rows_cols().0,
                    None => {
                        return Err(file.metadata_error(
                            &key("vocab_size"),
                            "missing, and no token list to count",
                        ))
                    }
                },
            },
        };
        let train_context = file.get_u64(&key("context_length"))?.unwrap_or(2048) as usize;
        let rms_eps = file
            .get_f64(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5) as f32;
        let rope_theta = file.get_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0) as f32;
        let rope_dim = match file.get_u64(&key("rope.dimension_count"))? {
            Some(v) => v as usize,
            None => head_dim,
        };
        let rope_scaling = match file.get_str(&key("rope.scaling.type"))? {
            None | Some("none") => RopeScaling::None,
            Some("linear") => {
                let factor = file.get_f64(&key("rope.scaling.factor"))?.unwrap_or(1.0) as f32;
                if factor == 1.0 {
                    RopeScaling::None
                } else {
                    RopeScaling::Linear(factor)
                }
            }
            Some(other) => {
                return Err(file.metadata_error(
                    &key("rope.scaling.type"),
                    format!("RoPE scaling '{other}' is not supported (supported: none, linear, llama3 rope_freqs)"),
                ))
            }
        };
        let rope_scaling = match file.tensor("rope_freqs.weight") {
            Some(info) if rope_scaling == RopeScaling::None => {
                let data = file.tensor_data(info);
                if info.dtype != super::gguf::GgmlType::F32 {
                    return Err(file.tensor_error(
                        "rope_freqs.weight",
                        format!("expected F32, found {}", info.dtype),
                    ));
                }
                RopeScaling::FreqFactors(
                    data.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            }
            _ => rope_scaling,
        };
        let config = Self {
            arch,
            name: file
                .get_str("general.name")?
                .unwrap_or("unnamed")
                .to_string(),
            n_layers,
            hidden,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn,
            vocab,
            train_context,
            rms_eps,
            rope_theta,
            rope_dim,
            rope_style: arch.gguf_rope_style(),
            rope_scaling,
            attn_bias: arch.has_attn_bias(),
            qk_norm: arch.has_qk_norm(),
            tied_embeddings: file.tensor("output.weight").is_none(),
            moe,
        };
        config
            .validate()
            .map_err(|problem| file.metadata_error(&format!("{arch_name}.*"), problem))?;
        Ok(config)
    }
}

/// The `{arch}.expert_*` keys, as llama.cpp reads them. A llama file with
/// experts is Mixtral, whose expert width is `llama.feed_forward_length`.
fn moe_from_gguf(
    file: &GgufModel,
    arch: Arch,
    arch_name: &str,
) -> Result<Option<MoeConfig>, GgufError> {
    let key = |k: &str| format!("{arch_name}.{k}");
    let n_experts = file.get_u64(&key("expert_count"))?.unwrap_or(0) as usize;
    let is_moe_arch = matches!(arch, Arch::Qwen2Moe | Arch::Qwen3Moe);
    if n_experts == 0 {
        if is_moe_arch {
            return Err(file.metadata_error(&key("expert_count"), "missing or 0 for a MoE arch"));
        }
        return Ok(None);
    }
    if matches!(arch, Arch::Qwen2 | Arch::Qwen3) {
        return Err(file.metadata_error(
            &key("expert_count"),
            format!("{arch_name} with experts is not a known model (did you mean {arch_name}moe?)"),
        ));
    }
    let n_experts_used = file.require_u64(&key("expert_used_count"))? as usize;
    let expert_ffn = match file.get_u64(&key("expert_feed_forward_length"))? {
        Some(v) => v as usize,
        None if arch == Arch::Llama => file.require_u64(&key("feed_forward_length"))? as usize,
        None => file.require_u64(&key("expert_feed_forward_length"))? as usize,
    };
    let norm_topk = match file.get_bool(&key("expert_weights_norm"))? {
        Some(b) => b,
        None => arch.default_norm_topk(),
    };
    Ok(Some(MoeConfig {
        n_experts,
        n_experts_used,
        expert_ffn,
        norm_topk,
        shared_expert: file.tensor("blk.0.ffn_gate_inp_shexp.weight").is_some()
            || file
                .get_u64(&key("expert_shared_feed_forward_length"))?
                .is_some(),
        dense_layers: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_json(rope_theta: &str, scaling: &str) -> String {
        format!(
            r#"{{"arch":"Llama","attn_bias":false,"ffn":32,"head_dim":16,"hidden":32,"moe":null,
            "n_heads":2,"n_kv_heads":1,"n_layers":1,"name":"t","qk_norm":false,"rms_eps":1e-5,
            "rope_dim":16,"rope_scaling":{scaling},"rope_style":"Interleaved",
            "rope_theta":{rope_theta},"tied_embeddings":false,"train_context":64,"vocab":268}}"#
        )
    }

    #[test]
    fn a_float_past_f32s_range_is_refused_not_read_as_infinity() {
        let ok: ModelConfig = serde_json::from_str(&config_json("10000.0", "\"None\"")).unwrap();
        assert_eq!(ok.rope_theta, 10000.0);
        for (theta, scaling) in [
            ("5e88", "\"None\""),
            ("10000.0", r#"{"Linear":1e39}"#),
            ("10000.0", r#"{"FreqFactors":[1.0,-4e38]}"#),
        ] {
            let err = serde_json::from_str::<ModelConfig>(&config_json(theta, scaling))
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not a finite f32"), "{err}");
        }
    }
}
