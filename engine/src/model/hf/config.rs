//! `config.json` both ways: a Hugging Face config becomes the engine's
//! [`ModelConfig`], and a [`ModelConfig`] (from a GGUF) becomes a config that
//! `transformers` would load.
//!
//! HF checkpoints keep Q/K rows in the order the model was trained with, so
//! RoPE rotates the halves of each head ([`RopeStyle::Neox`]) for every arch;
//! only GGUF llama files, whose rows llama.cpp's converter permuted, use
//! interleaved pairs.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::error::HfError;
use crate::model::config::{Arch, ModelConfig, MoeConfig, RopeScaling, RopeStyle};

pub const CONFIG_FILE: &str = "config.json";

const SUPPORTED_SCALING: &str = "linear, llama3";

/// Reads `dir/config.json`.
pub fn config_from_hf(dir: &Path) -> Result<ModelConfig, HfError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| HfError::io(&path, "cannot read", e))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| HfError::Json {
        path: path.clone(),
        problem: format!("not valid JSON: {e}"),
    })?;
    let name = dir.file_name().map_or_else(
        || "unnamed".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    config_from_json(&path, &json, &name)
}

/// Typed access to a config object; `null` counts as absent, as in
/// `transformers`.
struct Keys<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
}

impl Keys<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn err(&self, key: &str, problem: impl Into<String>) -> HfError {
        HfError::key(self.path, key, problem)
    }

    fn usize(&self, key: &str) -> Result<Option<usize>, HfError> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        self.err(key, format!("expected a non-negative integer, found {v}"))
                    })
            })
            .transpose()
    }

    fn require_usize(&self, key: &str) -> Result<usize, HfError> {
        self.usize(key)?.ok_or_else(|| self.err(key, "missing"))
    }

    fn f64(&self, key: &str) -> Result<Option<f64>, HfError> {
        self.get(key)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| self.err(key, format!("expected a number, found {v}")))
            })
            .transpose()
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, HfError> {
        self.get(key)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| self.err(key, format!("expected true or false, found {v}")))
            })
            .transpose()
    }

    /// A list of non-negative integers (`mlp_only_layers`).
    fn usize_list(&self, key: &str) -> Result<Option<Vec<usize>>, HfError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let bad = || {
            self.err(
                key,
                format!("expected a list of non-negative integers, found {v}"),
            )
        };
        let items = v.as_array().ok_or_else(bad)?;
        items
            .iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(bad)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn str(&self, key: &str) -> Result<Option<&str>, HfError> {
        self.get(key)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.err(key, format!("expected a string, found {v}")))
            })
            .transpose()
    }
}

/// The model families `config.json` can name. Mixtral is the llama arch with
/// experts; the rest are one arch each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Dense(Arch),
    Mixtral,
    Qwen2Moe,
    Qwen3Moe,
}

impl Family {
    fn from_model_type(t: &str) -> Option<Self> {
        match t {
            "mixtral" => Some(Self::Mixtral),
            "qwen2_moe" => Some(Self::Qwen2Moe),
            "qwen3_moe" => Some(Self::Qwen3Moe),
            _ => match Arch::from_name(t)? {
                Arch::Qwen2Moe => Some(Self::Qwen2Moe),
                Arch::Qwen3Moe => Some(Self::Qwen3Moe),
                arch => Some(Self::Dense(arch)),
            },
        }
    }

    fn from_architecture(a: &str) -> Option<Self> {
        match a {
            "LlamaForCausalLM" | "MistralForCausalLM" => Some(Self::Dense(Arch::Llama)),
            "Qwen2ForCausalLM" => Some(Self::Dense(Arch::Qwen2)),
            "Qwen3ForCausalLM" => Some(Self::Dense(Arch::Qwen3)),
            "MixtralForCausalLM" => Some(Self::Mixtral),
            "Qwen2MoeForCausalLM" => Some(Self::Qwen2Moe),
            "Qwen3MoeForCausalLM" => Some(Self::Qwen3Moe),
            _ => None,
        }
    }

    fn arch(self) -> Arch {
        match self {
            Self::Dense(arch) => arch,
            Self::Mixtral => Arch::Llama,
            Self::Qwen2Moe => Arch::Qwen2Moe,
            Self::Qwen3Moe => Arch::Qwen3Moe,
        }
    }

    /// `model_type` as `transformers` spells it.
    fn model_type(self) -> &'static str {
        match self {
            Self::Dense(Arch::Llama) => "llama",
            Self::Dense(Arch::Qwen2) => "qwen2",
            Self::Dense(Arch::Qwen3) => "qwen3",
            Self::Dense(Arch::Qwen2Moe) | Self::Qwen2Moe => "qwen2_moe",
            Self::Dense(Arch::Qwen3Moe) | Self::Qwen3Moe => "qwen3_moe",
            Self::Mixtral => "mixtral",
        }
    }
}

