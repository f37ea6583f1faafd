//! Synthetic models: they reopen as the shapes and types asked for, carry the
//! metadata llama.cpp reads, are reproducible per seed, and bad shapes are
//! refused with a suggestion.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::*;
use crate::kernels::dequant::dequantize_row;
use crate::model::gguf::GgufFile;

fn tiny(arch: SynthArch, quant: GgmlType) -> SynthOptions {
    let mut o = SynthOptions::preset(arch, "tiny").expect("tiny preset");
    o.quant = quant;
    o
}

fn write(opts: &SynthOptions, dir: &Path, name: &str) -> (GgufFile, SynthReport) {
    let path = dir.join(name);
    let mut last = (0, 0);
    let report = synth(opts, &path, &mut |done, total| last = (done, total)).expect("synth");
    assert_eq!(
        last,
        (report.bytes, report.bytes),
        "progress ends at the total"
    );
    (GgufFile::open(&path).expect("reopen"), report)
}

#[test]
fn tiny_models_reopen_with_the_planned_tensors_for_every_arch() {
    let dir = tempfile::tempdir().expect("tempdir");
    for arch in SynthArch::ALL {
        for quant in [
            GgmlType::Q4_0,
            GgmlType::Q4K,
            GgmlType::Q8_0,
            GgmlType::F16,
            GgmlType::Q6K,
        ] {
            let opts = tiny(arch, quant);
            let (f, report) = write(&opts, dir.path(), &format!("{arch}-{quant}.gguf"));
            let plan = tensor_plan(&opts);
            assert_eq!(report.tensors, plan.len());
            assert_eq!(report.bytes, planned_size(&opts).expect("size"));
            assert_eq!(f.tensors.len(), plan.len(), "{arch} {quant}");
            for (got, want) in f.tensors.iter().zip(&plan) {
                assert_eq!(got.name, want.name);
                assert_eq!(got.dims, want.dims, "{}", want.name);
                assert_eq!(got.dtype, want.dtype, "{}", want.name);
            }
            let per_layer = match arch {
                SynthArch::Llama => 9,
                SynthArch::Qwen2 => 12,
                SynthArch::Qwen3 => 11,
            };
            assert_eq!(plan.len(), 3 + 2 * per_layer, "{arch}");
            let emb = f.tensor("token_embd.weight").expect("token_embd");
            assert_eq!((emb.dims.clone(), emb.dtype), (vec![256, 320], quant));
            assert_eq!(
                f.tensor("blk.1.ffn_down.weight").expect("ffn_down").dims,
                vec![512, 256]
            );
            assert_eq!(
                f.tensor("blk.0.attn_k.weight").expect("attn_k").dims,
                vec![256, 128]
            );
            assert_eq!(
                f.tensor("blk.0.attn_norm.weight").expect("norm").dtype,
                GgmlType::F32
            );
        }
    }
}

#[test]
fn arch_specific_tensors_are_there() {
    let plan = |arch| -> Vec<(String, Vec<u64>, GgmlType)> {
        tensor_plan(&tiny(arch, GgmlType::Q4_0))
            .into_iter()
            .map(|t| (t.name, t.dims, t.dtype))
            .collect()
    };
    let qwen2 = plan(SynthArch::Qwen2);
    assert!(qwen2.contains(&("blk.0.attn_q.bias".into(), vec![256], GgmlType::F32)));
    assert!(qwen2.contains(&("blk.1.attn_v.bias".into(), vec![128], GgmlType::F32)));
    let qwen3 = plan(SynthArch::Qwen3);
    assert!(qwen3.contains(&("blk.0.attn_q_norm.weight".into(), vec![64], GgmlType::F32)));
    assert!(qwen3.contains(&("blk.1.attn_k_norm.weight".into(), vec![64], GgmlType::F32)));
    let llama = plan(SynthArch::Llama);
    assert!(!llama
        .iter()
        .any(|t| t.0.contains("bias") || t.0.contains("q_norm")));
}

