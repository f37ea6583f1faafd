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
    for arch in SynthArch::DENSE {
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
                SynthArch::Qwen2Moe | SynthArch::Qwen3Moe => unreachable!("dense only"),
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
        "unknown preset '13b' (known: tiny, 1b, 8b, 70b, moe-tiny, moe-small, 7b-a1b, 30b-a3b)"
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
        // Dense presets take the dense archs, MoE presets qwen*moe and llama
        // (Mixtral).
        let archs: &[SynthArch] = match name {
            // llama.cpp's qwen2moe attention is hidden x hidden: no 32 x 128
            // heads on hidden 2048 (see moe_shapes_are_refused_...).
            "30b-a3b" => &[SynthArch::Llama, SynthArch::Qwen3Moe],
            _ if is_moe_preset(name) => {
                &[SynthArch::Llama, SynthArch::Qwen2Moe, SynthArch::Qwen3Moe]
            }
            _ => &SynthArch::DENSE,
        };
        for &arch in archs {
            let mut o = SynthOptions::preset(arch, name).expect("preset");
            for quant in [GgmlType::Q4_0, GgmlType::Q4K, GgmlType::BF16] {
                o.quant = quant;
                o.validate()
                    .unwrap_or_else(|e| panic!("{arch} {name} {quant}: {e}"));
            }
        }
    }
}

// ---- mixture of experts ---------------------------------------------------

const MOE_ARCHS: [SynthArch; 3] = [SynthArch::Llama, SynthArch::Qwen2Moe, SynthArch::Qwen3Moe];

fn moe_tiny(arch: SynthArch, quant: GgmlType) -> SynthOptions {
    let mut o = SynthOptions::preset(arch, "moe-tiny").expect("moe-tiny preset");
    o.quant = quant;
    o
}

fn dims_of(plan: &[SynthTensor], name: &str) -> (Vec<u64>, GgmlType) {
    let t = plan
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} not planned"));
    (t.dims.clone(), t.dtype)
}

#[test]
fn moe_tiny_reopens_with_llama_cpp_tensors_for_every_moe_arch() {
    let dir = tempfile::tempdir().expect("tempdir");
    for arch in MOE_ARCHS {
        for quant in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::F16] {
            let opts = moe_tiny(arch, quant);
            let (f, report) = write(&opts, dir.path(), &format!("{arch}-{quant}.gguf"));
            let plan = tensor_plan(&opts);
            assert_eq!(report.bytes, planned_size(&opts).expect("size"));
            assert_eq!(f.tensors.len(), plan.len(), "{arch} {quant}");
            for (got, want) in f.tensors.iter().zip(&plan) {
                assert_eq!(got.name, want.name);
                assert_eq!(got.dims, want.dims, "{}", want.name);
                assert_eq!(got.dtype, want.dtype, "{}", want.name);
            }
            // attn norm + q/k/v/o + ffn norm + router + 3 expert tensors,
            // plus the arch's attention extras and qwen2moe's shared expert.
            let per_layer = match arch {
                SynthArch::Llama => 10,
                SynthArch::Qwen3Moe => 12,
                SynthArch::Qwen2Moe => 10 + 3 + 4,
                _ => unreachable!(),
            };
            assert_eq!(plan.len(), 3 + 2 * per_layer, "{arch}");
            assert!(
                !plan.iter().any(|t| t.name.ends_with("ffn_gate.weight")
                    || t.name.ends_with("ffn_up.weight")
                    || t.name.ends_with("ffn_down.weight")),
                "no dense FFN in a MoE layer"
            );
        }
    }
}