/// The family from `model_type`, else from `architectures[0]`.
fn family_of(keys: &Keys) -> Result<Family, HfError> {
    if let Some(t) = keys.str("model_type")? {
        return Family::from_model_type(t).ok_or_else(|| {
            keys.err(
                "model_type",
                format!("'{t}' is not supported (supported: {})", Arch::SUPPORTED),
            )
        });
    }
    let first = keys
        .get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| keys.err("model_type", "missing, and no 'architectures' list"))?;
    Family::from_architecture(first).ok_or_else(|| {
        keys.err(
            "architectures",
            format!(
                "'{first}' is not supported (supported: {})",
                Arch::SUPPORTED
            ),
        )
    })
}

/// The experts of a MoE family, and the width [`ModelConfig::ffn`] takes:
/// Mixtral's `intermediate_size` is its expert width; qwen3_moe's is its
/// dense layers' width; qwen2_moe's dense FFN is its shared expert.
fn moe_config(
    keys: &Keys,
    family: Family,
    n_layers: usize,
) -> Result<(Option<MoeConfig>, usize), HfError> {
    let experts_used = |n_experts: usize| -> Result<usize, HfError> {
        let used = keys.require_usize("num_experts_per_tok")?;
        if used == 0 || used > n_experts {
            return Err(keys.err(
                "num_experts_per_tok",
                format!(
                    "{used} experts per token, of {n_experts} experts: must be 1 to {n_experts}"
                ),
            ));
        }
        Ok(used)
    };
    let positive = |key: &str| -> Result<usize, HfError> {
        match keys.require_usize(key)? {
            0 => Err(keys.err(
                key,
                format!("0: a {} model needs it positive", family.model_type()),
            )),
            n => Ok(n),
        }
    };
    match family {
        Family::Dense(_) => Ok((None, keys.require_usize("intermediate_size")?)),
        Family::Mixtral => {
            let n_experts = positive("num_local_experts")?;
            let expert_ffn = keys.require_usize("intermediate_size")?;
            let moe = MoeConfig {
                n_experts,
                n_experts_used: experts_used(n_experts)?,
                expert_ffn,
                // Mixtral always divides the top-k weights by their sum.
                norm_topk: true,
                shared_expert: false,
                dense_layers: Vec::new(),
            };
            Ok((Some(moe), expert_ffn))
        }
        Family::Qwen2Moe | Family::Qwen3Moe => {
            let n_experts = positive("num_experts")?;
            let n_experts_used = experts_used(n_experts)?;
            let expert_ffn = positive("moe_intermediate_size")?;
            let step = keys.usize("decoder_sparse_step")?.unwrap_or(1);
            if step == 0 {
                return Err(keys.err("decoder_sparse_step", "0: must be at least 1"));
            }
            let mlp_only = keys.usize_list("mlp_only_layers")?.unwrap_or_default();
            // transformers' decoder layer: experts unless listed in
            // mlp_only_layers or off the sparse step.
            let dense_layers: Vec<usize> = (0..n_layers)
                .filter(|l| mlp_only.contains(l) || !(l + 1).is_multiple_of(step))
                .collect();
            let dense_width = keys.usize("intermediate_size")?;
            let ffn = if family == Family::Qwen2Moe {
                let shared = positive("shared_expert_intermediate_size")?;
                if let (Some(&first), Some(width)) = (dense_layers.first(), dense_width) {
                    if width != shared {
                        return Err(keys.err(
                            "intermediate_size",
                            format!(
                                "dense layers (layer {first} among them) of width {width} next to a shared expert of width {shared} (shared_expert_intermediate_size): not supported; the engine gives every dense FFN one width"
                            ),
                        ));
                    }
                }
                shared
            } else {
                match dense_width {
                    Some(w) => w,
                    // Only dense layers use it.
                    None if dense_layers.is_empty() => expert_ffn,
                    None => {
                        return Err(keys.err(
                            "intermediate_size",
                            format!("missing, and layer {} has a dense FFN", dense_layers[0]),
                        ))
                    }
                }
            };
            let moe = MoeConfig {
                n_experts,
                n_experts_used,
                expert_ffn,
                norm_topk: keys.bool("norm_topk_prob")?.unwrap_or(false),
                shared_expert: family == Family::Qwen2Moe,
                dense_layers,
            };
            Ok((Some(moe), ffn))
        }
    }
}