#[test]
fn metadata_is_what_llama_cpp_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (f, _) = write(&tiny(SynthArch::Qwen3, GgmlType::Q4K), dir.path(), "m.gguf");
    let u = |k: &str| f.require_u64(k).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f.require_str("general.architecture").expect("arch"),
        "qwen3"
    );
    assert_eq!(u("general.alignment"), 32);
    assert_eq!(u("general.file_type"), 14, "Q4_K_S");
    assert_eq!(u("qwen3.block_count"), 2);
    assert_eq!(u("qwen3.context_length"), 512);
    assert_eq!(u("qwen3.embedding_length"), 256);
    assert_eq!(u("qwen3.feed_forward_length"), 512);
    assert_eq!(u("qwen3.attention.head_count"), 4);
    assert_eq!(u("qwen3.attention.head_count_kv"), 2);
    assert_eq!(u("qwen3.rope.dimension_count"), 64);
    assert_eq!(u("qwen3.attention.key_length"), 64);
    assert_eq!(u("qwen3.attention.value_length"), 64);
    assert_eq!(u("qwen3.vocab_size"), 320);
    assert_eq!(f.get_f64("qwen3.rope.freq_base").expect("f32"), Some(1e6));
    let eps = f
        .get_f64("qwen3.attention.layer_norm_rms_epsilon")
        .expect("f32");
    assert!(eps.is_some_and(|e| (e - 1e-6).abs() < 1e-12));
    // llama.cpp insists on u32 counts and an i32 token type array.
    assert!(matches!(
        f.get("qwen3.block_count"),
        Some(MetadataValue::U32(2))
    ));

    assert_eq!(
        f.require_str("tokenizer.ggml.model").expect("model"),
        "gpt2"
    );
    assert_eq!(f.require_str("tokenizer.ggml.pre").expect("pre"), "default");
    let tokens = match f.get_array("tokenizer.ggml.tokens").expect("tokens") {
        Some(crate::model::gguf::MetadataArray::String(t)) => t.clone(),
        other => panic!("tokens: {other:?}"),
    };
    assert_eq!(tokens.len(), 320);
    assert_eq!(tokens[b' ' as usize], "Ġ");
    let types = f
        .get_array("tokenizer.ggml.token_type")
        .expect("types")
        .and_then(|a| a.to_i64_vec())
        .expect("integer types");
    assert!(matches!(
        f.get("tokenizer.ggml.token_type"),
        Some(MetadataValue::Array(
            crate::model::gguf::MetadataArray::I32(_)
        ))
    ));
    let bos = u("tokenizer.ggml.bos_token_id") as usize;
    let eos = u("tokenizer.ggml.eos_token_id") as usize;
    assert_eq!(tokens[bos], "<|begin_of_text|>");
    assert_eq!(tokens[eos], "<|end_of_text|>");
    assert_eq!((types[bos], types[eos]), (3, 3));
    let im_end = tokens
        .iter()
        .position(|t| t == "<|im_end|>")
        .expect("im_end");
    assert_eq!(types[im_end], 3);
    assert_eq!(types[319], 5, "fillers are unused tokens");
    assert_eq!(
        f.get_bool("tokenizer.ggml.add_bos_token").expect("bool"),
        Some(true)
    );
    let template = f.require_str("tokenizer.chat_template").expect("template");
    assert!(template.contains("<|im_start|>") && template.contains("add_generation_prompt"));
    let merges = f
        .get_array("tokenizer.ggml.merges")
        .expect("merges")
        .expect("present");
    assert!(merges.len() >= 4);
}

#[test]
fn weights_have_realistic_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (f, _) = write(
        &tiny(SynthArch::Llama, GgmlType::Q8_0),
        dir.path(),
        "v.gguf",
    );
    let stats = |name: &str| {
        let t = f.tensor(name).expect(name);
        let mut x = vec![0f32; t.element_count() as usize];
        dequantize_row(t.dtype.into(), f.tensor_data(t), &mut x);
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        (mean, std)
    };
    let (mean, std) = stats("token_embd.weight");
    assert!(
        mean.abs() < 1e-3 && (std - 0.02).abs() < 0.002,
        "embedding {mean} {std}"
    );
    let (_, std) = stats("blk.0.ffn_down.weight");
    let want = 1.0 / (512f64).sqrt();
    assert!(
        (std - want).abs() < 0.1 * want,
        "ffn_down std {std} vs {want}"
    );
    let (mean, std) = stats("output_norm.weight");
    assert!(
        (mean - 1.0).abs() < 0.01 && std > 0.0 && std < 0.05,
        "norm {mean} {std}"
    );
}

