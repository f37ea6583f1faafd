//! `shardlab synth`: random-weight GGUF files in real model shapes, dense or
//! mixture-of-experts.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Args;
use shardlab_engine::model::gguf::GgmlType;
use shardlab_engine::model::gguf::SplitOptions;
use shardlab_engine::model::synth::{
    default_arch, synth, synth_split, SynthArch, SynthMoe, SynthOptions, PRESETS,
};

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// llama, qwen2, qwen3, qwen2moe or qwen3moe; llama with experts is
    /// Mixtral. Default: qwen3moe with experts (a MoE preset or --experts),
    /// llama without.
    #[arg(long)]
    pub arch: Option<String>,
    /// A named shape: tiny, 1b, 8b (Llama-3-8B), 70b (Llama-3-70B); with
    /// experts: moe-tiny, moe-small (57 MB, for demos), 7b-a1b (OLMoE-1B-7B), 30b-a3b (Qwen3-30B-A3B).
    #[arg(long)]
    pub preset: Option<String>,
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long)]
    pub hidden: Option<usize>,
    #[arg(long)]
    pub heads: Option<usize>,
    #[arg(long = "kv-heads")]
    pub kv_heads: Option<usize>,
    /// Dimension of one attention head (default hidden / heads).
    #[arg(long = "head-dim")]
    pub head_dim: Option<usize>,
    /// Dense FFN width (not used with experts).
    #[arg(long)]
    pub ffn: Option<usize>,
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Experts per layer (a mixture-of-experts model).
    #[arg(long)]
    pub experts: Option<usize>,
    /// Experts each token is routed to (top-k).
    #[arg(long = "experts-used")]
    pub experts_used: Option<usize>,
    /// FFN width of one expert.
    #[arg(long = "expert-ffn")]
    pub expert_ffn: Option<usize>,
    /// qwen2moe's shared expert width (default 4 x --expert-ffn).
    #[arg(long = "shared-ffn")]
    pub shared_ffn: Option<usize>,
    /// Weight type: q4_0, q4_1, q5_0, q5_1, q8_0, q2_k..q6_k, f16, bf16, f32.
    #[arg(long, default_value = "q4_0")]
    pub quant: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write the .gguf file.
    #[arg(long)]
    pub out: PathBuf,
    /// Write N files instead of one, as llama-gguf-split does: --out m.gguf
    /// gives m-00001-of-0000N.gguf ... (load the model by any of them).
    #[arg(long, value_name = "N")]
    pub split: Option<usize>,
}

impl SynthArgs {
    fn moe_flags_given(&self) -> bool {
        self.experts.is_some()
            || self.experts_used.is_some()
            || self.expert_ffn.is_some()
            || self.shared_ffn.is_some()
    }
}

/// The options the flags describe: a preset (or, without one, the flags
/// alone) with every given flag overriding its field.
fn options(args: &SynthArgs) -> Result<SynthOptions> {
    let arch = match &args.arch {
        Some(name) => SynthArch::from_name(name).ok_or_else(|| {
            anyhow!("unknown --arch '{name}' (choose llama, qwen2, qwen3, qwen2moe or qwen3moe)")
        })?,
        None if args.experts.is_some() => SynthArch::Qwen3Moe,
        None => default_arch(args.preset.as_deref().unwrap_or("")),
    };
    let quant = GgmlType::from_name(&args.quant).ok_or_else(|| {
        anyhow!(
            "unknown --quant '{}' (choose q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, f16, bf16, f32)",
            args.quant
        )
    })?;
    let need = |v: Option<usize>, flag: &str, why: &str| {
        v.ok_or_else(|| anyhow!("--{flag} is required {why}"))
    };
    let without_preset = format!("without --preset (presets: {})", PRESETS.join(", "));
    let mut opts = match &args.preset {
        Some(name) => SynthOptions::preset(arch, name)?,
        None => SynthOptions {
            layers: need(args.layers, "layers", &without_preset)?,
            hidden: need(args.hidden, "hidden", &without_preset)?,
            heads: need(args.heads, "heads", &without_preset)?,
            kv_heads: need(args.kv_heads, "kv-heads", &without_preset)?,
            ffn: match args.experts {
                // No dense FFN; the field is unused.
                Some(_) => args.ffn.or(args.expert_ffn).unwrap_or(0),
                None => need(args.ffn, "ffn", &without_preset)?,
            },
            vocab: need(args.vocab, "vocab", &without_preset)?,
            ..SynthOptions::preset(SynthArch::Llama, "tiny")?
        },
    };
    opts.arch = arch;
    opts.layers = args.layers.unwrap_or(opts.layers);
    opts.hidden = args.hidden.unwrap_or(opts.hidden);
    opts.heads = args.heads.unwrap_or(opts.heads);
    opts.kv_heads = args.kv_heads.unwrap_or(opts.kv_heads);
    opts.head_dim = args.head_dim.or(opts.head_dim);
    opts.ffn = args.ffn.unwrap_or(opts.ffn);
    opts.vocab = args.vocab.unwrap_or(opts.vocab);
    opts.quant = quant;
    opts.seed = args.seed;
    if args.moe_flags_given() {
        let why = "with --experts (or a MoE preset)";
        let base = opts.moe;
        opts.moe = Some(SynthMoe {
            experts: need(args.experts.or(base.map(|m| m.experts)), "experts", why)?,
            experts_used: need(
                args.experts_used.or(base.map(|m| m.experts_used)),
                "experts-used",
                why,
            )?,
            expert_ffn: need(
                args.expert_ffn.or(base.map(|m| m.expert_ffn)),
                "expert-ffn",
                why,
            )?,
            shared_ffn: args.shared_ffn.or(base.and_then(|m| m.shared_ffn)),
        });
    }
    opts.validate()?;
    Ok(opts)
}

pub fn run(args: SynthArgs) -> Result<()> {
    let opts = options(&args)?;
    let started = Instant::now();
    let mut last_percent = u64::MAX;
    // A percentage redrawn in place is for a person watching; in a log it
    // would be a hundred updates on one line.
    let on_terminal = std::io::stderr().is_terminal();
    let mut show = |done: u64, total: u64| {
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        if on_terminal && percent != last_percent {
            last_percent = percent;
            eprint!(
                "\rwriting {}: {percent:3}% of {:.1} MiB",
                args.out.display(),
                total as f64 / 1048576.0
            );
            let _ = std::io::stderr().flush();
        }
    };
    let report = match args.split {
        None => synth(&opts, &args.out, &mut show)?,
        Some(0) => return Err(anyhow!("--split needs at least 1 file")),
        Some(n) => synth_split(&opts, &args.out, &SplitOptions::files(n), &mut show)?,
    };
    if on_terminal {
        eprintln!();
    }
    let files = match report.files {
        1 => String::new(),
        n => format!(", first of {n} files"),
    };
    let experts = match &opts.moe {
        Some(m) => format!(", {} of {} experts per token", m.experts_used, m.experts),
        None => String::new(),
    };
    println!(
        "wrote {}{files} ({} {}{experts}, {} tensors, {} parameters, {:.1} MiB) in {:.1} s",
        report.path.display(),
        opts.arch.name(),
        opts.quant,
        report.tensors,
        parameter_count(report.parameters),
        report.bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A parameter count for people: billions, or millions for the small presets.
fn parameter_count(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2} B", n as f64 / 1e9)
    } else {
        format!("{:.1} M", n as f64 / 1e6)
    }
}
