//! The arch-neutral model configuration every loader produces and the
//! forward pass reads. GGUF metadata and Hugging Face `config.json` are each
//! converted into a [`ModelConfig`] once, at load.

use serde::{Deserialize, Serialize};

use super::gguf::{GgufError, GgufFile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "llama" | "mistral" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "qwen3" => Some(Self::Qwen3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }

    pub const SUPPORTED: &'static str = "llama, mistral, qwen2, qwen3";
}

/// Which dimensions RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RopeStyle {
    /// Pairs (2i, 2i+1): GGUF llama, whose Q/K rows llama.cpp's converter permuted.
    Interleaved,
    /// Pairs (i, i + d/2): Qwen, and Hugging Face llama weights (not permuted).
    Neox,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RopeScaling {
    None,
    /// Positions divided by the factor.
    Linear(f32),
    /// Per-frequency divisors (Llama 3.1's `rope_freqs`), one per rotated pair.
    FreqFactors(Vec<f32>),
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
    pub rms_eps: f32,
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
}

impl ModelConfig {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
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
    pub fn from_gguf(file: &GgufFile) -> Result<Self, GgufError> {
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
        let ffn = req("feed_forward_length")?;
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
            rope_style: match arch {
                Arch::Llama => RopeStyle::Interleaved,
                Arch::Qwen2 | Arch::Qwen3 => RopeStyle::Neox,
            },
            rope_scaling,
            attn_bias: arch == Arch::Qwen2,
            qk_norm: arch == Arch::Qwen3,
            tied_embeddings: file.tensor("output.weight").is_none(),
        };
        config
            .validate()
            .map_err(|problem| file.metadata_error(&format!("{arch_name}.*"), problem))?;
        Ok(config)
    }
}