/// Converts a parsed `config.json`. `path` is only used in messages.
pub fn config_from_json(path: &Path, json: &Value, name: &str) -> Result<ModelConfig, HfError> {
    let obj = json.as_object().ok_or_else(|| HfError::Json {
        path: path.to_path_buf(),
        problem: "config is not a JSON object".into(),
    })?;
    let keys = Keys { path, obj };
    let family = family_of(&keys)?;
    let arch = family.arch();
    let hidden = keys.require_usize("hidden_size")?;
    let n_heads = keys.require_usize("num_attention_heads")?;
    let n_kv_heads = keys.usize("num_key_value_heads")?.unwrap_or(n_heads);
    let head_dim = match keys.usize("head_dim")? {
        Some(d) => d,
        None if n_heads > 0 => hidden / n_heads,
        None => 0,
    };
    // transformers v5 moves RoPE settings into `rope_parameters`.
    let rope_params = keys.get("rope_parameters").and_then(Value::as_object);
    let rope_theta = match keys.f64("rope_theta")? {
        Some(t) => t,
        None => rope_params
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or(10_000.0),
    };
    let scaling = match keys.get("rope_scaling") {
        Some(s) => Some(("rope_scaling", s)),
        None => keys.get("rope_parameters").map(|p| ("rope_parameters", p)),
    };
    let rope_scaling = match scaling {
        None => RopeScaling::None,
        Some((key, s)) => rope_scaling(&keys, key, s, rope_theta, head_dim)?,
    };
    let n_layers = keys.require_usize("num_hidden_layers")?;
    let (moe, ffn) = moe_config(&keys, family, n_layers)?;
    let config = ModelConfig {
        arch,
        name: name.to_string(),
        n_layers,
        hidden,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn,
        vocab: keys.require_usize("vocab_size")?,
        train_context: keys.usize("max_position_embeddings")?.unwrap_or(2048),
        rms_eps: keys.f64("rms_norm_eps")?.unwrap_or(1e-6) as f32,
        rope_theta: rope_theta as f32,
        rope_dim: head_dim,
        rope_style: RopeStyle::Neox,
        rope_scaling,
        attn_bias: arch.has_attn_bias(),
        qk_norm: arch.has_qk_norm(),
        tied_embeddings: keys.bool("tie_word_embeddings")?.unwrap_or(false),
        moe,
    };
    config.validate().map_err(|problem| HfError::Json {
        path: path.to_path_buf(),
        problem: format!("inconsistent config: {problem}"),
    })?;
    Ok(config)
}

fn rope_scaling(
    keys: &Keys,
    key: &str,
    value: &Value,
    rope_theta: f64,
    head_dim: usize,
) -> Result<RopeScaling, HfError> {
    let obj = value
        .as_object()
        .ok_or_else(|| keys.err(key, format!("expected an object, found {value}")))?;
    let sub = Keys {
        path: keys.path,
        obj,
    };
    let kind = match sub.str("rope_type")? {
        Some(k) => Some(k),
        None => sub.str("type")?,
    };
    let factor = |sub: &Keys| -> Result<f64, HfError> {
        sub.f64("factor")?
            .ok_or_else(|| keys.err(&format!("{key}.factor"), "missing"))
    };
    match kind {
        None | Some("default") => Ok(RopeScaling::None),
        Some("linear") => {
            let f = factor(&sub)?;
            if f <= 0.0 {
                return Err(keys.err(&format!("{key}.factor"), format!("{f} is not positive")));
            }
            Ok(if f == 1.0 {
                RopeScaling::None
            } else {
                RopeScaling::Linear(f as f32)
            })
        }
        Some("llama3") => {
            let params = Llama3Scaling {
                factor: factor(&sub)?,
                low_freq_factor: sub.f64("low_freq_factor")?.unwrap_or(1.0),
                high_freq_factor: sub.f64("high_freq_factor")?.unwrap_or(4.0),
                // Llama 3.1 keeps it inside rope_scaling; llama.cpp's
                // converter reads the top level, which Llama 3.1 lacks, and
                // falls back to the same 8192.
                original_context: match sub.f64("original_max_position_embeddings")? {
                    Some(v) => v,
                    None => keys
                        .f64("original_max_position_embeddings")?
                        .unwrap_or(8192.0),
                },
            };
            if params.factor <= 0.0 {
                return Err(keys.err(&format!("{key}.factor"), "must be positive"));
            }
            Ok(RopeScaling::FreqFactors(llama3_freq_factors(
                &params, rope_theta, head_dim,
            )))
        }
        Some(other) => Err(keys.err(
            key,
            format!("RoPE scaling '{other}' is not supported (supported: {SUPPORTED_SCALING})"),
        )),
    }
}

/// Llama 3.1's RoPE scaling parameters.
#[derive(Debug, Clone, Copy)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_context: f64,
}

/// The per-pair frequency divisors llama.cpp stores as `rope_freqs`: 1 for
/// wavelengths shorter than `original_context / high_freq_factor`, `factor`
/// for those longer than `original_context / low_freq_factor`, and a smooth
/// blend of the two between.
pub fn llama3_freq_factors(p: &Llama3Scaling, rope_theta: f64, dim: usize) -> Vec<f32> {
    let low_wavelen = p.original_context / p.low_freq_factor;
    let high_wavelen = p.original_context / p.high_freq_factor;
    (0..dim / 2)
        .map(|i| {
            let freq = 1.0 / rope_theta.powf((2 * i) as f64 / dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                p.factor
            } else {
                let smooth = (p.original_context / wavelen - p.low_freq_factor)
                    / (p.high_freq_factor - p.low_freq_factor);
                1.0 / ((1.0 - smooth) / p.factor + smooth)
            };
            f as f32
        })
        .collect()
}

