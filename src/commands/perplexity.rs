//! `shardlab perplexity`: the quality cost of a precision. Runs a text
//! through a reference (this process, f32 KV cache, exact arithmetic) and
//! through the configuration the flags describe (a KV precision, a wire
//! precision over nodes), and prints each one's perplexity and the KL
//! divergence between their next-token distributions. Chunks are cut and
//! scored as llama.cpp's `llama-perplexity` does (the second half of each
//! `--ctx`-token chunk), so its figures on the same file sit beside these.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use shardlab_engine::metrics::quality::{log_softmax, QualitySummary, QualityTally};
use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::orchestrator::Orchestrator;
use shardlab_engine::shard::plan::speed::Workload;

use super::cluster::{self, ClusterArgs};
use super::progress::print_pull_event;

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[arg(long, short = 'm', default_value = "smollm2")]
    pub model: String,
    /// A UTF-8 text file (bench/text/alice-ch1-2.txt ships with the repo).
    #[arg(long)]
    pub text: PathBuf,
    /// Tokens per chunk; the second half of each is scored.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Score at most this many chunks.
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Threads (per node, with --nodes).
    #[arg(long, short = 't', default_value_t = 1)]
    pub threads: usize,
    /// Print one JSON object on one line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(args: PerplexityArgs) -> Result<()> {
    if args.threads == 0 || args.ctx < 4 {
        bail!("--threads must be at least 1 and --ctx at least 4");
    }
    args.cluster.check_one_process()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("starting the worker threads")?;
    pool.install(|| perplexity(&args))
}

fn open(args: &PerplexityArgs, name: &str, kv: KvType) -> Result<Orchestrator> {
    let mut core = cluster::orchestrator(name, args.threads)?;
    core.context = Some(args.ctx);
    core.kv = kv;
    let model = core.open_model(&args.model, &mut print_pull_event)?;
    core.set_model(model);
    Ok(core)
}

fn perplexity(args: &PerplexityArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.text)
        .with_context(|| format!("reading {}", args.text.display()))?;
    let mut reference = open(args, "perplexity-reference", KvType::F32)?;
    reference.ensure_runner(&mut |_| {})?;
    // The text is checked before any node starts.
    let ids = reference.require_model()?.encode(&text)?;
    let mut n_chunks = ids.len() / args.ctx;
    if let Some(cap) = args.chunks {
        n_chunks = n_chunks.min(cap);
    }
    if n_chunks == 0 {
        bail!(
            "{} is {} tokens, shorter than one chunk of --ctx {}",
            args.text.display(),
            ids.len(),
            args.ctx
        );
    }
    let mut run = open(args, "perplexity", args.cluster.kv)?;
    let described = match &args.cluster.nodes {
        Some(nodes) => {
            // Scoring chunks of --ctx tokens is prefill: what `auto` ranks by.
            let workload = Workload {
                prompt_tokens: args.ctx,
                gen_tokens: 1,
                in_flight: 1,
            };
            let layout = cluster::start(
                &mut run,
                &args.cluster,
                nodes,
                args.threads,
                false,
                workload,
            )?;
            format!(
                "{layout} over {nodes}, wire {}, KV {}",
                args.cluster.wire, args.cluster.kv
            )
        }
        None => {
            run.ensure_runner(&mut |_| {})?;
            format!("one process, KV {}", args.cluster.kv)
        }
    };
    eprintln!(
        "{}: {} tokens, {n_chunks} chunks of {} | reference: one process, KV f32, exact | run: {described}",
        args.text.display(),
        ids.len(),
        args.ctx
    );
    let first = args.ctx / 2;
    let mut tally = QualityTally::default();
    for c in 0..n_chunks {
        let chunk = &ids[c * args.ctx..(c + 1) * args.ctx];
        let mut expected = Vec::with_capacity(args.ctx - first);
        reference.score(chunk, first, &mut |_, logits| {
            expected.push(log_softmax(logits))
        })?;
        let mut at = 0;
        run.score(chunk, first, &mut |i, logits| {
            tally.add(&expected[at], logits, chunk[i + 1]);
            at += 1;
        })?;
        let s = tally.summary();
        eprintln!(
            "chunk {}/{n_chunks}: perplexity {:.4} (reference {:.4})",
            c + 1,
            s.perplexity,
            s.reference_perplexity
        );
    }
    print(&tally.summary(), &described, args.json);
    Ok(())
}

fn print(s: &QualitySummary, described: &str, json: bool) {
    if json {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        v["run"] = described.into();
        println!("{v}");
        return;
    }
    println!("scored tokens {}", s.tokens);
    println!(
        "perplexity {:.4} | reference {:.4}",
        s.perplexity, s.reference_perplexity
    );
    println!(
        "KL divergence from the reference: mean {:.6} p99 {:.6} max {:.6} | same top token {:.2}%",
        s.mean_kl,
        s.p99_kl,
        s.max_kl,
        100.0 * s.same_top
    );
}
