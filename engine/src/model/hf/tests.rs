//! Tests across the module: SmolLM2 converted to HF and run against the
//! GGUF path, and hand-built directories that must be refused by name.

use crate::model::kv_type::KvType;
use std::path::Path;
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::safetensors::file_bytes;
use super::*;
use crate::kernels::WeightBytes;
use crate::model::config::{ModelConfig, RopeStyle};
use crate::model::gguf::{GgufModel, MetadataArray};
use crate::model::layout::LocalLayout;
use crate::model::store::testutil::smollm2_path;
use crate::model::transformer::Transformer;
use crate::model::weights::{GgufSource, ModelWeights, TensorSource};

/// "The capital of France is", "Once upon a time, there was",
/// "The quick brown fox jumps over the".
const PROMPTS: [&[u32]; 3] = [
    &[504, 3575, 282, 4649, 314],
    &[6403, 1980, 253, 655, 28, 665, 436],
    &[504, 2365, 6354, 16438, 27003, 690, 260],
];
const GREEDY_TOKENS: usize = 32;

/// Token ids and their expected top three (token, logit).
type Golden = (&'static [u32], [(u32, f32); 3]);

/// Last-position logits and a greedy continuation per prompt.
struct Run {
    logits: Vec<Vec<f32>>,
    greedy: Vec<Vec<u32>>,
    /// The logits each greedy token was chosen from.
    greedy_logits: Vec<Vec<Vec<f32>>>,
}

fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .fold((0, f32::MIN), |a, (i, &x)| if x > a.1 { (i, x) } else { a })
        .0 as u32
}

/// The best token and its lead over the runner-up.
fn top2(v: &[f32]) -> (u32, u32, f32) {
    let best = argmax(v);
    let (second, x) = v
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != best as usize)
        .fold((0, f32::MIN), |a, (i, &x)| if x > a.1 { (i, x) } else { a });
    (best, second as u32, v[best as usize] - x)
}

fn transformer(config: &ModelConfig, source: &dyn TensorSource) -> Transformer {
    let layout = LocalLayout::whole(config);
    let weights = ModelWeights::load(config, &layout, source).unwrap();
    Transformer::new(config.clone(), layout, weights, 64, KvType::F32)
}

fn run(config: &ModelConfig, source: &dyn TensorSource) -> Run {
    let mut t = transformer(config, source);
    let mut out = Run {
        logits: Vec::new(),
        greedy: Vec::new(),
        greedy_logits: Vec::new(),
    };
    for p in PROMPTS {
        t.truncate(0);
        let mut last = t.forward(p, 0).unwrap();
        out.logits.push(last.clone());
        let (mut tokens, mut logits) = (Vec::new(), Vec::new());
        for _ in 0..GREEDY_TOKENS {
            let next = argmax(&last);
            tokens.push(next);
            let pos = t.position();
            logits.push(std::mem::replace(
                &mut last,
                t.forward(&[next], pos).unwrap(),
            ));
        }
        out.greedy.push(tokens);
        out.greedy_logits.push(logits);
    }
    out
}

struct Reference {
    gguf: GgufModel,
    config: ModelConfig,
    run: Run,
}

/// The GGUF path's results, computed once per test process.
fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let gguf = GgufModel::open(smollm2_path()).unwrap();
        let config = ModelConfig::from_gguf(&gguf).unwrap();
        let run = run(&config, &GgufSource { file: &gguf });
        Reference { gguf, config, run }
    })
}

/// (max, mean) absolute difference.
fn abs_diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let sum: f64 = a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).sum();
    (max, (sum / a.len() as f64) as f32)
}

/// Logit differences between the GGUF path and an HF path. The GGUF path
/// rounds every matmul input to 8 bits (Q8_1 blocks of 32); the HF F32 path
/// does not. Measured on SmolLM2 (3 prompts): max 0.85-1.61, mean 0.20-0.74,
/// for both F32 and BF16 conversions (before attention's dot product went
/// to 8 lanes: max 0.66-1.51, mean 0.19-0.47; the roundings that differ are
/// amplified through 30 layers, so one prompt's figure moves with any change
/// of summation order). The same F32 weights run with the
/// wrong RoPE pairing (what a missing or wrong Q/K un-permutation amounts
/// to) differ from a float64 reference by max 5.7-11.6, mean 1.0-4.7, so
/// these bounds separate rounding from a wrong conversion.
const MAX_LOGIT_DIFF: f32 = 2.0;
const MEAN_LOGIT_DIFF: f32 = 0.85;
/// A greedy step whose top-2 lead is under this may flip between the paths:
/// the two candidates' logits each move by up to about one unit above.
const NEAR_TIE: f32 = 0.5;

