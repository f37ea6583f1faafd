//! Mixture-of-experts models through the Hugging Face path: a MoE GGUF is
//! written from a synthetic dense model (distinct random experts, a random
//! router), converted to an HF directory, and both are run. The weights are
//! F32 or F16 and every value is exactly representable in the converted
//! dtype, so conversion is lossless and the two paths must agree far more
//! tightly than the quantized dense tests in `tests.rs` need to: qwen to
//! the bit, llama (whose GGUF Q/K rows are permuted for interleaved RoPE)
//! to float rounding in the attention sums.

use crate::model::kv_type::KvType;
use std::path::{Path, PathBuf};

use half::f16;
use serde_json::Value;

use super::safetensors::file_bytes;
use super::*;
use crate::kernels::{Weight, WeightBytes};
use crate::model::config::{ModelConfig, RopeStyle};
use crate::model::gguf::writer::{GgufWriter, TensorSource as WriteSource};
use crate::model::gguf::{GgmlType, GgufFile, GgufModel, MetadataValue};
use crate::model::layout::LocalLayout;
use crate::model::synth::{synth, SynthArch, SynthOptions};
use crate::model::transformer::Transformer;
use crate::model::weights::{GgufSource, ModelWeights, SliceRule, TensorSource};

const EXPERTS: usize = 4;
const USED: usize = 2;
const EXPERT_FFN: usize = 128;
const PROMPT: [u32; 6] = [5, 77, 200, 31, 9, 150];
const GREEDY_TOKENS: usize = 8;
/// Largest logit difference allowed between the GGUF and HF paths. Measured:
/// 0 for the qwen cases, about 1e-6 for llama.
const MAX_LOGIT_DIFF: f32 = 1e-4;

/// One MoE model to build from a synthetic dense one.
struct Case {
    dense: SynthArch,
    /// The GGUF arch written (`llama` for Mixtral).
    moe_arch: &'static str,
    /// The type of every matrix, and what the HF copy is written in.
    quant: GgmlType,
    hf: HfDtype,
    /// Layers that keep their dense FFN (HF `mlp_only_layers`).
    dense_layers: Vec<usize>,
}

impl Case {
    fn shared_expert(&self) -> bool {
        self.moe_arch == "qwen2moe"
    }
}

/// Uniform values of standard deviation `std` from a seeded SplitMix64
/// stream, rounded to what F16 holds when `quant` is F16 so that every
/// conversion of them is exact.
fn random_values(seed: u64, n: usize, std: f32, quant: GgmlType) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let u = (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            round_for(u * std * 3f32.sqrt(), quant)
        })
        .collect()
}

fn round_for(x: f32, quant: GgmlType) -> f32 {
    match quant {
        GgmlType::F16 => f16::from_f32(x).to_f32(),
        _ => x,
    }
}

fn encode(values: &[f32], dtype: GgmlType) -> Vec<u8> {
    match dtype {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        other => panic!("test weights are F32 or F16, not {other}"),
    }
}