#[test]
fn expert_tensors_have_llama_cpp_shapes_and_types() {
    // An expert width unlike hidden, so [hidden, expert_ffn, n_expert] and
    // [expert_ffn, hidden, n_expert] cannot be confused.
    let plan = |arch| {
        let mut o = moe_tiny(arch, GgmlType::Q4K);
        o.moe = o.moe.map(|m| SynthMoe {
            expert_ffn: 512,
            ..m
        });
        tensor_plan(&o)
    };
    for arch in MOE_ARCHS {
        let p = plan(arch);
        assert_eq!(
            dims_of(&p, "blk.1.ffn_gate_inp.weight"),
            (vec![256, 8], GgmlType::F32),
            "the router stays F32"
        );
        assert_eq!(
            dims_of(&p, "blk.1.ffn_gate_exps.weight"),
            (vec![256, 512, 8], GgmlType::Q4K)
        );
        assert_eq!(
            dims_of(&p, "blk.0.ffn_up_exps.weight"),
            (vec![256, 512, 8], GgmlType::Q4K)
        );
        assert_eq!(
            dims_of(&p, "blk.0.ffn_down_exps.weight"),
            (vec![512, 256, 8], GgmlType::Q4K)
        );
        let has = |name: &str| p.iter().any(|t| t.name == name);
        assert_eq!(has("blk.0.attn_q.bias"), arch == SynthArch::Qwen2Moe);
        assert_eq!(has("blk.0.attn_q_norm.weight"), arch == SynthArch::Qwen3Moe);
        assert_eq!(
            has("blk.0.ffn_gate_shexp.weight"),
            arch == SynthArch::Qwen2Moe
        );
    }
    let q2 = plan(SynthArch::Qwen2Moe);
    // Shared expert: 4 x expert_ffn by default.
    assert_eq!(
        dims_of(&q2, "blk.0.ffn_gate_inp_shexp.weight"),
        (vec![256], GgmlType::F32)
    );
    assert_eq!(
        dims_of(&q2, "blk.0.ffn_gate_shexp.weight"),
        (vec![256, 2048], GgmlType::Q4K)
    );
    assert_eq!(
        dims_of(&q2, "blk.0.ffn_up_shexp.weight"),
        (vec![256, 2048], GgmlType::Q4K)
    );
    assert_eq!(
        dims_of(&q2, "blk.0.ffn_down_shexp.weight"),
        (vec![2048, 256], GgmlType::Q4K)
    );
    assert_eq!(
        dims_of(&q2, "blk.0.attn_k.bias"),
        (vec![128], GgmlType::F32)
    );
}

#[test]
fn moe_metadata_is_what_llama_cpp_and_the_engine_read() {
    use crate::model::config::{Arch, ModelConfig};
    let dir = tempfile::tempdir().expect("tempdir");
    for arch in MOE_ARCHS {
        let mut opts = moe_tiny(arch, GgmlType::Q8_0);
        if arch == SynthArch::Qwen2Moe {
            opts.moe = opts.moe.map(|m| SynthMoe {
                shared_ffn: Some(768),
                ..m
            });
        }
        let (f, _) = write(&opts, dir.path(), &format!("{arch}.gguf"));
        let a = arch.name();
        let u = |k: &str| f.get_u64(&format!("{a}.{k}")).expect("u32");
        assert_eq!(f.require_str("general.architecture").expect("arch"), a);
        assert_eq!(u("expert_count"), Some(8));
        assert_eq!(u("expert_used_count"), Some(2));
        let (ffn, expert_ffn, shared) = match arch {
            // Mixtral: llama.cpp reads the expert width from feed_forward_length.
            SynthArch::Llama => (256, None, None),
            SynthArch::Qwen2Moe => (768, Some(256), Some(768)),
            SynthArch::Qwen3Moe => (512, Some(256), None),
            _ => unreachable!(),
        };
        assert_eq!(u("feed_forward_length"), Some(ffn), "{a}");
        assert_eq!(u("expert_feed_forward_length"), expert_ffn, "{a}");
        assert_eq!(u("expert_shared_feed_forward_length"), shared, "{a}");
        let key_length = (arch == SynthArch::Qwen3Moe).then_some(64);
        assert_eq!(u("attention.key_length"), key_length, "{a}");
        assert_eq!(u("attention.value_length"), key_length, "{a}");
        assert!(matches!(
            f.get(&format!("{a}.expert_count")),
            Some(MetadataValue::U32(8))
        ));

        // The engine's reader sees the model synth meant.
        let c = ModelConfig::from_gguf(
            &crate::model::gguf::GgufModel::from_file(f.clone()).expect("model"),
        )
        .unwrap_or_else(|e| panic!("{a}: {e}"));
        let m = c.moe.as_ref().expect("a MoE config");
        assert_eq!((m.n_experts, m.n_experts_used, m.expert_ffn), (8, 2, 256));
        assert_eq!(m.shared_expert, arch == SynthArch::Qwen2Moe);
        assert_eq!(m.norm_topk, arch != SynthArch::Qwen2Moe);
        assert!(m.dense_layers.is_empty());
        assert_eq!(c.head_dim, 64);
        let want = match arch {
            SynthArch::Llama => Arch::Llama,
            SynthArch::Qwen2Moe => Arch::Qwen2Moe,
            _ => Arch::Qwen3Moe,
        };
        assert_eq!(c.arch, want);
        if arch == SynthArch::Qwen2Moe {
            assert_eq!(c.ffn, 768, "the shared expert is the dense FFN");
        }
    }
}

