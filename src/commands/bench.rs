//! `shardlab bench`: prefill and decode speed of one layout, with the
//! figures it is judged against measured in the same run (memory bandwidth,
//! raw loopback round trip).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use shardlab_engine::cluster::coordinator::Cluster;
use shardlab_engine::metrics::bandwidth::{loopback_round_trips, memory_read_bandwidth, quantile};
use shardlab_engine::model::generate::{generate, generate_many, Backend, GenerateOptions};
use shardlab_engine::model::gguf::GgufFile;
use shardlab_engine::model::loader;
use shardlab_engine::model::sampling::SamplingParams;
use shardlab_engine::model::store::{ModelSource, ModelStore};
use shardlab_engine::model::tokenizer::Tokenizer;
use shardlab_engine::parallel::WireDtype;
use shardlab_engine::shard::plan::{parse_layers, LayoutRequest, ModelSummary};

use super::cluster_run::{self, ClusterSetup};
use super::progress::print_pull_event;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, short = 'm', default_value = "smollm2")]
    pub model: String,
    /// Prompt length for the prefill measurement.
    #[arg(long = "prompt-tokens", default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens to decode.
    #[arg(long, default_value_t = 64)]
    pub gen: usize,
    /// Threads (per node, with --nodes).
    #[arg(long, short = 't', default_value_t = 1)]
    pub threads: usize,
    /// As for `run`: local:N or ADDR,ADDR,...
    #[arg(long)]
    pub nodes: Option<String>,
    #[arg(long, default_value = "tensor")]
    pub layout: String,
    #[arg(long)]
    pub layers: Option<String>,
    #[arg(long = "token-file")]
    pub token_file: Option<std::path::PathBuf>,
    /// Pin local node i to cores [i*threads, (i+1)*threads).
    #[arg(long)]
    pub pin: bool,
    /// Skip the memory-bandwidth probe.
    #[arg(long = "no-probe")]
    pub no_probe: bool,
    /// With --nodes, emulate a slower link on every connection of the
    /// cluster: a profile (tb5, 10gbe, 1gbe, wifi) or
    /// latency=200us,bandwidth=10gbit,jitter=20us. See docs/LINKS.md.
    #[arg(long)]
    pub link: Option<shardlab_engine::net::LinkProfile>,
    /// Sequences in flight at once (with --nodes); decode is then reported
    /// as the aggregate rate of all of them.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Precision of activations between nodes: f64 (exact), f32, f16, bf16, q8.
    #[arg(long, default_value = "f64")]
    pub wire: WireDtype,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.threads == 0 || args.prompt_tokens == 0 || args.gen == 0 || args.parallel == 0 {
        bail!("--threads, --prompt-tokens, --gen and --parallel must be at least 1");
    }
    if args.parallel > 1 && args.nodes.is_none() {
        bail!("--parallel runs sequences across nodes: add --nodes (one process runs them one after another at its single-sequence rate)");
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("starting the worker threads")?;
    pool.install(|| bench(&args))
}

/// `n` tokens of ordinary text, by repeating a paragraph.
fn prompt_of(tokenizer: &Tokenizer, n: usize) -> Result<Vec<u32>> {
    let text = "The history of the city begins with a small settlement on the river, \
                where traders met to exchange grain, cloth and tools. Over the centuries it grew. ";
    let mut ids = Vec::new();
    while ids.len() < n {
        ids.extend(tokenizer.encode(text, false)?);
    }
    ids.truncate(n);
    Ok(ids)
}