/// Writes `dir/moe.gguf` for `case` and returns its path.
fn moe_gguf(dir: &Path, case: &Case) -> PathBuf {
    let mut opts = SynthOptions::preset(case.dense, "tiny").expect("preset");
    opts.quant = case.quant;
    opts.seed = 11;
    let dense = dir.join("dense.gguf");
    synth(&opts, &dense, &mut |_, _| {}).expect("synth");
    let file = GgufFile::open(&dense).expect("open dense");
    let from = format!("{}.", case.dense.name());
    let to = case.moe_arch;
    let (h, ffn) = (opts.hidden, opts.ffn);

    let mut w = GgufWriter::new();
    for (k, v) in &file.metadata {
        let key = match k.strip_prefix(&from) {
            Some(rest) => format!("{to}.{rest}"),
            None => k.clone(),
        };
        let value = match key.as_str() {
            "general.architecture" => MetadataValue::String(to.into()),
            // Mixtral's one FFN width is its experts'.
            "llama.feed_forward_length" => MetadataValue::U32(EXPERT_FFN as u32),
            _ => v.clone(),
        };
        w.add_metadata(&key, value);
    }
    let u = |n: usize| MetadataValue::U32(n as u32);
    w.add_metadata(&format!("{to}.expert_count"), u(EXPERTS));
    w.add_metadata(&format!("{to}.expert_used_count"), u(USED));
    if to != "llama" {
        w.add_metadata(&format!("{to}.expert_feed_forward_length"), u(EXPERT_FFN));
    }
    if case.shared_expert() {
        w.add_metadata(&format!("{to}.expert_shared_feed_forward_length"), u(ffn));
    }

    for t in &file.tensors {
        let bytes = file.tensor_data(t).to_vec();
        let layer: Option<usize> = t
            .name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse().ok());
        let kind = ["ffn_gate", "ffn_up", "ffn_down"]
            .into_iter()
            .position(|k| t.name.ends_with(&format!(".{k}.weight")));
        let (Some(l), Some(kind)) = (layer, kind) else {
            // Norms and biases are F32; make them exact in F16 too.
            let bytes = if t.dtype == GgmlType::F32 && case.quant == GgmlType::F16 {
                let v: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|c| round_for(f32::from_le_bytes([c[0], c[1], c[2], c[3]]), GgmlType::F16))
                    .collect();
                encode(&v, GgmlType::F32)
            } else {
                bytes
            };
            w.add_tensor(&t.name, &t.dims, t.dtype, WriteSource::Bytes(bytes));
            continue;
        };
        if case.dense_layers.contains(&l) {
            w.add_tensor(&t.name, &t.dims, t.dtype, WriteSource::Bytes(bytes));
            continue;
        }
        if case.shared_expert() {
            let name = t.name.replace(".weight", "_shexp.weight");
            w.add_tensor(&name, &t.dims, t.dtype, WriteSource::Bytes(bytes));
        }
        let seed = (l * 8 + kind) as u64 * 1000;
        if kind == 0 {
            let router = random_values(seed + 999, EXPERTS * h, 0.1, case.quant);
            w.add_tensor(
                &format!("blk.{l}.ffn_gate_inp.weight"),
                &[h as u64, EXPERTS as u64],
                GgmlType::F32,
                WriteSource::Bytes(encode(&router, GgmlType::F32)),
            );
            if case.shared_expert() {
                let gate = random_values(seed + 998, h, 0.1, case.quant);
                w.add_tensor(
                    &format!("blk.{l}.ffn_gate_inp_shexp.weight"),
                    &[h as u64],
                    GgmlType::F32,
                    WriteSource::Bytes(encode(&gate, GgmlType::F32)),
                );
            }
        }
        // Each expert its own random matrix, experts outermost.
        let (cols, per) = if kind == 2 {
            (EXPERT_FFN, h)
        } else {
            (h, EXPERT_FFN)
        };
        let mut values = Vec::with_capacity(EXPERTS * per * cols);
        for e in 0..EXPERTS {
            values.extend(random_values(
                seed + e as u64,
                per * cols,
                1.0 / (cols as f32).sqrt(),
                case.quant,
            ));
        }
        let name = t.name.replace(".weight", "_exps.weight");
        w.add_tensor(
            &name,
            &[cols as u64, per as u64, EXPERTS as u64],
            case.quant,
            WriteSource::Bytes(encode(&values, case.quant)),
        );
    }
    let path = dir.join("moe.gguf");
    w.write(&path).expect("write moe gguf");
    path
}