#[test]
fn explicit_head_dim_widens_the_attention() {
    use crate::model::config::ModelConfig;
    let mut opts = moe_tiny(SynthArch::Qwen3Moe, GgmlType::Q4_0);
    opts.head_dim = Some(128);
    let plan = tensor_plan(&opts);
    assert_eq!(
        dims_of(&plan, "blk.0.attn_q.weight").0,
        vec![256, 512],
        "4 heads of 128"
    );
    assert_eq!(dims_of(&plan, "blk.0.attn_k.weight").0, vec![256, 256]);
    assert_eq!(dims_of(&plan, "blk.0.attn_output.weight").0, vec![512, 256]);
    assert_eq!(dims_of(&plan, "blk.0.attn_q_norm.weight").0, vec![128]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (f, _) = write(&opts, dir.path(), "wide.gguf");
    let u = |k: &str| f.require_u64(k).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(u("qwen3moe.attention.key_length"), 128);
    assert_eq!(u("qwen3moe.attention.value_length"), 128);
    assert_eq!(u("qwen3moe.rope.dimension_count"), 128);
    let c = ModelConfig::from_gguf(
        &crate::model::gguf::GgufModel::from_file(f.clone()).expect("model"),
    )
    .expect("config");
    assert_eq!((c.head_dim, c.q_dim(), c.kv_dim()), (128, 512, 256));

    // Llama (and so Mixtral) may have wider heads too; the file then says so.
    let mut llama = tiny(SynthArch::Llama, GgmlType::Q4_0);
    llama.head_dim = Some(128);
    let (f, _) = write(&llama, dir.path(), "wide-llama.gguf");
    assert_eq!(
        f.get_u64("llama.attention.key_length").expect("u32"),
        Some(128)
    );
    // A head_dim equal to hidden / heads changes nothing.
    let mut same = tiny(SynthArch::Llama, GgmlType::Q4_0);
    same.head_dim = Some(64);
    write(&same, dir.path(), "same.gguf");
    write(
        &tiny(SynthArch::Llama, GgmlType::Q4_0),
        dir.path(),
        "plain.gguf",
    );
    assert_eq!(
        digest(&dir.path().join("same.gguf")),
        digest(&dir.path().join("plain.gguf"))
    );
}

#[test]
fn moe_files_are_reproducible_per_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = moe_tiny(SynthArch::Qwen2Moe, GgmlType::Q4_0);
    opts.seed = 4;
    write(&opts, dir.path(), "a.gguf");
    write(&opts, dir.path(), "b.gguf");
    opts.seed = 5;
    write(&opts, dir.path(), "c.gguf");
    let d = |n: &str| digest(&dir.path().join(n));
    assert_eq!(d("a.gguf"), d("b.gguf"));
    assert_ne!(d("a.gguf"), d("c.gguf"));
}

fn invalid_moe(arch: SynthArch, change: impl FnOnce(&mut SynthOptions)) -> String {
    let mut o = moe_tiny(arch, GgmlType::Q4_0);
    change(&mut o);
    o.validate().expect_err("must be refused").to_string()
}

fn set_moe(o: &mut SynthOptions, change: impl FnOnce(&mut SynthMoe)) {
    let mut m = o.moe.expect("moe");
    change(&mut m);
    o.moe = Some(m);
}