fn bench(args: &BenchArgs) -> Result<()> {
    let store = ModelStore::from_env()?;
    let source = store.resolve(&args.model, &mut print_pull_event)?;
    let ModelSource::Gguf(path) = &source else {
        bail!("bench takes a GGUF model");
    };
    let gguf = GgufFile::open(path)?;
    let summary = ModelSummary::from_gguf(&gguf)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let prompt = prompt_of(&tokenizer, args.prompt_tokens)?;
    let context = (args.prompt_tokens + args.gen + 8).max(256);
    let opts = GenerateOptions {
        max_tokens: args.gen,
        sampling: SamplingParams::greedy(),
        stop_strings: Vec::new(),
        stop_at_eos: false,
    };
    let weight_bytes = summary.total_weight_bytes() as f64;
    println!(
        "model {} ({:.1} MiB of weights) | prompt {} tokens | decode {} tokens | threads {}",
        path.display(),
        weight_bytes / 1048576.0,
        args.prompt_tokens,
        args.gen,
        args.threads
    );

    let (label, stats, cluster) = match &args.nodes {
        None => {
            let mut model = loader::load(&source, context)?;
            let mut cached = Vec::new();
            // Warm up once (page in the mapped weights) as the cluster path
            // does, so prefill is not timing the first read of the file.
            let warm = GenerateOptions {
                max_tokens: 2,
                ..opts.clone()
            };
            generate(
                &mut model.transformer,
                &tokenizer,
                &mut cached,
                &prompt[..8.min(prompt.len())],
                &warm,
                None,
                &mut |_| {},
            )?;
            model.transformer.truncate(0);
            cached.clear();
            let g = generate(
                &mut model.transformer,
                &tokenizer,
                &mut cached,
                &prompt,
                &opts,
                None,
                &mut |_| {},
            )?;
            ("single".to_string(), g.stats, None)
        }
        Some(nodes) => {
            let mut layout: LayoutRequest = args.layout.parse()?;
            if let Some(layers) = &args.layers {
                layout = LayoutRequest::Pipeline {
                    layers: Some(parse_layers(layers)?),
                };
            }
            let setup = ClusterSetup {
                nodes: nodes.parse()?,
                layout: layout.clone(),
                token_file: args.token_file.clone(),
                threads_per_node: args.threads,
                home: store.home().to_path_buf(),
                context,
                pin: args.pin,
                link: args.link.clone(),
                wire: args.wire,
            };
            let mut cluster = cluster_run::start(&setup, &gguf)?;
            // Warm up once (page in the shards), then measure from clean counters.
            let mut cached = Vec::new();
            let warm = GenerateOptions {
                max_tokens: 2,
                ..opts.clone()
            };
            generate(
                &mut cluster,
                &tokenizer,
                &mut cached,
                &prompt[..8.min(prompt.len())],
                &warm,
                None,
                &mut |_| {},
            )?;
            cluster.truncate(0)?;
            cached.clear();
            cluster.reset_metrics();
            if args.parallel > 1 {
                let prompts = vec![prompt.clone(); args.parallel];
                let many = generate_many(&mut cluster, &tokenizer, &prompts, &opts, None)?;
                let layout_label = format!(
                    "{layout} over {} nodes, {} sequences in flight, wire {}",
                    cluster.nodes().len(),
                    args.parallel,
                    args.wire
                );
                println!("layout {layout_label}");
                println!(
                    "prefill {:.1} tok/s aggregate  ({} prompts of {} tokens in {:.3} s)",
                    (args.parallel * args.prompt_tokens) as f64
                        / many.prefill_wall_seconds.max(1e-9),
                    args.parallel,
                    args.prompt_tokens,
                    many.prefill_wall_seconds
                );
                println!(
                    "decode  {:.2} tok/s aggregate  ({} tokens in {:.3} s once all were decoding)",
                    many.decode_tokens_per_second(),
                    many.steady_tokens,
                    many.wall_seconds - many.prefill_wall_seconds
                );
                print_node_lines(&mut cluster, &summary);
                return Ok(());
            }
            let g = generate(
                &mut cluster,
                &tokenizer,
                &mut cached,
                &prompt,
                &opts,
                None,
                &mut |_| {},
            )?;
            (
                format!(
                    "{layout} over {} nodes, wire {}",
                    cluster.nodes().len(),
                    args.wire
                ),
                g.stats,
                Some(cluster),
            )
        }
    };
    let prefill = stats.prefill_tokens_per_second();
    let decode = stats.decode_tokens_per_second();
    println!("layout {label}");
    if let (Some(link), Some(_)) = (&args.link, &args.nodes) {
        println!("link emulated {}", link.describe());
    }
    println!(
        "prefill {prefill:.1} tok/s  ({} tokens in {:.3} s)",
        stats.prompt_tokens, stats.prefill_seconds
    );
    println!(
        "decode  {decode:.2} tok/s  ({} tokens in {:.3} s)",
        stats.generated_tokens, stats.decode_seconds
    );

    if !args.no_probe {
        let started = Instant::now();
        let bw = memory_read_bandwidth(1 << 30, 3);
        let need = weight_bytes * decode;
        println!(
            "memory bandwidth (1 thread, 1 GiB f32 sum) {:.1} GB/s [{:.1} s]; decode reads {:.1} GB/s of weights = {:.0}% of one core's bandwidth",
            bw / 1e9,
            started.elapsed().as_secs_f64(),
            need / 1e9,
            100.0 * need / bw
        );
    }

    if let Some(mut cluster) = cluster {
        print_node_lines(&mut cluster, &summary);
    }
    Ok(())
}

/// Per-node compute / wait / traffic, against a raw loopback round trip of
/// one all-reduce payload measured now.
fn print_node_lines(cluster: &mut Cluster, summary: &ModelSummary) {
    let hidden = summary.config.hidden;
    let raw = loopback_round_trips(hidden * 8 + 24, 400).unwrap_or_default();
    let raw_p50 = quantile(&raw, 0.5).unwrap_or(0.0);
    println!(
            "raw loopback TCP round trip of {} bytes (one f64 all-reduce payload): p50 {:.1} µs, p99 {:.1} µs",
            hidden * 8,
            raw_p50 * 1e6,
            quantile(&raw, 0.99).unwrap_or(0.0) * 1e6
        );
    for (label, m) in cluster.metrics() {
        let Ok(m) = m else { continue };
        let total = m.compute_seconds + m.wait_seconds;
        let sent: u64 = m.traffic.iter().map(|t| t.bytes_sent).sum();
        let steps = m.steps.max(1) as f64;
        println!(
                "{label}: compute {:.3} s, waiting on peers {:.3} s ({:.0}% of step time), sent {:.1} KiB/step, all-reduce p50 {:.1} µs p99 {:.1} µs ({:.2}x raw RTT), hop p50 {:.1} µs",
                m.compute_seconds,
                m.wait_seconds,
                if total > 0.0 { 100.0 * m.wait_seconds / total } else { 0.0 },
                sent as f64 / steps / 1024.0,
                quantile(&m.allreduce_seconds, 0.5).unwrap_or(0.0) * 1e6,
                quantile(&m.allreduce_seconds, 0.99).unwrap_or(0.0) * 1e6,
                quantile(&m.allreduce_seconds, 0.5).unwrap_or(0.0) / raw_p50.max(1e-9),
                quantile(&m.hop_seconds, 0.5).unwrap_or(0.0) * 1e6,
            );
    }
}