/// The logits of the prompt and of each greedy step, and the tokens chosen.
struct Run {
    logits: Vec<Vec<f32>>,
    tokens: Vec<u32>,
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn run(config: &ModelConfig, source: &dyn TensorSource) -> Run {
    let layout = LocalLayout::whole(config);
    let weights = ModelWeights::load(config, &layout, source).expect("weights");
    let mut t = Transformer::new(config.clone(), layout, weights, 64, KvType::F32);
    let mut last = t.forward(&PROMPT, 0).expect("forward");
    let mut out = Run {
        logits: Vec::new(),
        tokens: Vec::new(),
    };
    for _ in 0..GREEDY_TOKENS {
        let next = argmax(&last);
        out.tokens.push(next);
        let pos = t.position();
        let logits = t.forward(&[next], pos).expect("forward");
        out.logits.push(std::mem::replace(&mut last, logits));
    }
    out.logits.push(last);
    out
}

fn bytes_of(w: &Weight) -> &[u8] {
    &w.data
}

/// Writes the case's GGUF, converts it, checks the directory, and checks
/// that both load to the same config, the same expert bytes and the same
/// logits.
fn convert_and_compare(case: &Case) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gguf_path = moe_gguf(tmp.path(), case);
    let gguf = GgufModel::open(&gguf_path).expect("open moe gguf");
    let mut gguf_config = ModelConfig::from_gguf(&gguf).expect("gguf config");
    // GGUF metadata has no dense layers; the converter finds them by their
    // missing router.
    gguf_config.moe.as_mut().expect("moe").dense_layers = case.dense_layers.clone();
    let label = format!("{} {:?}", case.moe_arch, case.quant);

    let out = tmp.path().join("hf");
    let report = gguf_to_hf(&gguf, &out, case.hf, None, None).expect("convert");
    assert_eq!(
        ModelConfig {
            rope_style: gguf_config.rope_style,
            ..report.config.clone()
        },
        gguf_config,
        "{label}: report"
    );

    // The directory transformers would read.
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let moe_layer = (0..2).find(|l| !case.dense_layers.contains(l)).unwrap();
    let shape = |name: &str| {
        st.tensor(name)
            .unwrap_or_else(|_| panic!("{name}"))
            .shape()
            .to_vec()
    };
    let p = |s: &str| format!("model.layers.{moe_layer}.{s}");
    match case.moe_arch {
        "llama" => {
            assert_eq!(json["model_type"], "mixtral");
            assert_eq!(json["architectures"][0], "MixtralForCausalLM");
            assert_eq!(json["num_local_experts"], EXPERTS);
            assert_eq!(json["intermediate_size"], EXPERT_FFN);
            assert_eq!(shape(&p("block_sparse_moe.gate.weight")), [EXPERTS, 256]);
            assert_eq!(
                shape(&p("block_sparse_moe.experts.3.w1.weight")),
                [EXPERT_FFN, 256]
            );
            assert_eq!(
                shape(&p("block_sparse_moe.experts.3.w3.weight")),
                [EXPERT_FFN, 256]
            );
            assert_eq!(
                shape(&p("block_sparse_moe.experts.3.w2.weight")),
                [256, EXPERT_FFN]
            );
        }
        arch => {
            let qwen2 = arch == "qwen2moe";
            assert_eq!(
                json["model_type"],
                if qwen2 { "qwen2_moe" } else { "qwen3_moe" }
            );
            assert_eq!(json["num_experts"], EXPERTS);
            assert_eq!(json["moe_intermediate_size"], EXPERT_FFN);
            assert_eq!(json["intermediate_size"], 512);
            assert_eq!(json["norm_topk_prob"], !qwen2);
            assert_eq!(
                json["mlp_only_layers"],
                serde_json::json!(case.dense_layers)
            );
            assert_eq!(shape(&p("mlp.gate.weight")), [EXPERTS, 256]);
            assert_eq!(
                shape(&p("mlp.experts.3.gate_proj.weight")),
                [EXPERT_FFN, 256]
            );
            assert_eq!(
                shape(&p("mlp.experts.3.down_proj.weight")),
                [256, EXPERT_FFN]
            );
            if qwen2 {
                assert_eq!(json["shared_expert_intermediate_size"], 512);
                assert_eq!(shape(&p("mlp.shared_expert_gate.weight")), [1, 256]);
                assert_eq!(shape(&p("mlp.shared_expert.up_proj.weight")), [512, 256]);
            }
            for &l in &case.dense_layers {
                let name = format!("model.layers.{l}.mlp.up_proj.weight");
                assert_eq!(shape(&name), [512, 256]);
            }
        }
    }
    drop(bytes);