/// Compares an HF run with the GGUF reference: last-position logits within
/// the bounds above with the same top-1, and greedy continuations equal up to
/// the first near-tie (where the HF token must be the GGUF runner-up).
/// Returns, per prompt, the step where greedy decoding diverged, if any.
fn compare(label: &str, hf: &Run) -> Vec<Option<usize>> {
    let r = &reference().run;
    let mut diverged = Vec::new();
    for (i, (a, b)) in r.logits.iter().zip(&hf.logits).enumerate() {
        let (max, mean) = abs_diff(a, b);
        eprintln!(
            "{label} prompt {i}: top-1 gguf {} hf {}, |diff| max {max:.4} mean {mean:.4}, gguf top-2 lead {:.3}",
            argmax(a),
            argmax(b),
            top2(a).2
        );
        assert_eq!(argmax(a), argmax(b), "{label}: prompt {i} top-1 differs");
        assert!(
            max <= MAX_LOGIT_DIFF,
            "{label}: prompt {i} max |diff| {max}"
        );
        assert!(
            mean <= MEAN_LOGIT_DIFF,
            "{label}: prompt {i} mean |diff| {mean}"
        );

        let step = (0..GREEDY_TOKENS).find(|&s| r.greedy[i][s] != hf.greedy[i][s]);
        match step {
            None => eprintln!("{label} prompt {i}: {GREEDY_TOKENS} greedy tokens identical"),
            Some(s) => {
                let (g_best, g_second, g_lead) = top2(&r.greedy_logits[i][s]);
                let (h_best, _, h_lead) = top2(&hf.greedy_logits[i][s]);
                eprintln!(
                    "{label} prompt {i}: greedy diverges at step {s}: gguf {g_best} (lead {g_lead:.3} over {g_second}) vs hf {h_best} (lead {h_lead:.3})\n  gguf {:?}\n  hf   {:?}",
                    r.greedy[i], hf.greedy[i]
                );
                // A near-tie on both sides, and the HF pick is one the GGUF
                // path also had within a near-tie of its best (ties can be
                // three-way).
                let g = &r.greedy_logits[i][s];
                let hf_pick_gap = g[g_best as usize] - g[h_best as usize];
                assert!(
                    g_lead < NEAR_TIE
                        && h_lead < NEAR_TIE
                        && (h_best == g_second || hf_pick_gap < NEAR_TIE),
                    "{label} prompt {i}: greedy diverges at step {s} without a near-tie"
                );
            }
        }
        diverged.push(step);
    }
    diverged
}