impl Family {
    /// `architectures[0]` as `transformers` spells it.
    fn architecture(self) -> &'static str {
        match self {
            Self::Dense(Arch::Llama) => "LlamaForCausalLM",
            Self::Dense(Arch::Qwen2) => "Qwen2ForCausalLM",
            Self::Dense(Arch::Qwen3) => "Qwen3ForCausalLM",
            Self::Dense(Arch::Qwen2Moe) | Self::Qwen2Moe => "Qwen2MoeForCausalLM",
            Self::Dense(Arch::Qwen3Moe) | Self::Qwen3Moe => "Qwen3MoeForCausalLM",
            Self::Mixtral => "MixtralForCausalLM",
        }
    }

    /// The family whose `config.json` describes `config`, or why none does.
    fn of_config(config: &ModelConfig) -> Result<Self, String> {
        let Some(m) = &config.moe else {
            return match config.arch {
                Arch::Qwen2Moe | Arch::Qwen3Moe => Err(format!(
                    "{} without experts has no config.json form",
                    config.arch.name()
                )),
                arch => Ok(Self::Dense(arch)),
            };
        };
        let family = match config.arch {
            Arch::Llama => Self::Mixtral,
            Arch::Qwen2Moe => Self::Qwen2Moe,
            Arch::Qwen3Moe => Self::Qwen3Moe,
            Arch::Qwen2 | Arch::Qwen3 => {
                return Err(format!(
                    "{} with experts has no config.json form",
                    config.arch.name()
                ))
            }
        };
        let problem = match family {
            Self::Mixtral if m.shared_expert => Some("a shared expert"),
            Self::Mixtral if !m.norm_topk => Some("top-k weights that are not renormalised"),
            Self::Mixtral if !m.dense_layers.is_empty() => Some("dense layers"),
            Self::Qwen3Moe if m.shared_expert => Some("a shared expert"),
            Self::Qwen2Moe if !m.shared_expert => Some("no shared expert"),
            _ => None,
        };
        match problem {
            Some(p) => Err(format!(
                "{} with {p} has no config.json form ({} cannot express it)",
                config.arch.name(),
                family.model_type()
            )),
            None => Ok(family),
        }
    }
}

/// Special token ids that go into `config.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u64>,
    pub eos: Option<u64>,
    pub pad: Option<u64>,
}

/// A `config.json` for `config`. `source` names the GGUF in errors.
pub fn config_to_json(
    source: &Path,
    config: &ModelConfig,
    torch_dtype: &str,
    ids: SpecialIds,
) -> Result<Value, HfError> {
    if config.rope_dim != config.head_dim {
        return Err(HfError::Dir {
            path: source.to_path_buf(),
            problem: format!(
                "RoPE over {} of {} head dimensions has no config.json form for {}",
                config.rope_dim,
                config.head_dim,
                config.arch.name()
            ),
        });
    }
    let rope_scaling = match &config.rope_scaling {
        RopeScaling::None => Value::Null,
        RopeScaling::Linear(f) => {
            json!({ "rope_type": "linear", "type": "linear", "factor": short_f32(*f) })
        }
        RopeScaling::FreqFactors(_) => {
            return Err(HfError::tensor(
                source,
                "rope_freqs.weight",
                "per-frequency RoPE factors cannot be written as config.json parameters (not supported)",
            ))
        }
    };
    let family = Family::of_config(config).map_err(|problem| HfError::Dir {
        path: source.to_path_buf(),
        problem: format!("{problem} (not supported)"),
    })?;
    let mut out = json!({
        "architectures": [family.architecture()],
        "model_type": family.model_type(),
        "hidden_size": config.hidden,
        "intermediate_size": config.ffn,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "vocab_size": config.vocab,
        "max_position_embeddings": config.train_context,
        "rms_norm_eps": short_f32(config.rms_eps),
        "rope_theta": short_f32(config.rope_theta),
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": config.tied_embeddings,
        "hidden_act": "silu",
        "attention_bias": config.attn_bias,
        "mlp_bias": false,
        "use_cache": true,
        "torch_dtype": torch_dtype,
    });
    if let (Some(map), Some(m)) = (out.as_object_mut(), &config.moe) {
        map.insert("num_experts_per_tok".into(), json!(m.n_experts_used));
        if family == Family::Mixtral {
            map.insert("num_local_experts".into(), json!(m.n_experts));
            // Mixtral's one width is its experts'.
            map.insert("intermediate_size".into(), json!(m.expert_ffn));
        } else {
            map.insert("num_experts".into(), json!(m.n_experts));
            map.insert("moe_intermediate_size".into(), json!(m.expert_ffn));
            map.insert("norm_topk_prob".into(), json!(m.norm_topk));
            map.insert("decoder_sparse_step".into(), json!(1));
            map.insert("mlp_only_layers".into(), json!(m.dense_layers));
        }
        if family == Family::Qwen2Moe {
            map.insert("shared_expert_intermediate_size".into(), json!(config.ffn));
            map.insert("qkv_bias".into(), json!(config.attn_bias));
        }
    }
    if let Some(map) = out.as_object_mut() {
        for (key, id) in [
            ("bos_token_id", ids.bos),
            ("eos_token_id", ids.eos),
            ("pad_token_id", ids.pad),
        ] {
            if let Some(id) = id {
                map.insert(key.into(), json!(id));
            }
        }
    }
    Ok(out)
}

