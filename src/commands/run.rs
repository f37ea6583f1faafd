//! `shardlab run`: one prompt, tokens streamed to stdout, figures to stderr.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use shardlab_engine::metrics::memory::peak_rss_bytes;
use shardlab_engine::model::chat::ChatMessage;
use shardlab_engine::model::generate::{
    generate, generate_many, Backend, GenerateOptions, Generation,
};
use shardlab_engine::model::loader::{self, DEFAULT_CONTEXT};
use shardlab_engine::model::sampling::SamplingParams;
use shardlab_engine::model::store::ModelStore;
use shardlab_engine::parallel::WireDtype;

use std::path::Path;

use shardlab_engine::model::chat::ChatTemplate;
use shardlab_engine::model::gguf::GgufFile;
use shardlab_engine::model::store::ModelSource;
use shardlab_engine::model::tokenizer::Tokenizer;
use shardlab_engine::shard::plan::{parse_layers, LayoutRequest};

use super::cluster_run::{self, ClusterSetup};
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
    /// Precision of activations between nodes: f64 (exact), f32, f16, bf16, q8.
    #[arg(long, default_value = "f64")]
    pub wire: WireDtype,
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
    /// Run across nodes: `local:N` starts N node processes here, or give
    /// `ADDR,ADDR,...` of running `shardlab node`s. Left out: one process.
    #[arg(long)]
    pub nodes: Option<String>,
    /// tensor, pipeline, or hybrid:TxP.
    #[arg(long, default_value = "tensor")]
    pub layout: String,
    /// Pipeline layer ranges by hand, e.g. 0..12,12..30.
    #[arg(long)]
    pub layers: Option<String>,
    /// The nodes' shared token (required with node addresses).
    #[arg(long = "token-file")]
    pub token_file: Option<std::path::PathBuf>,
    /// With --nodes, emulate a slower link on every connection of the
    /// cluster: a profile (tb5, 10gbe, 1gbe, wifi) or
    /// latency=200us,bandwidth=10gbit,jitter=20us. See docs/LINKS.md.
    #[arg(long)]
    pub link: Option<shardlab_engine::net::LinkProfile>,
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
    let store = ModelStore::from_env()?;
    let source = store.resolve(&args.model, &mut print_pull_event)?;
    if sequences(&args)? > 1 && args.nodes.is_none() {
        bail!("several prompts or --parallel run across nodes: add --nodes (e.g. local:2)");
    }
    if let Some(nodes) = &args.nodes {
        return run_on_cluster(&args, nodes, &source, store.home(), threads);
    }
    let load_started = Instant::now();
    let mut model =
        loader::load(&source, args.ctx).with_context(|| format!("loading {}", args.model))?;
    let load_seconds = load_started.elapsed().as_secs_f64();

    let prompt = prompt_ids(
        &args,
        &args.prompt[0],
        &model.tokenizer,
        model.chat_template.as_ref(),
        &model.path,
    )?;
    let opts = generate_options(&args)?;
    let generation = generate_to_stdout(&mut model.transformer, &model.tokenizer, &prompt, &opts)?;

    let s = &generation.stats;
    let peak = peak_rss_bytes().map_or("unknown".to_string(), |b| {
        format!("{:.1} MiB", b as f64 / 1048576.0)
    });
    eprintln!(
        "model {} | load {:.2} s | threads {threads}\n\
         prompt tokens {} | generated tokens {} | stop {:?}\n\
         prefill {:.1} tok/s | decode {:.1} tok/s | time to first token {:.0} ms | peak memory {peak}",
        model.path.display(),
        load_seconds,
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
    backend: &mut dyn Backend,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    opts: &GenerateOptions,
) -> Result<Generation> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut cached = Vec::new();
    let generation = generate(
        backend,
        tokenizer,
        &mut cached,
        prompt,
        opts,
        None,
        &mut |piece| {
            // A closed stdout (e.g. `| head`) is not worth an error here.
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        },
    )?;
    let _ = writeln!(out);
    Ok(generation)
}

