//! `shardlab synth`: random-weight models in any Llama/Qwen shape and quant
//! type, dense or mixture-of-experts (qwen2moe, qwen3moe, Mixtral), written
//! as real GGUF that llama.cpp and this engine both load. They give scaling
//! work 8B, 70B and 30B-A3B shapes without downloading 40 GB.
//!
//! `options` says what to build and checks it, `vocab` supplies the tokenizer
//! metadata, `weights` generates tensor contents; this file lays out the
//! metadata and tensor table llama.cpp expects and hands them to the writer.

mod options;
mod vocab;
mod weights;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::model::gguf::split_writer::{split_prefix, SplitOptions};
use crate::model::gguf::writer::{GgufWriteError, GgufWriter, TensorSource};
use crate::model::gguf::{GgmlType, MetadataValue};

pub use options::{
    default_arch, is_moe_preset, SynthArch, SynthMoe, SynthOptions, MAX_EXPERTS, MOE_PRESETS,
    PRESETS,
};
pub use vocab::CHAT_TEMPLATE;

use vocab::SynthVocab;
use weights::{random_matrix, random_vector, stream_seed};

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("unknown preset '{name}' (known: {})", PRESETS.join(", "))]
    UnknownPreset { name: String },
    #[error("{field} must be at least 1")]
    Zero { field: &'static str },
    #[error("{quant} is an activation format, not a weight type (try Q4_0, Q8_0, Q4_K, F16, ...)")]
    NotAWeightType { quant: GgmlType },
    #[error("{field} {value} is not divisible by {by_field} {by}: try {fix_field} {suggestion}")]
    NotDivisible {
        field: &'static str,
        value: usize,
        by_field: &'static str,
        by: usize,
        /// The field the suggestion is for.
        fix_field: &'static str,
        suggestion: usize,
    },
    #[error(
        "head dimension {head_dim} is odd, but RoPE rotates pairs: try {fix_field} {suggestion}"
    )]
    OddHeadDim {
        head_dim: usize,
        fix_field: &'static str,
        suggestion: usize,
    },
    #[error(
        "llama.cpp sizes {arch} attention hidden x hidden: heads x head_dim must be {hidden}, not {heads} x {head_dim} (drop head_dim, or use qwen3, qwen3moe or llama)"
    )]
    QDimNotHidden {
        arch: SynthArch,
        heads: usize,
        head_dim: usize,
        hidden: usize,
    },
    #[error(
        "heads x head_dim = {heads} x {head_dim} is not a whole number of {quant} blocks ({block} values each): try head_dim {suggestion}"
    )]
    QDimNotWholeBlocks {
        heads: usize,
        head_dim: usize,
        quant: GgmlType,
        block: usize,
        suggestion: usize,
    },
    #[error(
        "{arch} routes every layer to experts: set experts, experts_used and expert_ffn, or use a MoE preset ({})",
        MOE_PRESETS.join(", ")
    )]
    ExpertsRequired { arch: SynthArch },
    #[error("{arch} has no experts in llama.cpp: use {moe_arch} (llama with experts is Mixtral)")]
    DenseArchWithExperts {
        arch: SynthArch,
        moe_arch: SynthArch,
    },
    #[error("experts_used {used} is more than experts {experts}")]
    TooManyExpertsUsed { used: usize, experts: usize },
    #[error("{experts} experts is more than llama.cpp's limit of {max}")]
    TooManyExperts { experts: usize, max: usize },
    #[error("only qwen2moe has a shared expert: shared_ffn is not for {arch}")]
    NoSharedExpert { arch: SynthArch },
    #[error(
        "{field} {value} is not a whole number of {quant} blocks ({block} values each): try {field} {suggestion}"
    )]
    NotWholeBlocks {
        field: &'static str,
        value: usize,
        quant: GgmlType,
        block: usize,
        suggestion: usize,
    },
    #[error("vocab {vocab} is too small: the byte-level tokenizer needs at least {min} tokens")]
    VocabTooSmall { vocab: usize, min: usize },
    #[error("{field} {value} does not fit the u32 GGUF stores it in")]
    TooLarge { field: &'static str, value: usize },
    #[error(transparent)]
    Write(#[from] GgufWriteError),
}

/// What `synth` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthReport {
    /// The file (the first shard of a split).
    pub path: PathBuf,
    /// Every file's bytes together.
    pub bytes: u64,
    /// Files written: 1, or the shards of a split.
    pub files: usize,
    pub tensors: usize,
    /// Weight values, norms and biases included.
    pub parameters: u64,
}

/// One tensor of a synthetic model, before its contents exist.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthTensor {
    pub name: String,
    /// GGML order: `dims[0]` is the input (contiguous) dimension.
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
    contents: Contents,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Contents {
    /// Normal-ish with this standard deviation, in the tensor's type; every
    /// row (of every expert) from its own stream.
    Matrix { std: f32 },
    /// `centre` plus or minus `spread`, F32.
    Vector { centre: f32, spread: f32 },
}