fn digest(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).expect("read")).to_vec()
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = tiny(SynthArch::Qwen2, GgmlType::Q4K);
    opts.seed = 7;
    write(&opts, dir.path(), "a.gguf");
    write(&opts, dir.path(), "b.gguf");
    opts.seed = 8;
    write(&opts, dir.path(), "c.gguf");
    let (a, b, c) = (
        digest(&dir.path().join("a.gguf")),
        digest(&dir.path().join("b.gguf")),
        digest(&dir.path().join("c.gguf")),
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
}

fn invalid(change: impl FnOnce(&mut SynthOptions)) -> String {
    let mut o = tiny(SynthArch::Llama, GgmlType::Q4_0);
    change(&mut o);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.gguf");
    let e = synth(&o, &path, &mut |_, _| {}).expect_err("must be refused");
    assert!(!path.exists(), "nothing written for {e}");
    e.to_string()
}

#[test]
fn bad_shapes_are_refused_with_a_suggestion() {
    assert_eq!(
        invalid(|o| o.hidden = 250),
        "hidden 250 is not divisible by heads 4: try hidden 256"
    );
    assert_eq!(
        invalid(|o| o.kv_heads = 3),
        "heads 4 is not divisible by kv_heads 3: try kv_heads 4"
    );
    assert_eq!(
        invalid(|o| {
            o.quant = GgmlType::Q4K;
            o.hidden = 64;
            o.heads = 4;
        }),
        "hidden 64 is not a whole number of Q4_K blocks (256 values each): try hidden 256"
    );
    assert_eq!(
        invalid(|o| {
            o.quant = GgmlType::Q5K;
            o.ffn = 700;
        }),
        "ffn 700 is not a whole number of Q5_K blocks (256 values each): try ffn 768"
    );
    assert_eq!(
        invalid(|o| o.ffn = 100),
        "ffn 100 is not a whole number of Q4_0 blocks (32 values each): try ffn 96"
    );
    assert!(invalid(|o| {
        o.hidden = 96;
        o.heads = 32;
    })
    .contains("head dimension 3 is odd"));
    assert_eq!(invalid(|o| o.layers = 0), "layers must be at least 1");
    assert!(invalid(|o| o.vocab = 100).contains("vocab 100 is too small"));
    assert!(invalid(|o| o.quant = GgmlType::Q8K).contains("Q8_K is an activation format"));
    let e = SynthOptions::preset(SynthArch::Llama, "13b").expect_err("unknown");
    assert_eq!(
        e.to_string(),
        "unknown preset '13b' (known: tiny, 1b, 8b, 70b)"
    );
}

#[test]
fn kv_head_suggestion_divides_heads() {
    let msg = invalid(|o| {
        o.heads = 32;
        o.kv_heads = 7;
        o.hidden = 2048;
    });
    assert_eq!(
        msg,
        "heads 32 is not divisible by kv_heads 7: try kv_heads 8"
    );
}

#[test]
fn presets_have_the_published_shapes_and_sizes() {
    let p = |name| SynthOptions::preset(SynthArch::Llama, name).expect("preset");
    let b8 = p("8b");
    assert_eq!(
        (
            b8.layers,
            b8.hidden,
            b8.heads,
            b8.kv_heads,
            b8.ffn,
            b8.vocab
        ),
        (32, 4096, 32, 8, 14336, 128256)
    );
    let b70 = p("70b");
    assert_eq!(
        (
            b70.layers,
            b70.hidden,
            b70.heads,
            b70.kv_heads,
            b70.ffn,
            b70.vocab
        ),
        (80, 8192, 64, 8, 28672, 128256)
    );
    let gb = |o: &SynthOptions| planned_size(o).expect("size") as f64 / 1e9;
    // Q4_0 is 4.5 bits per weight; Llama 3 8B has 8.03e9 weights, 70B 70.6e9.
    assert!(
        (gb(&b8) - 8.03 * 4.5 / 8.0).abs() < 0.1,
        "8b: {} GB",
        gb(&b8)
    );
    assert!(
        (gb(&b70) - 70.55 * 4.5 / 8.0).abs() < 0.3,
        "70b: {} GB",
        gb(&b70)
    );
    for name in PRESETS {
        for arch in SynthArch::ALL {
            let mut o = SynthOptions::preset(arch, name).expect("preset");
            for quant in [GgmlType::Q4_0, GgmlType::Q4K, GgmlType::BF16] {
                o.quant = quant;
                o.validate()
                    .unwrap_or_else(|e| panic!("{arch} {name} {quant}: {e}"));
            }
        }
    }
}