/// How many sequences run at once.
fn sequences(args: &RunArgs) -> Result<usize> {
    let k = args.parallel.unwrap_or(args.prompt.len());
    if k == 0 {
        bail!("--parallel must be at least 1");
    }
    Ok(k)
}

fn prompt_ids(
    args: &RunArgs,
    prompt: &str,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    path: &Path,
) -> Result<Vec<u32>> {
    let prompt_text = if args.chat {
        let template = template.with_context(|| {
            format!(
                "{} has no chat template; run without --chat",
                path.display()
            )
        })?;
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage {
                role: "system".into(),
                content: system.clone(),
            });
        }
        messages.push(ChatMessage {
            role: "user".into(),
            content: prompt.to_string(),
        });
        template.render(&messages, true)?
    } else {
        prompt.to_string()
    };
    Ok(tokenizer.encode(&prompt_text, true)?)
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

fn run_on_cluster(
    args: &RunArgs,
    nodes: &str,
    source: &ModelSource,
    home: &Path,
    threads: usize,
) -> Result<()> {
    let ModelSource::Gguf(path) = source else {
        bail!(
            "running across nodes takes a GGUF model for now; {} is a Hugging Face directory",
            source.path().display()
        );
    };
    let gguf = GgufFile::open(path)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let template = gguf
        .get_str("tokenizer.chat_template")?
        .map(|src| {
            let text =
                |id: Option<u32>| id.and_then(|i| tokenizer.token_text(i)).unwrap_or_default();
            ChatTemplate::new(
                src,
                &text(tokenizer.bos_id()),
                &text(tokenizer.eos_ids().first().copied()),
            )
        })
        .transpose()?;
    let mut layout: LayoutRequest = args.layout.parse()?;
    if let Some(layers) = &args.layers {
        let ranges = parse_layers(layers)?;
        layout = match layout {
            LayoutRequest::Pipeline { .. } => LayoutRequest::Pipeline {
                layers: Some(ranges),
            },
            other => bail!("--layers applies to --layout pipeline, not {other}"),
        };
    }
    let setup = ClusterSetup {
        nodes: nodes.parse()?,
        layout,
        token_file: args.token_file.clone(),
        threads_per_node: args.threads.unwrap_or(1),
        home: home.to_path_buf(),
        context: args
            .ctx
            .min(shardlab_engine::model::config::ModelConfig::from_gguf(&gguf)?.train_context),
        pin: false,
        link: args.link.clone(),
        wire: args.wire,
    };
    let _ = threads;
    let mut cluster = cluster_run::start(&setup, &gguf)?;
    let opts = generate_options(args)?;
    let k = sequences(args)?;
    if k == 1 {
        let prompt = prompt_ids(args, &args.prompt[0], &tokenizer, template.as_ref(), path)?;
        let generation = generate_to_stdout(&mut cluster, &tokenizer, &prompt, &opts)?;
        cluster_run::print_stats(&mut cluster, &generation.stats);
        return Ok(());
    }
    let prompts = (0..k)
        .map(|i| {
            let text = &args.prompt[i % args.prompt.len()];
            prompt_ids(args, text, &tokenizer, template.as_ref(), path)
        })
        .collect::<Result<Vec<_>>>()?;
    let many = generate_many(&mut cluster, &tokenizer, &prompts, &opts, None)?;
    for (i, g) in many.generations.iter().enumerate() {
        println!("[{i}] {}", g.text);
    }
    let generated: usize = many
        .generations
        .iter()
        .map(|g| g.stats.generated_tokens)
        .sum();
    cluster_run::print_stats(&mut cluster, &many.generations[0].stats);
    eprintln!(
        "{k} sequences in flight | {generated} tokens in {:.2} s | all prompts prefilled after {:.0} ms | aggregate decode {:.1} tok/s",
        many.wall_seconds,
        many.prefill_wall_seconds * 1e3,
        many.decode_tokens_per_second()
    );
    Ok(())
}