/// Standard deviation of the router's logits for a unit-RMS input (the
/// normalised hidden state): wide enough that the softmax over experts is
/// far from flat, so the top-k weights differ and tokens with different
/// hidden states pick different experts, as a trained router's do.
const ROUTER_LOGIT_STD: f32 = 2.0;

/// The tensor table llama.cpp's loader expects for `opts.arch`, in its order.
/// Dims are GGML's, `dims[0]` the contiguous one; an expert tensor is
/// `[cols, rows, experts]`, one `rows x cols` matrix per expert.
pub fn tensor_plan(opts: &SynthOptions) -> Vec<SynthTensor> {
    let (h, v, ff) = (opts.hidden as u64, opts.vocab as u64, opts.ffn as u64);
    let hd = opts.head_dim() as u64;
    let kv = opts.kv_heads as u64 * hd;
    let q = opts.q_dim() as u64;
    let tensor = |name: String, dims: Vec<u64>, dtype: GgmlType, std: f32| SynthTensor {
        name,
        dims,
        dtype,
        contents: Contents::Matrix { std },
    };
    let matrix = |name: String, cols: u64, rows: u64, std: f32| {
        tensor(name, vec![cols, rows], opts.quant, std)
    };
    let vector = |name: String, len: u64, centre: f32, spread: f32| SynthTensor {
        name,
        dims: vec![len],
        dtype: GgmlType::F32,
        contents: Contents::Vector { centre, spread },
    };
    // 1/sqrt(fan_in) keeps activations at unit scale layer after layer, so
    // a random model's forward pass stays finite in every precision.
    let fan_in = |n: u64| 1.0 / (n as f32).sqrt();
    let norm = |name: String, len: u64| vector(name, len, 1.0, 0.05);

    let mut t = vec![
        matrix("token_embd.weight".into(), h, v, 0.02),
        norm("output_norm.weight".into(), h),
        matrix("output.weight".into(), h, v, fan_in(h)),
    ];
    for i in 0..opts.layers {
        let n = |s: &str| format!("blk.{i}.{s}");
        t.push(norm(n("attn_norm.weight"), h));
        t.push(matrix(n("attn_q.weight"), h, q, fan_in(h)));
        t.push(matrix(n("attn_k.weight"), h, kv, fan_in(h)));
        t.push(matrix(n("attn_v.weight"), h, kv, fan_in(h)));
        if opts.arch.has_attn_bias() {
            t.push(vector(n("attn_q.bias"), q, 0.0, 0.02));
            t.push(vector(n("attn_k.bias"), kv, 0.0, 0.02));
            t.push(vector(n("attn_v.bias"), kv, 0.0, 0.02));
        }
        if opts.arch.has_qk_norm() {
            t.push(norm(n("attn_q_norm.weight"), hd));
            t.push(norm(n("attn_k_norm.weight"), hd));
        }
        t.push(matrix(n("attn_output.weight"), q, h, fan_in(q)));
        t.push(norm(n("ffn_norm.weight"), h));
        let Some(moe) = &opts.moe else {
            t.push(matrix(n("ffn_gate.weight"), h, ff, fan_in(h)));
            t.push(matrix(n("ffn_up.weight"), h, ff, fan_in(h)));
            t.push(matrix(n("ffn_down.weight"), ff, h, fan_in(ff)));
            continue;
        };
        let (e, ef) = (moe.experts as u64, moe.expert_ffn as u64);
        // The router stays F32: llama-quantize never quantizes it.
        t.push(tensor(
            n("ffn_gate_inp.weight"),
            vec![h, e],
            GgmlType::F32,
            ROUTER_LOGIT_STD * fan_in(h),
        ));
        // Each expert at a dense FFN's scales; the top-k weights sum to at
        // most 1, so the mixture stays at a dense FFN's scale too.
        t.push(tensor(
            n("ffn_gate_exps.weight"),
            vec![h, ef, e],
            opts.quant,
            fan_in(h),
        ));
        t.push(tensor(
            n("ffn_up_exps.weight"),
            vec![h, ef, e],
            opts.quant,
            fan_in(h),
        ));
        t.push(tensor(
            n("ffn_down_exps.weight"),
            vec![ef, h, e],
            opts.quant,
            fan_in(ef),
        ));
        if let Some(shared) = opts.shared_ffn() {
            let s = shared as u64;
            // sigmoid(w . x) with w . x ~ N(0, 1): the shared expert's gate
            // moves between about 0.25 and 0.75.
            t.push(tensor(
                n("ffn_gate_inp_shexp.weight"),
                vec![h],
                GgmlType::F32,
                fan_in(h),
            ));
            t.push(matrix(n("ffn_gate_shexp.weight"), h, s, fan_in(h)));
            t.push(matrix(n("ffn_up_shexp.weight"), h, s, fan_in(h)));
            t.push(matrix(n("ffn_down_shexp.weight"), s, h, fan_in(s)));
        }
    }
    t
}