    let (config, source) = open_hf_dir(&out).expect("open hf");
    assert_eq!(config.rope_style, RopeStyle::Neox);
    assert_eq!(
        ModelConfig {
            rope_style: gguf_config.rope_style,
            name: gguf_config.name.clone(),
            ..config.clone()
        },
        gguf_config,
        "{label}: config"
    );

    // Stacked tensors are assembled from the per-expert ones, byte for byte.
    let gsrc = GgufSource { file: &gguf };
    for kind in ["gate", "up", "down"] {
        let name = format!("blk.{moe_layer}.ffn_{kind}_exps.weight");
        assert_eq!(source.expert_count(&name), Some(EXPERTS));
        let hf = source.tensor(&name).unwrap().unwrap();
        let g = gsrc.tensor(&name).unwrap().unwrap();
        assert!(matches!(hf.data, WeightBytes::Owned { .. }));
        assert_eq!(
            (hf.dtype, hf.rows, hf.cols),
            (g.dtype, g.rows, g.cols),
            "{name}"
        );
        assert!(
            bytes_of(&hf) == bytes_of(&g),
            "{label}: {name} bytes differ"
        );
    }

    let reference = run(&gguf_config, &gsrc);
    let hf = run(&config, &source);
    let worst = reference
        .logits
        .iter()
        .zip(&hf.logits)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0f32, f32::max);
    eprintln!(
        "{label}: greedy {:?}, max |logit diff| {worst:e}",
        reference.tokens
    );
    assert_eq!(hf.tokens, reference.tokens, "{label}: greedy tokens");
    assert!(worst <= MAX_LOGIT_DIFF, "{label}: logits differ by {worst}");
    // The comparison is sensitive to the experts: the experts differ from
    // one another, and routing each token to one expert instead of two
    // changes the logits far beyond the bound above.
    let up = source
        .local_tensor(
            &format!("blk.{moe_layer}.ffn_up_exps.weight"),
            &SliceRule::ExpertRows {
                experts: 0..2,
                per_expert: EXPERT_FFN,
                rows: 0..EXPERT_FFN,
            },
        )
        .unwrap()
        .unwrap();
    let half = up.byte_len() / 2;
    assert!(
        up.data[..half] != up.data[half..],
        "{label}: experts 0 and 1 are equal"
    );
    let mut top1 = config.clone();
    top1.moe.as_mut().unwrap().n_experts_used = 1;
    let other = run(&top1, &source);
    let moved = other.logits[0]
        .iter()
        .zip(&hf.logits[0])
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        moved > 100.0 * MAX_LOGIT_DIFF,
        "{label}: top-1 routing moved logits by only {moved}"
    );
}

#[test]
fn qwen3_moe_converts_and_matches_the_gguf_path() {
    convert_and_compare(&Case {
        dense: SynthArch::Qwen3,
        moe_arch: "qwen3moe",
        quant: GgmlType::F32,
        hf: HfDtype::F32,
        dense_layers: vec![],
    });
}

#[test]
fn qwen3_moe_with_a_dense_layer_in_f16() {
    convert_and_compare(&Case {
        dense: SynthArch::Qwen3,
        moe_arch: "qwen3moe",
        quant: GgmlType::F16,
        hf: HfDtype::F16,
        dense_layers: vec![1],
    });
}

#[test]
fn mixtral_converts_and_matches_the_gguf_path() {
    convert_and_compare(&Case {
        dense: SynthArch::Llama,
        moe_arch: "llama",
        quant: GgmlType::F16,
        hf: HfDtype::F16,
        dense_layers: vec![],
    });
}