fn peak_rss_mib() -> Option<u64> {
    crate::metrics::memory::peak_rss_bytes().map(|b| b / (1024 * 1024))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn token_text(gguf: &GgufModel, id: usize) -> String {
    match gguf.get_array("tokenizer.ggml.tokens").unwrap() {
        Some(MetadataArray::String(t)) => t[id].clone(),
        other => panic!("no token list: {other:?}"),
    }
}

#[test]
fn smollm2_f32_conversion_matches_the_gguf_path() {
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smollm2-f32");
    let tokenizer = r#"{"version":"1.0","model":{"type":"BPE"}}"#;
    let report = gguf_to_hf(&r.gguf, &out, HfDtype::F32, None, Some(tokenizer)).unwrap();
    eprintln!("F32 conversion: peak RSS so far {:?} MiB", peak_rss_mib());
    assert_eq!(report.tensors, r.gguf.tensor_count());
    let names: Vec<&str> = report.files.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(!names.contains(&"model.safetensors.index.json"));
    // 134.5M parameters, four bytes each.
    assert_eq!(report.data_bytes, 134_515_008 * 4);
    assert_eq!(
        std::fs::read_to_string(out.join("tokenizer.json")).unwrap(),
        tokenizer
    );

    let config = read_json(&out.join("config.json"));
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["torch_dtype"], "float32");
    assert_eq!(config["num_key_value_heads"], 3);
    assert_eq!(config["head_dim"], 64);
    assert_eq!(config["tie_word_embeddings"], true);
    assert_eq!(config["bos_token_id"], 1);
    assert_eq!(config["eos_token_id"], 2);
    let tok_config = read_json(&out.join("tokenizer_config.json"));
    assert_eq!(tok_config["bos_token"], token_text(&r.gguf, 1).as_str());
    assert_eq!(tok_config["eos_token"], token_text(&r.gguf, 2).as_str());
    assert_eq!(
        tok_config["chat_template"].as_str(),
        r.gguf.get_str("tokenizer.chat_template").unwrap()
    );

    // The reference safetensors crate accepts what we wrote.
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), r.gguf.tensor_count());
    assert_eq!(
        st.tensor("model.embed_tokens.weight").unwrap().shape(),
        &[49152, 576]
    );
    assert_eq!(
        st.tensor("model.layers.0.self_attn.k_proj.weight")
            .unwrap()
            .shape(),
        &[192, 576]
    );
    assert_eq!(st.tensor("model.norm.weight").unwrap().shape(), &[576]);
    drop(bytes);

    let (config, source) = open_hf_dir(&out).unwrap();
    assert_eq!(config.rope_style, RopeStyle::Neox);
    assert_eq!(
        ModelConfig {
            rope_style: r.config.rope_style,
            name: r.config.name.clone(),
            ..config.clone()
        },
        r.config
    );
    assert_eq!(
        config,
        ModelConfig {
            name: config.name.clone(),
            ..report.config.clone()
        }
    );
    let w = source.tensor("blk.3.ffn_down.weight").unwrap().unwrap();
    assert!(
        matches!(w.data, WeightBytes::Mapped { .. }),
        "weights must not be copied"
    );
    let hf = run(&config, &source);
    let diverged = compare("F32", &hf);
    // " Paris.\n\nThe" comes out the same on both paths; see the near-tie
    // check in `compare` for what may follow.
    assert!(diverged[0].is_none_or(|s| s >= 5), "{diverged:?}");

    // The F32 path against an independent float64 NumPy forward of the
    // converted model.safetensors (HF llama: RoPE over halves, no
    // permutation), top three logits each. Measured agreement over the whole
    // vocabulary: 5e-5.
    let golden: [Golden; 2] = [
        (
            PROMPTS[0],
            [(7042, 17.37126), (260, 14.88859), (4528, 13.24497)],
        ),
        (
            &[504, 3575, 282, 4649, 314, 7042, 30, 198, 198, 504],
            [(2988, 14.6219), (1797, 14.40207), (805, 14.07664)],
        ),
    ];
    let mut t = transformer(&config, &source);
    for (ids, top) in golden {
        t.truncate(0);
        let logits = t.forward(ids, 0).unwrap();
        assert_eq!(argmax(&logits), top[0].0);
        for (id, want) in top {
            let got = logits[id as usize];
            assert!(
                (got - want).abs() < 1e-3,
                "token {id}: {got} vs float64 {want}"
            );
        }
    }
}

#[test]
fn smollm2_bf16_sharded_conversion_matches_the_gguf_path() {
    let r = reference();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smollm2-bf16");
    let shard = 100 << 20;
    let report = gguf_to_hf(&r.gguf, &out, HfDtype::BF16, Some(shard), None).unwrap();
    let shards: Vec<&(String, u64)> = report
        .files
        .iter()
        .filter(|(n, _)| n.ends_with(".safetensors"))
        .collect();
    assert!(shards.len() >= 2, "{:?}", report.files);
    for (name, size) in &shards {
        assert!(
            name.starts_with("model-0000") && name.contains(&format!("-of-{:05}", shards.len()))
        );
        // Data within the limit; the header adds a few kilobytes.
        assert!(*size < shard + (64 << 10), "{name}: {size} bytes");
    }
    assert!(!out.join("tokenizer.json").exists());
    let index = read_json(&out.join("model.safetensors.index.json"));
    assert_eq!(index["metadata"]["total_size"], report.data_bytes);
    assert_eq!(
        index["weight_map"].as_object().unwrap().len(),
        r.gguf.tensor_count()
    );
    assert_eq!(
        read_json(&out.join("config.json"))["torch_dtype"],
        "bfloat16"
    );

    let (config, source) = open_hf_dir(&out).unwrap();
    assert_eq!(source.files().count(), shards.len());
    let hf = run(&config, &source);
    let diverged = compare("BF16", &hf);
    assert!(diverged[0].is_none_or(|s| s >= 5), "{diverged:?}");
}

