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
use crate::model::config::{Arch, ModelConfig, RopeScaling, RopeStyle};

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

    fn str(&self, key: &str) -> Result<Option<&str>, HfError> {
        self.get(key)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.err(key, format!("expected a string, found {v}")))
            })
            .transpose()
    }
}

/// The arch from `model_type`, else from `architectures[0]`.
fn arch_of(keys: &Keys) -> Result<Arch, HfError> {
    if let Some(t) = keys.str("model_type")? {
        return Arch::from_name(t).ok_or_else(|| {
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
    let arch = match first {
        "LlamaForCausalLM" | "MistralForCausalLM" => Some(Arch::Llama),
        "Qwen2ForCausalLM" => Some(Arch::Qwen2),
        "Qwen3ForCausalLM" => Some(Arch::Qwen3),
        _ => None,
    };
    arch.ok_or_else(|| {
        keys.err(
            "architectures",
            format!(
                "'{first}' is not supported (supported: {})",
                Arch::SUPPORTED
            ),
        )
    })
}

/// Converts a parsed `config.json`. `path` is only used in messages.
pub fn config_from_json(path: &Path, json: &Value, name: &str) -> Result<ModelConfig, HfError> {
    let obj = json.as_object().ok_or_else(|| HfError::Json {
        path: path.to_path_buf(),
        problem: "config is not a JSON object".into(),
    })?;
    let keys = Keys { path, obj };
    let arch = arch_of(&keys)?;
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
    let config = ModelConfig {
        arch,
        name: name.to_string(),
        n_layers: keys.require_usize("num_hidden_layers")?,
        hidden,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn: keys.require_usize("intermediate_size")?,
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
        moe: None,
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

/// Names HF uses for each arch: (`architectures[0]`, `model_type`).
fn hf_arch_names(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::Llama => ("LlamaForCausalLM", "llama"),
        Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        Arch::Qwen3 => ("Qwen3ForCausalLM", "qwen3"),
        Arch::Qwen2Moe => ("Qwen2MoeForCausalLM", "qwen2_moe"),
        Arch::Qwen3Moe => ("Qwen3MoeForCausalLM", "qwen3_moe"),
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
    let (architecture, model_type) = hf_arch_names(config.arch);
    let mut out = json!({
        "architectures": [architecture],
        "model_type": model_type,
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
}