#[test]
fn moe_shapes_are_refused_with_a_reason() {
    use SynthArch::*;
    assert_eq!(
        invalid_moe(Qwen3Moe, |o| o.moe = None),
        "qwen3moe routes every layer to experts: set experts, experts_used and expert_ffn, or use a MoE preset (moe-tiny, moe-small, 7b-a1b, 30b-a3b)"
    );
    assert!(tiny(Qwen2Moe, GgmlType::Q4_0)
        .validate()
        .expect_err("dense preset, MoE arch")
        .to_string()
        .starts_with("qwen2moe routes every layer to experts"));
    assert_eq!(
        invalid_moe(Qwen3Moe, |o| o.arch = Qwen3),
        "qwen3 has no experts in llama.cpp: use qwen3moe (llama with experts is Mixtral)"
    );
    assert_eq!(
        SynthOptions::preset(Qwen2, "moe-tiny")
            .expect_err("qwen2 has no experts")
            .to_string(),
        "qwen2 has no experts in llama.cpp: use qwen2moe (llama with experts is Mixtral)"
    );
    assert_eq!(
        invalid_moe(Qwen3Moe, |o| set_moe(o, |m| m.experts_used = 9)),
        "experts_used 9 is more than experts 8"
    );
    assert_eq!(
        invalid_moe(Llama, |o| set_moe(o, |m| m.experts_used = 0)),
        "experts_used must be at least 1"
    );
    assert_eq!(
        invalid_moe(Qwen3Moe, |o| set_moe(o, |m| m.experts = 0)),
        "experts must be at least 1"
    );
    assert_eq!(
        invalid_moe(Qwen3Moe, |o| set_moe(o, |m| {
            m.experts = 2048;
            m.experts_used = 8;
        })),
        "2048 experts is more than llama.cpp's limit of 1024"
    );
    assert_eq!(
        invalid_moe(Qwen3Moe, |o| set_moe(o, |m| m.expert_ffn = 100)),
        "expert_ffn 100 is not a whole number of Q4_0 blocks (32 values each): try expert_ffn 96"
    );
    assert_eq!(
        invalid_moe(Qwen2Moe, |o| {
            o.quant = GgmlType::Q4K;
            set_moe(o, |m| m.shared_ffn = Some(1000));
        }),
        "shared_ffn 1000 is not a whole number of Q4_K blocks (256 values each): try shared_ffn 1024"
    );
    assert_eq!(
        invalid_moe(Qwen3Moe, |o| set_moe(o, |m| m.shared_ffn = Some(1024))),
        "only qwen2moe has a shared expert: shared_ffn is not for qwen3moe"
    );
    assert_eq!(
        invalid_moe(Qwen2Moe, |o| o.head_dim = Some(128)),
        "llama.cpp sizes qwen2moe attention hidden x hidden: heads x head_dim must be 256, not 4 x 128 (drop head_dim, or use qwen3, qwen3moe or llama)"
    );
    assert_eq!(
        SynthOptions::preset(Qwen2Moe, "30b-a3b")
            .expect("shape")
            .validate()
            .expect_err("wide heads")
            .to_string(),
        "llama.cpp sizes qwen2moe attention hidden x hidden: heads x head_dim must be 2048, not 32 x 128 (drop head_dim, or use qwen3, qwen3moe or llama)"
    );
    assert_eq!(
        invalid_moe(Qwen3Moe, |o| o.head_dim = Some(63)),
        "head dimension 63 is odd, but RoPE rotates pairs: try head_dim 64"
    );
    assert_eq!(
        invalid_moe(Qwen3Moe, |o| {
            o.quant = GgmlType::Q4K;
            o.head_dim = Some(96);
            o.heads = 2;
            o.kv_heads = 1;
        }),
        "heads x head_dim = 2 x 96 is not a whole number of Q4_K blocks (256 values each): try head_dim 128"
    );
    assert_eq!(
        invalid_moe(Qwen3Moe, |o| o.head_dim = Some(0)),
        "head_dim must be at least 1"
    );
    // A MoE model needs no dense width.
    let mut o = moe_tiny(Qwen3Moe, GgmlType::Q4_0);
    o.ffn = 0;
    o.validate().expect("ffn is unused with experts");
}

/// Parameters of a plan, from the tensor dims alone.
fn parameters(o: &SynthOptions) -> f64 {
    tensor_plan(o)
        .iter()
        .map(|t| t.dims.iter().product::<u64>() as f64)
        .sum()
}