/// An f32 as the shortest decimal that reads back as the same f32, so that
/// `1e-5` is written as `1e-5` and not as its f64 widening `9.99999974e-6`.
fn short_f32(x: f32) -> Value {
    let shortest: f64 = x.to_string().parse().unwrap_or(f64::from(x));
    json!(shortest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: Value) -> Result<ModelConfig, HfError> {
        config_from_json(Path::new("/d/config.json"), &json, "d")
    }

    fn llama_json() -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 576, "intermediate_size": 1536,
            "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
            "vocab_size": 49152, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
            "max_position_embeddings": 8192, "tie_word_embeddings": true,
            "rope_scaling": null, "head_dim": null
        })
    }

    #[test]
    fn reads_a_llama_config_with_neox_rope() {
        let c = parse(llama_json()).unwrap();
        assert_eq!(c.arch, Arch::Llama);
        assert_eq!(
            (c.n_layers, c.hidden, c.n_heads, c.n_kv_heads),
            (30, 576, 9, 3)
        );
        assert_eq!(
            (c.head_dim, c.rope_dim, c.ffn, c.vocab),
            (64, 64, 1536, 49152)
        );
        assert_eq!(c.rope_style, RopeStyle::Neox);
        assert_eq!(c.rope_theta, 100000.0);
        assert_eq!(c.rms_eps, 1e-5);
        assert_eq!(c.train_context, 8192);
        assert!(c.tied_embeddings && !c.attn_bias && !c.qk_norm);
        assert_eq!(c.rope_scaling, RopeScaling::None);
    }

    #[test]
    fn qwen3_head_dim_and_qwen2_bias_and_mistral() {
        let mut j = llama_json();
        j["model_type"] = json!("qwen3");
        j["head_dim"] = json!(128);
        let c = parse(j).unwrap();
        assert_eq!(
            (c.arch, c.head_dim, c.qk_norm, c.attn_bias),
            (Arch::Qwen3, 128, true, false)
        );
        assert_eq!(c.rope_style, RopeStyle::Neox);
        let mut j = llama_json();
        j["model_type"] = json!("qwen2");
        let c = parse(j).unwrap();
        assert!(c.attn_bias && !c.qk_norm);
        let mut j = llama_json();
        j["model_type"] = json!("mistral");
        assert_eq!(parse(j).unwrap().arch, Arch::Llama);
        // No model_type: the architectures list decides.
        let mut j = llama_json();
        j.as_object_mut().unwrap().remove("model_type");
        j["architectures"] = json!(["Qwen2ForCausalLM"]);
        assert_eq!(parse(j).unwrap().arch, Arch::Qwen2);
    }

    #[test]
    fn rejects_unsupported_and_missing_keys_by_name() {
        let mut j = llama_json();
        j["model_type"] = json!("gpt_neox");
        let e = parse(j).unwrap_err().to_string();
        assert!(
            e.contains("/d/config.json") && e.contains("'model_type'") && e.contains("gpt_neox"),
            "{e}"
        );
        let mut j = llama_json();
        j.as_object_mut().unwrap().remove("hidden_size");
        let e = parse(j).unwrap_err().to_string();
        assert!(e.contains("'hidden_size'") && e.contains("missing"), "{e}");
        let mut j = llama_json();
        j["num_attention_heads"] = json!("nine");
        assert!(parse(j)
            .unwrap_err()
            .to_string()
            .contains("non-negative integer"));
        let mut j = llama_json();
        j["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
        let e = parse(j).unwrap_err().to_string();
        assert!(
            e.contains("'rope_scaling'") && e.contains("'yarn' is not supported"),
            "{e}"
        );
        let mut j = llama_json();
        j["num_key_value_heads"] = json!(2);
        assert!(parse(j).unwrap_err().to_string().contains("not a multiple"));
    }

    #[test]
    fn linear_scaling_reads_either_key_name() {
        let mut j = llama_json();
        j["rope_scaling"] = json!({"type": "linear", "factor": 2.0});
        assert_eq!(parse(j).unwrap().rope_scaling, RopeScaling::Linear(2.0));
        let mut j = llama_json();
        j["rope_scaling"] = json!({"rope_type": "linear", "factor": 1.0});
        assert_eq!(parse(j).unwrap().rope_scaling, RopeScaling::None);
    }

    #[test]
    fn llama3_factors_match_llama_cpp_for_llama_3_1() {
        // Llama 3.1 8B: theta 500000, head_dim 128. Expected values computed
        // with llama.cpp's converter formula in float32 numpy.
        let mut j = llama_json();
        j["hidden_size"] = json!(4096);
        j["num_attention_heads"] = json!(32);
        j["num_key_value_heads"] = json!(8);
        j["rope_theta"] = json!(500000.0);
        j["rope_scaling"] = json!({
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192
        });
        let RopeScaling::FreqFactors(f) = parse(j).unwrap().rope_scaling else {
            panic!("expected frequency factors");
        };
        assert_eq!(f.len(), 64);
        assert_eq!(f.iter().filter(|&&x| x == 1.0).count(), 29);
        assert_eq!(f.iter().filter(|&&x| x == 8.0).count(), 29);
        let middle = [1.207484, 1.553415, 2.026313, 2.69453, 3.684253, 5.257327];
        for (i, want) in middle.iter().enumerate() {
            assert!(
                (f[29 + i] - want).abs() < 1e-4,
                "pair {}: {} vs {want}",
                29 + i,
                f[29 + i]
            );
        }
    }

    #[test]
    fn written_config_reads_back_the_same() {
        let mut c = parse(llama_json()).unwrap();
        c.rope_scaling = RopeScaling::Linear(4.0);
        let j = config_to_json(
            Path::new("m.gguf"),
            &c,
            "bfloat16",
            SpecialIds {
                bos: Some(1),
                eos: Some(2),
                pad: None,
            },
        )
        .unwrap();
        assert_eq!(j["torch_dtype"], "bfloat16");
        assert_eq!(j["rms_norm_eps"], 1e-5);
        assert_eq!(j["rope_scaling"]["factor"], 4.0);
        assert_eq!(j["bos_token_id"], 1);
        assert_eq!(j["eos_token_id"], 2);
        assert!(j.get("pad_token_id").is_none());
        assert_eq!(j["architectures"][0], "LlamaForCausalLM");
        assert_eq!(parse(j).unwrap(), c);
        c.rope_scaling = RopeScaling::FreqFactors(vec![1.0; 32]);
        let e = config_to_json(Path::new("m.gguf"), &c, "float32", SpecialIds::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rope_freqs.weight") && e.contains("not supported"),
            "{e}"
        );
    }

    fn qwen3_moe_json() -> Value {
        json!({
            "architectures": ["Qwen3MoeForCausalLM"],
            "model_type": "qwen3_moe",
            "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 768,
            "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4,
            "head_dim": 128, "vocab_size": 151936, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "max_position_embeddings": 40960,
            "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": true,
            "decoder_sparse_step": 1, "mlp_only_layers": [], "tie_word_embeddings": false
        })
    }

    fn qwen2_moe_json() -> Value {
        json!({
            "architectures": ["Qwen2MoeForCausalLM"],
            "model_type": "qwen2_moe",
            "hidden_size": 2048, "intermediate_size": 5632, "moe_intermediate_size": 1408,
            "shared_expert_intermediate_size": 5632,
            "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
            "vocab_size": 151936, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "max_position_embeddings": 8192, "num_experts": 60, "num_experts_per_tok": 4,
            "norm_topk_prob": false, "decoder_sparse_step": 1, "mlp_only_layers": [],
            "tie_word_embeddings": false
        })
    }

    fn mixtral_json() -> Value {
        json!({
            "architectures": ["MixtralForCausalLM"],
            "model_type": "mixtral",
            "hidden_size": 4096, "intermediate_size": 14336,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "vocab_size": 32000, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
            "max_position_embeddings": 32768, "num_local_experts": 8,
            "num_experts_per_tok": 2, "router_aux_loss_coef": 0.02, "sliding_window": null,
            "tie_word_embeddings": false
        })
    }

    #[test]
    fn reads_a_qwen3_moe_config() {
        let c = parse(qwen3_moe_json()).unwrap();
        assert_eq!(c.arch, Arch::Qwen3Moe);
        assert!(c.qk_norm && !c.attn_bias);
        assert_eq!(c.ffn, 6144);
        let m = c.moe.as_ref().unwrap();
        assert_eq!((m.n_experts, m.n_experts_used, m.expert_ffn), (128, 8, 768));
        assert!(m.norm_topk && !m.shared_expert);
        assert!(m.dense_layers.is_empty());
        assert!((0..48).all(|l| c.is_moe_layer(l)));
        // transformers' default: the top-k weights are not renormalised.
        let mut j = qwen3_moe_json();
        j.as_object_mut().unwrap().remove("norm_topk_prob");
        assert!(!parse(j).unwrap().moe.unwrap().norm_topk);
        // Without dense layers, intermediate_size may be absent.
        let mut j = qwen3_moe_json();
        j.as_object_mut().unwrap().remove("intermediate_size");
        assert_eq!(parse(j).unwrap().ffn, 768);
        // The architectures list alone is enough.
        let mut j = qwen3_moe_json();
        j.as_object_mut().unwrap().remove("model_type");
        assert_eq!(parse(j).unwrap().arch, Arch::Qwen3Moe);
    }

    #[test]
    fn mlp_only_layers_and_decoder_sparse_step_make_dense_layers() {
        let dense = |mlp_only: Value, step: Value| {
            let mut j = qwen3_moe_json();
            j["num_hidden_layers"] = json!(8);
            j["mlp_only_layers"] = mlp_only;
            j["decoder_sparse_step"] = step;
            parse(j).unwrap().moe.unwrap().dense_layers
        };
        assert_eq!(dense(json!([]), json!(1)), Vec::<usize>::new());
        assert_eq!(dense(json!(null), json!(null)), Vec::<usize>::new());
        assert_eq!(dense(json!([0, 5]), json!(1)), vec![0, 5]);
        // A layer routes when (layer + 1) is a multiple of the step.
        assert_eq!(dense(json!([]), json!(2)), vec![0, 2, 4, 6]);
        assert_eq!(dense(json!([]), json!(3)), vec![0, 1, 3, 4, 6, 7]);
        assert_eq!(dense(json!([1, 7]), json!(2)), vec![0, 1, 2, 4, 6, 7]);
        // Entries past the last layer are ignored, as transformers does.
        assert_eq!(dense(json!([2, 40]), json!(1)), vec![2]);
        let mut j = qwen3_moe_json();
        j["num_hidden_layers"] = json!(4);
        j["mlp_only_layers"] = json!([1]);
        let c = parse(j).unwrap();
        assert!(c.is_moe_layer(0) && !c.is_moe_layer(1) && c.is_moe_layer(2));
        assert!(c.has_dense_ffn(1) && !c.has_dense_ffn(0));
        // The dense layers' width is needed once there are dense layers.
        let mut j = qwen3_moe_json();
        j["mlp_only_layers"] = json!([3]);
        j.as_object_mut().unwrap().remove("intermediate_size");
        let e = parse(j).unwrap_err().to_string();
        assert!(
            e.contains("'intermediate_size'") && e.contains("missing") && e.contains("layer 3"),
            "{e}"
        );
    }

    #[test]
    fn reads_a_qwen2_moe_config_with_its_shared_expert() {
        let c = parse(qwen2_moe_json()).unwrap();
        assert_eq!(c.arch, Arch::Qwen2Moe);
        assert!(c.attn_bias && !c.qk_norm);
        // The one dense FFN width is the shared expert's.
        assert_eq!(c.ffn, 5632);
        let m = c.moe.as_ref().unwrap();
        assert_eq!((m.n_experts, m.n_experts_used, m.expert_ffn), (60, 4, 1408));
        assert!(m.shared_expert && !m.norm_topk);
        assert!((0..24).all(|l| c.is_moe_layer(l) && c.has_dense_ffn(l)));

        let mut j = qwen2_moe_json();
        j["shared_expert_intermediate_size"] = json!(4096);
        // Without dense layers the other width does not matter.
        assert_eq!(parse(j.clone()).unwrap().ffn, 4096);
        j["mlp_only_layers"] = json!([2]);
        let e = parse(j).unwrap_err().to_string();
        assert!(
            e.contains("not supported") && e.contains("5632") && e.contains("4096"),
            "{e}"
        );
        // Dense layers as wide as the shared expert are fine.
        let mut j = qwen2_moe_json();
        j["decoder_sparse_step"] = json!(2);
        let c = parse(j).unwrap();
        assert_eq!(c.moe.unwrap().dense_layers.len(), 12);
        let mut j = qwen2_moe_json();
        j.as_object_mut()
            .unwrap()
            .remove("shared_expert_intermediate_size");
        let e = parse(j).unwrap_err().to_string();
        assert!(
            e.contains("'shared_expert_intermediate_size'") && e.contains("missing"),
            "{e}"
        );
    }

    #[test]
    fn reads_a_mixtral_config_as_llama_with_experts() {
        let c = parse(mixtral_json()).unwrap();
        assert_eq!(c.arch, Arch::Llama);
        assert_eq!(c.rope_style, RopeStyle::Neox);
        let m = c.moe.as_ref().unwrap();
        assert_eq!((m.n_experts, m.n_experts_used, m.expert_ffn), (8, 2, 14336));
        assert!(m.norm_topk && !m.shared_expert && m.dense_layers.is_empty());
        assert_eq!(c.ffn, 14336);
        let mut j = mixtral_json();
        j.as_object_mut().unwrap().remove("model_type");
        assert_eq!(parse(j).unwrap().moe.unwrap().n_experts, 8);
        // Qwen's key means nothing to Mixtral.
        let mut j = mixtral_json();
        j.as_object_mut().unwrap().remove("num_local_experts");
        j["num_experts"] = json!(8);
        let e = parse(j).unwrap_err().to_string();
        assert!(
            e.contains("'num_local_experts'") && e.contains("missing"),
            "{e}"
        );
    }

    #[test]
    fn rejects_missing_and_invalid_moe_keys_by_name() {
        // (base config, key, value set, what the error must say)
        type Case = (fn() -> Value, &'static str, Value, &'static str);
        let cases: [Case; 9] = [
            (qwen3_moe_json, "num_experts", json!(null), "missing"),
            (qwen3_moe_json, "num_experts", json!(0), "positive"),
            (
                qwen3_moe_json,
                "num_experts_per_tok",
                json!(null),
                "missing",
            ),
            (
                qwen3_moe_json,
                "num_experts_per_tok",
                json!(129),
                "of 128 experts",
            ),
            (
                qwen3_moe_json,
                "moe_intermediate_size",
                json!(null),
                "missing",
            ),
            (
                qwen3_moe_json,
                "decoder_sparse_step",
                json!(0),
                "at least 1",
            ),
            (qwen3_moe_json, "mlp_only_layers", json!("0,1"), "list"),
            (qwen2_moe_json, "mlp_only_layers", json!([1, -2]), "list"),
            (
                mixtral_json,
                "num_experts_per_tok",
                json!(0),
                "must be 1 to 8",
            ),
        ];
        for (base, key, value, want) in cases {
            let mut j = base();
            j[key] = value;
            let e = parse(j).unwrap_err().to_string();
            assert!(
                e.contains(&format!("'{key}'")) && e.contains(want),
                "{key}: {e}"
            );
        }
        let mut j = qwen3_moe_json();
        j["norm_topk_prob"] = json!("yes");
        assert!(parse(j).unwrap_err().to_string().contains("true or false"));
        let mut j = qwen3_moe_json();
        j.as_object_mut().unwrap().remove("model_type");
        j["architectures"] = json!(["DeepseekV3ForCausalLM"]);
        let e = parse(j).unwrap_err().to_string();
        assert!(
            e.contains("'architectures'") && e.contains("DeepseekV3"),
            "{e}"
        );
    }

    #[test]
    fn moe_configs_read_back_the_same() {
        let ids = SpecialIds::default();
        let mut dense_qwen3 = qwen3_moe_json();
        dense_qwen3["mlp_only_layers"] = json!([0, 47]);
        dense_qwen3["decoder_sparse_step"] = json!(2);
        let mut dense_qwen2 = qwen2_moe_json();
        dense_qwen2["mlp_only_layers"] = json!([3]);
        for (j, arch, model_type) in [
            (qwen3_moe_json(), "Qwen3MoeForCausalLM", "qwen3_moe"),
            (dense_qwen3, "Qwen3MoeForCausalLM", "qwen3_moe"),
            (qwen2_moe_json(), "Qwen2MoeForCausalLM", "qwen2_moe"),
            (dense_qwen2, "Qwen2MoeForCausalLM", "qwen2_moe"),
            (mixtral_json(), "MixtralForCausalLM", "mixtral"),
        ] {
            let c = parse(j).unwrap();
            let out = config_to_json(Path::new("m.gguf"), &c, "float16", ids).unwrap();
            assert_eq!(out["architectures"][0], arch);
            assert_eq!(out["model_type"], model_type);
            assert_eq!(parse(out).unwrap(), c, "{model_type}");
        }
        // Shapes the HF families cannot express are refused by name.
        let mixtral = parse(mixtral_json()).unwrap();
        let with = |f: &dyn Fn(&mut MoeConfig)| {
            let mut c = mixtral.clone();
            f(c.moe.as_mut().unwrap());
            config_to_json(Path::new("m.gguf"), &c, "float16", ids)
                .unwrap_err()
                .to_string()
        };
        let e = with(&|m| m.shared_expert = true);
        assert!(
            e.contains("m.gguf") && e.contains("shared expert") && e.contains("not supported"),
            "{e}"
        );
        assert!(with(&|m| m.norm_topk = false).contains("renormalised"));
        assert!(with(&|m| m.dense_layers = vec![0]).contains("dense layers"));
        let mut c = parse(qwen2_moe_json()).unwrap();
        c.moe.as_mut().unwrap().shared_expert = false;
        let e = config_to_json(Path::new("m.gguf"), &c, "float16", ids)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no shared expert") && e.contains("qwen2_moe"),
            "{e}"
        );
    }
}