#[test]
fn converter_refuses_an_existing_directory() {
    let gguf = GgufModel::open(smollm2_path()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let e = gguf_to_hf(&gguf, tmp.path(), HfDtype::F16, None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already exists"), "{e}");
}

// ---- hand-built directories ----

const TINY_HIDDEN: usize = 8;
const TINY_FFN: usize = 16;
const TINY_VOCAB: usize = 16;
const TINY_HEAD_DIM: usize = 4;

fn tiny_config(model_type: &str) -> Value {
    json!({
        "model_type": model_type,
        "hidden_size": TINY_HIDDEN, "intermediate_size": TINY_FFN,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": TINY_HEAD_DIM, "vocab_size": TINY_VOCAB, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": false
    })
}

type TensorSpec = (String, &'static str, Vec<usize>, Vec<u8>);

/// Deterministic small values in `dtype`.
fn values(n: usize, dtype: &str, seed: usize) -> Vec<u8> {
    let v = (0..n).map(|i| (((i * 7 + seed * 13) % 17) as f32 - 8.0) / 16.0);
    match dtype {
        "F32" => v.flat_map(f32::to_le_bytes).collect(),
        "F16" => v
            .flat_map(|x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        "BF16" => v
            .flat_map(|x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        _ => vec![0; n * 8],
    }
}

/// Every tensor a one-layer tiny model of `model_type` needs, in mixed dtypes.
fn tiny_tensors(model_type: &str) -> Vec<TensorSpec> {
    let (h, f, v, hd) = (TINY_HIDDEN, TINY_FFN, TINY_VOCAB, TINY_HEAD_DIM);
    let mut shapes: Vec<(&str, Vec<usize>)> = vec![
        ("model.embed_tokens.weight", vec![v, h]),
        ("lm_head.weight", vec![v, h]),
        ("model.norm.weight", vec![h]),
        ("model.layers.0.input_layernorm.weight", vec![h]),
        ("model.layers.0.post_attention_layernorm.weight", vec![h]),
        ("model.layers.0.self_attn.q_proj.weight", vec![2 * hd, h]),
        ("model.layers.0.self_attn.k_proj.weight", vec![hd, h]),
        ("model.layers.0.self_attn.v_proj.weight", vec![hd, h]),
        ("model.layers.0.self_attn.o_proj.weight", vec![h, 2 * hd]),
        ("model.layers.0.mlp.gate_proj.weight", vec![f, h]),
        ("model.layers.0.mlp.up_proj.weight", vec![f, h]),
        ("model.layers.0.mlp.down_proj.weight", vec![h, f]),
    ];
    if model_type == "qwen3" {
        shapes.push(("model.layers.0.self_attn.q_norm.weight", vec![hd]));
        shapes.push(("model.layers.0.self_attn.k_norm.weight", vec![hd]));
    }
    if model_type == "qwen2" {
        shapes.push(("model.layers.0.self_attn.q_proj.bias", vec![2 * hd]));
        shapes.push(("model.layers.0.self_attn.k_proj.bias", vec![hd]));
        shapes.push(("model.layers.0.self_attn.v_proj.bias", vec![hd]));
    }
    let dtypes = ["F32", "F16", "BF16"];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let dtype = dtypes[i % 3];
            let data = values(shape.iter().product(), dtype, i);
            (name.to_string(), dtype, shape, data)
        })
        .collect()
}

fn st_bytes(tensors: &[TensorSpec]) -> Vec<u8> {
    let borrowed: Vec<(&str, &'static str, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
        .collect();
    file_bytes(&borrowed)
}

fn tiny_dir(config: Option<Value>, files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if let Some(c) = config {
        std::fs::write(dir.path().join("config.json"), c.to_string()).unwrap();
    }
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

fn open_err(dir: &tempfile::TempDir) -> String {
    open_hf_dir(dir.path()).unwrap_err().to_string()
}

#[test]
fn tiny_models_of_each_arch_load_and_run() {
    for arch in ["llama", "qwen2", "qwen3"] {
        let tensors = tiny_tensors(arch);
        let bytes = st_bytes(&tensors);
        let dir = tiny_dir(
            Some(tiny_config(arch)),
            &[("model.safetensors", bytes.clone())],
        );
        let (config, source) = open_hf_dir(dir.path()).unwrap();
        assert_eq!(config.arch.name(), arch);
        assert!(!config.tied_embeddings);
        // Mapped, at the right offset: the bytes are the ones we wrote.
        let q = source.tensor("blk.0.attn_q.weight").unwrap().unwrap();
        let (_, _, shape, data) = &tensors[5];
        assert_eq!((q.rows, q.cols), (shape[0], shape[1]));
        assert_eq!(&q.data[..], &data[..]);
        assert_eq!(q.dtype.name(), tensors[5].1);
        if arch == "qwen3" {
            assert_eq!(
                source.hf_name("blk.0.attn_q_norm.weight"),
                Some("model.layers.0.self_attn.q_norm.weight")
            );
        }
        let layout = LocalLayout::whole(&config);
        let weights = ModelWeights::load(&config, &layout, &source).unwrap();
        assert_eq!(weights.layers[0].bq.is_some(), arch == "qwen2");
        assert_eq!(weights.layers[0].q_norm.is_some(), arch == "qwen3");
        let mut t = Transformer::new(config, layout, weights, 8, KvType::F32);
        let logits = t.forward(&[1, 2, 3], 0).unwrap();
        assert_eq!(logits.len(), TINY_VOCAB);
        assert!(logits.iter().all(|x| x.is_finite()), "{arch}: {logits:?}");
    }
}

#[test]
fn missing_lm_head_means_tied_and_shards_are_found_without_an_index() {
    let tensors: Vec<TensorSpec> = tiny_tensors("llama")
        .into_iter()
        .filter(|t| t.0 != "lm_head.weight")
        .collect();
    let (a, b) = tensors.split_at(4);
    let dir = tiny_dir(
        Some(tiny_config("llama")),
        &[
            ("a.safetensors", st_bytes(a)),
            ("b.safetensors", st_bytes(b)),
        ],
    );
    let (config, source) = open_hf_dir(dir.path()).unwrap();
    assert!(config.tied_embeddings);
    assert_eq!(source.files().count(), 2);
    let layout = LocalLayout::whole(&config);
    ModelWeights::load(&config, &layout, &source).unwrap();
}

#[test]
fn rejects_a_missing_config_and_an_unsupported_model_type() {
    let bytes = st_bytes(&tiny_tensors("llama"));
    let dir = tiny_dir(None, &[("model.safetensors", bytes.clone())]);
    let e = open_err(&dir);
    assert!(
        e.contains("config.json") && e.contains("cannot read"),
        "{e}"
    );
    let dir = tiny_dir(Some(tiny_config("gpt2")), &[("model.safetensors", bytes)]);
    let e = open_err(&dir);
    assert!(
        e.contains("config.json") && e.contains("'model_type'") && e.contains("'gpt2'"),
        "{e}"
    );
    let dir = tiny_dir(Some(tiny_config("llama")), &[]);
    let e = open_err(&dir);
    assert!(e.contains("no model.safetensors"), "{e}");
}

#[test]
fn rejects_a_header_length_past_the_end_of_the_file() {
    let mut bytes = st_bytes(&tiny_tensors("llama"));
    let len = bytes.len() as u64;
    bytes[..8].copy_from_slice(&(len * 2).to_le_bytes());
    let dir = tiny_dir(Some(tiny_config("llama")), &[("model.safetensors", bytes)]);
    let e = open_err(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("past the end of the file"),
        "{e}"
    );
}

#[test]
fn rejects_tensor_offsets_past_the_end_of_the_file() {
    let bytes = st_bytes(&tiny_tensors("llama"));
    // Drop the last 8 bytes: the tensor laid out last now runs past the end.
    let truncated = bytes[..bytes.len() - 8].to_vec();
    let dir = tiny_dir(
        Some(tiny_config("llama")),
        &[("model.safetensors", truncated)],
    );
    let e = open_err(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("tensor '"),
        "{e}"
    );
    assert!(e.contains("model.layers.0.mlp.down_proj.weight"), "{e}");
    assert!(e.contains("past the end of the data section"), "{e}");
}

#[test]
fn rejects_a_shape_that_does_not_match_the_byte_length() {
    let mut tensors = tiny_tensors("llama");
    // Claim 9 rows where 8 rows of bytes are stored.
    tensors[5].2 = vec![9, TINY_HIDDEN];
    let bytes = st_bytes(&tensors);
    let dir = tiny_dir(Some(tiny_config("llama")), &[("model.safetensors", bytes)]);
    let e = open_err(&dir);
    assert!(e.contains("model.safetensors"), "{e}");
    assert!(
        e.contains("model.layers.0.self_attn.q_proj.weight") && e.contains("needs"),
        "{e}"
    );
}

#[test]
fn rejects_an_unsupported_dtype_naming_file_and_tensor() {
    let mut tensors = tiny_tensors("llama");
    let n: usize = tensors[5].2.iter().product();
    tensors[5].1 = "I64";
    tensors[5].3 = vec![0; n * 8];
    let dir = tiny_dir(
        Some(tiny_config("llama")),
        &[("model.safetensors", st_bytes(&tensors))],
    );
    let e = open_err(&dir);
    assert!(e.contains("model.safetensors"), "{e}");
    assert!(
        e.contains("model.layers.0.self_attn.q_proj.weight") && e.contains("I64"),
        "{e}"
    );
    // An integer tensor the engine does not use is fine.
    let mut tensors = tiny_tensors("llama");
    tensors.push(("model.extra_ids".into(), "I64", vec![2], vec![0; 16]));
    let dir = tiny_dir(
        Some(tiny_config("llama")),
        &[("model.safetensors", st_bytes(&tensors))],
    );
    open_hf_dir(dir.path()).unwrap();
}

#[test]
fn rejects_bad_shard_indexes() {
    let tensors = tiny_tensors("llama");
    let (a, b) = tensors.split_at(6);
    let files = [
        ("m-1.safetensors", st_bytes(a)),
        ("m-2.safetensors", st_bytes(b)),
    ];
    let map = |f: &dyn Fn(&str, usize) -> String| -> Value {
        let mut m = serde_json::Map::new();
        for (i, t) in tensors.iter().enumerate() {
            m.insert(t.0.clone(), Value::String(f(&t.0, i)));
        }
        json!({ "weight_map": m })
    };
    let with_index = |index: Value| {
        let dir = tiny_dir(Some(tiny_config("llama")), &files);
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            index.to_string(),
        )
        .unwrap();
        dir
    };
    let good = map(&|_, i| {
        if i < 6 {
            "m-1.safetensors".into()
        } else {
            "m-2.safetensors".into()
        }
    });
    let dir = with_index(good);
    let (_, source) = open_hf_dir(dir.path()).unwrap();
    assert_eq!(source.files().count(), 2);

    let escaping = map(&|_, i| {
        if i < 6 {
            "../m-1.safetensors".into()
        } else {
            "m-2.safetensors".into()
        }
    });
    let e = open_err(&with_index(escaping));
    assert!(
        e.contains("model.safetensors.index.json") && e.contains("not a .safetensors file name"),
        "{e}"
    );

    let wrong = map(&|_, _| "m-1.safetensors".into());
    let e = open_err(&with_index(wrong));
    assert!(
        e.contains("model.safetensors.index.json") && e.contains("does not hold it"),
        "{e}"
    );

    // The same tensor in two files.
    let dup = [
        ("x.safetensors", st_bytes(a)),
        ("y.safetensors", st_bytes(&tensors)),
    ];
    let dir = tiny_dir(Some(tiny_config("llama")), &dup);
    let e = open_err(&dir);
    assert!(
        e.contains("y.safetensors") && e.contains("also stored in x.safetensors"),
        "{e}"
    );
}
