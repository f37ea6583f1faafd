//! `shardlab run`: one prompt (or several in flight across nodes), tokens
//! streamed to stdout, figures to stderr. A thin layer over the orchestrator.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use shardlab_engine::metrics::memory::peak_rss_bytes;
use shardlab_engine::model::chat::ChatMessage;
use shardlab_engine::model::generate::{GenerateOptions, Generation};
use shardlab_engine::model::loader::DEFAULT_CONTEXT;
use shardlab_engine::model::sampling::SamplingParams;
use shardlab_engine::orchestrator::Orchestrator;
use shardlab_engine::shard::plan::speed::Workload;

use super::cluster::{self, ClusterArgs};
use super::progress::print_pull_event;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A model alias (smollm2), a .gguf file or a Hugging Face directory.
    #[arg(long, short = 'm', default_value = "smollm2")]
    pub model: String,
    /// The prompt text; repeat it for several sequences at once (with --nodes).
    #[arg(long, short = 'p', required = true)]
    pub prompt: Vec<String>,
    /// Sequences in flight at once across the nodes (prompts are reused in
    /// turn when fewer were given). Default: one per --prompt.
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 128)]
    pub max_tokens: usize,
    /// 0 decodes greedily.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Render the prompt through the model's chat template as a user turn.
    #[arg(long)]
    pub chat: bool,
    /// A system message for --chat.
    #[arg(long)]
    pub system: Option<String>,
    /// Stop when this text appears (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Worker threads for the matmuls (default: all cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Context length (KV cache positions).
    #[arg(long, default_value_t = DEFAULT_CONTEXT)]
    pub ctx: usize,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(args: RunArgs) -> Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the worker threads")?;
    pool.install(|| run_in_pool(args, threads))
}

fn run_in_pool(args: RunArgs, threads: usize) -> Result<()> {
    let k = sequences(&args)?;
    if k > 1 && args.cluster.nodes.is_none() {
        bail!("several prompts or --parallel run across nodes: add --nodes (e.g. local:2)");
    }
    args.cluster.check_one_process()?;
    let node_threads = args.threads.unwrap_or(1);
    let mut core = cluster::orchestrator("run", node_threads)?;
    core.context = Some(args.ctx);
    core.kv = args.cluster.kv;
    let model = core.open_model(&args.model, &mut print_pull_event)?;
    core.set_model(model);
    // What `--layout auto` ranks for: the first prompt, -n tokens, k in flight.
    let workload = Workload {
        prompt_tokens: prompt_ids(&args, &args.prompt[0], &core)?.len(),
        gen_tokens: args.max_tokens,
        in_flight: k,
    };
    let load_started = Instant::now();
    match &args.cluster.nodes {
        Some(nodes) => {
            cluster::start(
                &mut core,
                &args.cluster,
                nodes,
                node_threads,
                false,
                workload,
            )?;
        }
        None => core.ensure_runner(&mut |_| {})?,
    }
    let load_seconds = load_started.elapsed().as_secs_f64();
    let opts = generate_options(&args)?;
    if k > 1 {
        return run_many(&mut core, &args, k, &opts);
    }
    let prompt = prompt_ids(&args, &args.prompt[0], &core)?;
    let generation = generate_to_stdout(&mut core, &prompt, &opts)?;
    let s = &generation.stats;
    if core.is_sharded() {
        cluster::print_stats(&mut core)?;
    } else {
        let peak = peak_rss_bytes().map_or("unknown".to_string(), |b| {
            format!("{:.1} MiB", b as f64 / 1048576.0)
        });
        eprintln!(
            "model {} | load {:.2} s | threads {threads}",
            core.require_model()?.path.display(),
            load_seconds,
        );
        eprintln!("peak memory {peak}");
    }
    eprintln!(
        "prompt tokens {} | generated tokens {} | stop {:?}\n\
         prefill {:.1} tok/s | decode {:.1} tok/s | time to first token {:.0} ms",
        s.prompt_tokens,
        s.generated_tokens,
        s.stop,
        s.prefill_tokens_per_second(),
        s.decode_tokens_per_second(),
        s.time_to_first_token * 1e3,
    );
    Ok(())
}

/// Streams the generation to stdout as it comes.
fn generate_to_stdout(
    core: &mut Orchestrator,
    prompt: &[u32],
    opts: &GenerateOptions,
) -> Result<Generation> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let generation = core.generate(prompt, opts, None, &mut |piece| {
        // A closed stdout (e.g. `| head`) is not worth an error here.
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
    })?;
    let _ = writeln!(out);
    Ok(generation)
}

/// `k` sequences in flight at once, the prompts reused in turn.
fn run_many(
    core: &mut Orchestrator,
    args: &RunArgs,
    k: usize,
    opts: &GenerateOptions,
) -> Result<()> {
    let prompts = (0..k)
        .map(|i| prompt_ids(args, &args.prompt[i % args.prompt.len()], core))
        .collect::<Result<Vec<_>>>()?;
    let many = core.generate_many(&prompts, opts, None)?;
    for (i, g) in many.generations.iter().enumerate() {
        println!("[{i}] {}", g.text);
    }
    let generated: usize = many
        .generations
        .iter()
        .map(|g| g.stats.generated_tokens)
        .sum();
    cluster::print_stats(core)?;
    eprintln!(
        "{k} sequences in flight | {generated} tokens in {:.2} s | all prompts prefilled after {:.0} ms | aggregate decode {:.1} tok/s",
        many.wall_seconds,
        many.prefill_wall_seconds * 1e3,
        many.decode_tokens_per_second()
    );
    Ok(())
}

/// How many sequences run at once.
fn sequences(args: &RunArgs) -> Result<usize> {
    let k = args.parallel.unwrap_or(args.prompt.len());
    if k == 0 {
        bail!("--parallel must be at least 1");
    }
    Ok(k)
}

/// The prompt's token ids, through the chat template with `--chat`.
fn prompt_ids(args: &RunArgs, prompt: &str, core: &Orchestrator) -> Result<Vec<u32>> {
    let m = core.require_model()?;
    let text = if args.chat {
        if m.template.is_none() {
            bail!(
                "{} has no chat template; run without --chat",
                m.path.display()
            );
        }
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new("system", system.clone()));
        }
        messages.push(ChatMessage::new("user", prompt));
        m.render_chat(&messages)?
    } else {
        prompt.to_string()
    };
    Ok(m.encode(&text)?)
}

fn generate_options(args: &RunArgs) -> Result<GenerateOptions> {
    let sampling = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repetition_penalty: args.repeat_penalty,
        seed: args.seed,
        ..SamplingParams::default()
    };
    sampling.validate()?;
    Ok(GenerateOptions {
        max_tokens: args.max_tokens,
        sampling,
        stop_strings: args.stop.clone(),
        stop_at_eos: true,
    })
}