#[test]
fn moe_presets_have_the_published_shapes_and_sizes() {
    let p = |name| SynthOptions::preset(default_arch(name), name).expect("preset");
    assert_eq!(default_arch("30b-a3b"), SynthArch::Qwen3Moe);
    assert_eq!(default_arch("moe-tiny"), SynthArch::Qwen3Moe);
    assert_eq!(default_arch("8b"), SynthArch::Llama);
    let shape = |o: &SynthOptions| {
        let m = o.moe.expect("moe");
        (
            (
                o.layers,
                o.hidden,
                o.heads,
                o.kv_heads,
                o.head_dim(),
                o.vocab,
            ),
            (m.experts, m.experts_used, m.expert_ffn),
        )
    };
    let tiny = p("moe-tiny");
    assert_eq!(shape(&tiny), ((2, 256, 4, 2, 64, 320), (8, 2, 256)));
    let olmoe = p("7b-a1b");
    assert_eq!(
        shape(&olmoe),
        ((16, 2048, 16, 16, 128, 50_304), (64, 8, 1024))
    );
    let qwen = p("30b-a3b");
    assert_eq!(
        shape(&qwen),
        ((48, 2048, 32, 4, 128, 151_936), (128, 8, 768))
    );
    assert_eq!(qwen.q_dim(), 4096);
    // OLMoE-1B-7B has 6.92e9 parameters, Qwen3-30B-A3B 30.5e9; Q4_0 is 4.5
    // bits per weight (the F32 routers are a rounding error).
    let gb = |o: &SynthOptions| planned_size(o).expect("size") as f64 / 1e9;
    assert!(
        (parameters(&olmoe) / 1e9 - 6.92).abs() < 0.05,
        "{}",
        parameters(&olmoe)
    );
    assert!(
        (parameters(&qwen) / 1e9 - 30.53).abs() < 0.1,
        "{}",
        parameters(&qwen)
    );
    assert!(
        (gb(&olmoe) - 6.92 * 4.5 / 8.0).abs() < 0.1,
        "7b-a1b: {} GB",
        gb(&olmoe)
    );
    assert!(
        (gb(&qwen) - 30.53 * 4.5 / 8.0).abs() < 0.2,
        "30b-a3b: {} GB",
        gb(&qwen)
    );
    // moe-tiny is a test model: about 2 MB at Q4_0 for every MoE arch.
    for arch in MOE_ARCHS {
        let mb = planned_size(&moe_tiny(arch, GgmlType::Q4_0)).expect("size") as f64 / 1e6;
        assert!(mb < 4.0, "{arch} moe-tiny: {mb} MB");
    }
}

#[test]
fn routers_spread_tokens_over_experts() {
    use super::weights::SplitMix;
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = moe_tiny(SynthArch::Qwen3Moe, GgmlType::Q8_0);
    let (f, _) = write(&opts, dir.path(), "r.gguf");
    let t = f.tensor("blk.0.ffn_gate_inp.weight").expect("router");
    let router: Vec<f32> = f
        .tensor_data(t)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let (h, e) = (256, 8);
    // Unit-RMS inputs, as the FFN norm hands the router.
    let mut rng = SplitMix::new(1);
    let mut chosen = std::collections::HashSet::new();
    let mut margins = Vec::new();
    let mut top_weights = Vec::new();
    for _ in 0..200 {
        let x: Vec<f32> = (0..h).map(|_| rng.normalish(1.0)).collect();
        let mut logits: Vec<f32> = (0..e)
            .map(|j| (0..h).map(|i| router[j * h + i] * x[i]).sum())
            .collect();
        let max = logits.iter().cloned().fold(f32::MIN, f32::max);
        let z: f32 = logits.iter().map(|l| (l - max).exp()).sum();
        let mut order: Vec<usize> = (0..e).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        chosen.insert((order[0].min(order[1]), order[0].max(order[1])));
        margins.push(logits[order[1]] - logits[order[2]]);
        top_weights.push((logits[order[0]] - max).exp() / z);
        logits.clear();
    }
    margins.sort_by(f32::total_cmp);
    top_weights.sort_by(f32::total_cmp);
    // Different inputs choose different pairs of the 28 possible...
    assert!(chosen.len() >= 15, "{} distinct top-2 pairs", chosen.len());
    // ...with clear gaps between the 2nd and 3rd logits (median about 0.6 for
    // logits of standard deviation 2), and a softmax far from flat (1/8).
    let median = margins[margins.len() / 2];
    assert!(median > 0.3, "median top-2 margin {median}");
    let top = top_weights[top_weights.len() / 2];
    assert!(top > 0.3, "median top-1 weight {top}");
    // The router at a dense FFN's input scale x 2.
    let std = (router.iter().map(|v| v * v).sum::<f32>() / router.len() as f32).sqrt();
    assert!((std - 2.0 / 16.0).abs() < 0.01, "router std {std}");
}
