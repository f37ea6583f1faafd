//! `shardlab synth`: random-weight GGUF files in real model shapes.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Args;
use shardlab_engine::model::gguf::GgmlType;
use shardlab_engine::model::gguf::SplitOptions;
use shardlab_engine::model::synth::{synth, synth_split, SynthArch, SynthOptions, PRESETS};

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// llama, qwen2 or qwen3.
    #[arg(long, default_value = "llama")]
    pub arch: String,
    /// A named shape: tiny, 1b, 8b (Llama-3-8B), 70b (Llama-3-70B).
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
    #[arg(long)]
    pub ffn: Option<usize>,
    #[arg(long)]
    pub vocab: Option<usize>,
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

pub fn run(args: SynthArgs) -> Result<()> {
    let arch = SynthArch::from_name(&args.arch).ok_or_else(|| {
        anyhow!(
            "unknown --arch '{}' (choose llama, qwen2 or qwen3)",
            args.arch
        )
    })?;
    let quant = GgmlType::from_name(&args.quant).ok_or_else(|| {
        anyhow!(
            "unknown --quant '{}' (choose q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, f16, bf16, f32)",
            args.quant
        )
    })?;
    let mut opts = match &args.preset {
        Some(name) => SynthOptions::preset(arch, name)?,
        None => {
            let need = |v: Option<usize>, flag: &str| {
                v.ok_or_else(|| {
                    anyhow!(
                        "--{flag} is required without --preset (presets: {})",
                        PRESETS.join(", ")
                    )
                })
            };
            SynthOptions {
                layers: need(args.layers, "layers")?,
                hidden: need(args.hidden, "hidden")?,
                heads: need(args.heads, "heads")?,
                kv_heads: need(args.kv_heads, "kv-heads")?,
                ffn: need(args.ffn, "ffn")?,
                vocab: need(args.vocab, "vocab")?,
                ..SynthOptions::preset(arch, "tiny")?
            }
        }
    };
    // Flags given alongside a preset override its fields.
    if args.preset.is_some() {
        opts.layers = args.layers.unwrap_or(opts.layers);
        opts.hidden = args.hidden.unwrap_or(opts.hidden);
        opts.heads = args.heads.unwrap_or(opts.heads);
        opts.kv_heads = args.kv_heads.unwrap_or(opts.kv_heads);
        opts.ffn = args.ffn.unwrap_or(opts.ffn);
        opts.vocab = args.vocab.unwrap_or(opts.vocab);
    }
    opts.quant = quant;
    opts.seed = args.seed;
    let started = Instant::now();
    let mut last_percent = u64::MAX;
    let mut show = |done: u64, total: u64| {
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        if percent != last_percent {
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
    eprintln!();
    let files = match report.files {
        1 => String::new(),
        n => format!(", first of {n} files"),
    };
    println!(
        "wrote {}{files} ({} {}, {} tensors, {:.2} B parameters, {:.1} MiB) in {:.1} s",
        report.path.display(),
        arch.name(),
        quant,
        report.tensors,
        report.parameters as f64 / 1e9,
        report.bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