/// The model metadata (everything but the tokenizer) llama.cpp reads.
fn model_metadata(opts: &SynthOptions) -> Vec<(String, MetadataValue)> {
    use MetadataValue as V;
    let a = opts.arch.name();
    // `validate` has checked every count fits in u32.
    let u = |n: usize| V::U32(n as u32);
    let experts = match &opts.moe {
        Some(m) => format!(" {}x{} experts", m.experts, m.expert_ffn),
        None => String::new(),
    };
    let mut m: Vec<(String, MetadataValue)> = vec![
        ("general.architecture".into(), V::String(a.into())),
        (
            "general.name".into(),
            V::String(format!(
                "shardlab synth {a} {}L {}d{experts} {} seed {}",
                opts.layers, opts.hidden, opts.quant, opts.seed
            )),
        ),
        ("general.alignment".into(), V::U32(32)),
        ("general.file_type".into(), V::U32(opts.file_type())),
        ("general.quantization_version".into(), V::U32(2)),
        (format!("{a}.block_count"), u(opts.layers)),
        (format!("{a}.context_length"), u(opts.context)),
        (format!("{a}.embedding_length"), u(opts.hidden)),
        (
            format!("{a}.feed_forward_length"),
            u(opts.feed_forward_length()),
        ),
        (format!("{a}.attention.head_count"), u(opts.heads)),
        (format!("{a}.attention.head_count_kv"), u(opts.kv_heads)),
        (
            format!("{a}.rope.freq_base"),
            V::F32(opts.arch.rope_freq_base()),
        ),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            V::F32(opts.arch.rms_norm_eps()),
        ),
        (format!("{a}.rope.dimension_count"), u(opts.head_dim())),
        (format!("{a}.vocab_size"), u(opts.vocab)),
    ];
    // Qwen3's converter always writes the head size; elsewhere llama.cpp
    // needs it only when it is not hidden / heads.
    if opts.arch.has_qk_norm() || opts.head_dim_is_explicit() {
        m.push((format!("{a}.attention.key_length"), u(opts.head_dim())));
        m.push((format!("{a}.attention.value_length"), u(opts.head_dim())));
    }
    if let Some(moe) = &opts.moe {
        m.push((format!("{a}.expert_count"), u(moe.experts)));
        m.push((format!("{a}.expert_used_count"), u(moe.experts_used)));
        // Mixtral's expert width is `llama.feed_forward_length`.
        if opts.arch != SynthArch::Llama {
            m.push((format!("{a}.expert_feed_forward_length"), u(moe.expert_ffn)));
        }
        if let Some(shared) = opts.shared_ffn() {
            m.push((format!("{a}.expert_shared_feed_forward_length"), u(shared)));
        }
    }
    m
}

fn build_writer(opts: &SynthOptions) -> Result<(GgufWriter, usize, u64), SynthError> {
    opts.validate()?;
    let mut w = GgufWriter::new();
    for (k, v) in model_metadata(opts) {
        w.add_metadata(&k, v);
    }
    for (k, v) in SynthVocab::new(opts.vocab).metadata() {
        w.add_metadata(k, v);
    }
    let plan = tensor_plan(opts);
    let mut parameters = 0u64;
    for t in &plan {
        let seed = stream_seed(opts.seed, &t.name);
        let count: u64 = t.dims.iter().product();
        parameters += count;
        let source: TensorSource = match t.contents {
            Contents::Matrix { std } => {
                let rows: u64 = t.dims[1..].iter().product();
                random_matrix(seed, rows as usize, t.dims[0] as usize, t.dtype, std)
            }
            Contents::Vector { centre, spread } => {
                random_vector(seed, count as usize, centre, spread)
            }
        };
        w.add_tensor(&t.name, &t.dims, t.dtype, source);
    }
    Ok((w, plan.len(), parameters))
}

/// The size in bytes of the file `synth` would write, without writing it.
pub fn planned_size(opts: &SynthOptions) -> Result<u64, SynthError> {
    let (w, _, _) = build_writer(opts)?;
    Ok(w.file_size(Path::new("synth.gguf"))?)
}

/// Writes a random model to `out`, calling `progress(bytes_written, total)` as
/// it goes. The same options and seed always give the same bytes.
pub fn synth(
    opts: &SynthOptions,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SynthReport, SynthError> {
    let (w, tensors, parameters) = build_writer(opts)?;
    let bytes = w.write_with_progress(out, progress)?;
    Ok(SynthReport {
        path: out.to_path_buf(),
        bytes,
        files: 1,
        tensors,
        parameters,
    })
}

/// Like [`synth`], written as a split GGUF named after `out` the way
/// llama-gguf-split names shards (`m.gguf` -> `m-00001-of-00003.gguf`, ...).
pub fn synth_split(
    opts: &SynthOptions,
    out: &Path,
    split: &SplitOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SynthReport, SynthError> {
    let (w, tensors, parameters) = build_writer(opts)?;
    let files = w.write_split(&split_prefix(out), split, progress)?;
    Ok(SynthReport {
        path: files[0].0.clone(),
        bytes: files.iter().map(|(_, b)| b).sum(),
        files: files.len(),
        tensors,
        parameters,
    })
}