#[test]
fn qwen2_moe_with_shared_expert_and_a_dense_layer() {
    convert_and_compare(&Case {
        dense: SynthArch::Qwen2,
        moe_arch: "qwen2moe",
        quant: GgmlType::F32,
        hf: HfDtype::F32,
        dense_layers: vec![0],
    });
}

/// Expert-layout requests stack only the experts and rows or columns they
/// name, and equal the GGUF path's cut of the same stacked tensor.
#[test]
fn expert_slices_are_cut_before_stacking() {
    let case = Case {
        dense: SynthArch::Qwen3,
        moe_arch: "qwen3moe",
        quant: GgmlType::F32,
        hf: HfDtype::F32,
        dense_layers: vec![],
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let gguf_path = moe_gguf(tmp.path(), &case);
    let gguf = GgufModel::open(&gguf_path).unwrap();
    let out = tmp.path().join("hf");
    gguf_to_hf(&gguf, &out, HfDtype::F32, None, None).unwrap();
    let (config, source) = open_hf_dir(&out).unwrap();
    let gsrc = GgufSource { file: &gguf };
    let rules = [
        (
            "ffn_gate_exps",
            SliceRule::ExpertRows {
                experts: 1..3,
                per_expert: EXPERT_FFN,
                rows: 32..96,
            },
        ),
        (
            "ffn_up_exps",
            SliceRule::ExpertRows {
                experts: 3..4,
                per_expert: EXPERT_FFN,
                rows: 0..EXPERT_FFN,
            },
        ),
        (
            "ffn_down_exps",
            SliceRule::ExpertCols {
                experts: 1..3,
                per_expert: 256,
                cols: 32..96,
            },
        ),
        (
            "ffn_down_exps",
            SliceRule::ExpertCols {
                experts: 0..4,
                per_expert: 256,
                cols: 0..EXPERT_FFN,
            },
        ),
        ("ffn_up_exps", SliceRule::Rows(100..300)),
    ];
    for (kind, rule) in rules {
        let name = format!("blk.1.{kind}.weight");
        let hf = source.local_tensor(&name, &rule).unwrap().unwrap();
        let g = gsrc.local_tensor(&name, &rule).unwrap().unwrap();
        assert_eq!((hf.rows, hf.cols), (g.rows, g.cols), "{name} {rule:?}");
        assert!(bytes_of(&hf) == bytes_of(&g), "{name} {rule:?}");
    }
    // One whole expert stays a view of the file.
    let one = source
        .local_tensor(
            "blk.0.ffn_up_exps.weight",
            &SliceRule::ExpertRows {
                experts: 2..3,
                per_expert: EXPERT_FFN,
                rows: 0..EXPERT_FFN,
            },
        )
        .unwrap()
        .unwrap();
    assert!(matches!(one.data, WeightBytes::Mapped { .. }));
    // Out-of-range experts and a wrong expert height are refused by name.
    let e = source
        .local_tensor(
            "blk.0.ffn_up_exps.weight",
            &SliceRule::ExpertRows {
                experts: 3..5,
                per_expert: EXPERT_FFN,
                rows: 0..EXPERT_FFN,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("blk.0.ffn_up_exps.weight") && e.contains("3..5") && e.contains("4 stored"),
        "{e}"
    );
    let e = source
        .local_tensor(
            "blk.0.ffn_down_exps.weight",
            &SliceRule::ExpertCols {
                experts: 0..1,
                per_expert: EXPERT_FFN,
                cols: 0..64,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("down_proj") && e.contains("256 rows"), "{e}");

    // A process that owns experts 1..3 and half of each one's columns loads
    // the same weights from either source.
    let layout = LocalLayout {
        experts: 1..3,
        expert_ffn: 64..128,
        ..LocalLayout::whole(&config)
    };
    let mut gguf_config = ModelConfig::from_gguf(&gguf).unwrap();
    gguf_config.rope_style = config.rope_style;
    let from_hf = ModelWeights::load(&config, &layout, &source).unwrap();
    let from_gguf = ModelWeights::load(&gguf_config, &layout, &gsrc).unwrap();
    for (a, b) in from_hf.layers.iter().zip(&from_gguf.layers) {
        let (a, b) = (a.moe.as_ref().unwrap(), b.moe.as_ref().unwrap());
        assert_eq!(a.experts, 1..3);
        let (sa, sb) = (a.stacked.as_ref().unwrap(), b.stacked.as_ref().unwrap());
        for (x, y) in [(&sa.gate, &sb.gate), (&sa.up, &sb.up), (&sa.down, &sb.down)] {
            assert_eq!((x.rows, x.cols), (y.rows, y.cols));
            assert!(bytes_of(x) == bytes_of(y));
        }
    }
}

// ---- directories edited by hand ----

type Spec = (String, &'static str, Vec<usize>, Vec<u8>);

/// The tensors of `dir/model.safetensors`.
fn read_tensors(dir: &Path) -> Vec<Spec> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<Spec> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let dtype = match view.dtype() {
                ::safetensors::Dtype::F32 => "F32",
                ::safetensors::Dtype::F16 => "F16",
                other => panic!("{other:?}"),
            };
            (name, dtype, view.shape().to_vec(), view.data().to_vec())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn write_tensors(dir: &Path, tensors: &[Spec]) {
    let borrowed: Vec<(&str, &'static str, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
        .collect();
    std::fs::write(dir.join("model.safetensors"), file_bytes(&borrowed)).unwrap();
}

#[test]
fn refuses_missing_mismatched_and_miscounted_experts() {
    let case = Case {
        dense: SynthArch::Qwen3,
        moe_arch: "qwen3moe",
        quant: GgmlType::F32,
        hf: HfDtype::F32,
        dense_layers: vec![],
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let gguf = GgufModel::open(moe_gguf(tmp.path(), &case)).unwrap();
    let out = tmp.path().join("hf");
    gguf_to_hf(&gguf, &out, HfDtype::F32, None, None).unwrap();
    let original = read_tensors(&out);
    let edit = |f: &dyn Fn(&mut Vec<Spec>)| -> String {
        let mut t = original.clone();
        f(&mut t);
        write_tensors(&out, &t);
        open_hf_dir(&out).unwrap_err().to_string()
    };

    // A gap in the expert numbers.
    let e = edit(&|t| t.retain(|s| s.0 != "model.layers.0.mlp.experts.2.up_proj.weight"));
    assert!(
        e.contains("model.layers.0.mlp.experts.2.up_proj.weight") && e.contains("missing"),
        "{e}"
    );
    // The last expert missing everywhere in a layer: a count mismatch.
    let e = edit(&|t| t.retain(|s| !s.0.starts_with("model.layers.1.mlp.experts.3.")));
    assert!(
        e.contains("3 experts are stored")
            && e.contains("blk.1.ffn_")
            && e.contains("config.json says 4"),
        "{e}"
    );
    // One expert in another dtype.
    let e = edit(&|t| {
        let s = t
            .iter_mut()
            .find(|s| s.0 == "model.layers.0.mlp.experts.1.gate_proj.weight")
            .unwrap();
        let values: Vec<f32> =
            s.3.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
        s.1 = "F16";
        s.3 = encode(&values, GgmlType::F16);
    });
    assert!(
        e.contains("model.layers.0.mlp.experts.1.gate_proj.weight") && e.contains("must match"),
        "{e}"
    );
    // The same expert under Qwen's and Mixtral's names.
    let e = edit(&|t| {
        let mut copy = t
            .iter()
            .find(|s| s.0 == "model.layers.0.mlp.experts.0.gate_proj.weight")
            .unwrap()
            .clone();
        copy.0 = "model.layers.0.block_sparse_moe.experts.0.w1.weight".into();
        t.push(copy);
    });
    assert!(e.contains("also stored in"), "{e}");

    // The untouched directory still opens.
    write_tensors(&out, &original);
    open_hf_dir(&out).unwrap();
}
