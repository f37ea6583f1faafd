//! `shardlab plan`: connects the nodes (they calibrate as they connect),
//! plans a layout and prints each node's share and predicted memory with
//! the predicted prefill and decode rates and time to the first token;
//! `--layout best` (or `auto`) ranks every layout instead. Nothing loads.

use anyhow::{bail, Context, Result};
use clap::Args;
use shardlab_engine::model::loader::DEFAULT_CONTEXT;
use shardlab_engine::shard::plan::speed::Workload;

use super::cluster::{self, ClusterArgs};
use super::layout_choice::{objective, LayoutChoice};
use super::plan_print;
use super::progress::print_pull_event;

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// A model alias (smollm2) or a .gguf file.
    #[arg(long, short = 'm', default_value = "smollm2")]
    pub model: String,
    /// Threads per node (the nodes calibrate with as many).
    #[arg(long, short = 't', default_value_t = 1)]
    pub threads: usize,
    /// Pin local node i to cores [i*threads, (i+1)*threads).
    #[arg(long)]
    pub pin: bool,
    /// Context length (KV cache positions) the memory is planned for.
    #[arg(long, default_value_t = DEFAULT_CONTEXT)]
    pub ctx: usize,
    /// Prompt length the speed is predicted for.
    #[arg(long = "prompt-tokens", default_value_t = 64)]
    pub prompt_tokens: usize,
    /// Tokens generated after the prompt.
    #[arg(long, default_value_t = 64)]
    pub gen: usize,
    /// Sequences in flight at once.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Print the PlanReport (with --layout best or auto: the RankReport,
    /// ranked by prefill when the prompt is at least 4x the generated
    /// tokens, else by decode) as one JSON line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(args: PlanArgs) -> Result<()> {
    if args.threads == 0 || args.prompt_tokens == 0 || args.gen == 0 || args.parallel == 0 {
        bail!("--threads, --prompt-tokens, --gen and --parallel must be at least 1");
    }
    // A bad --layout is said before any node starts.
    let choice = args.cluster.layout()?;
    args.cluster.check_one_process()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("starting the worker threads")?;
    pool.install(|| plan(&args, &choice))
}

fn plan(args: &PlanArgs, choice: &LayoutChoice) -> Result<()> {
    let workload = Workload {
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen,
        in_flight: args.parallel,
    };
    let mut core = cluster::orchestrator("plan", args.threads)?;
    core.context = Some(args.ctx);
    core.kv = args.cluster.kv;
    core.workload = workload;
    let model = core.open_model(&args.model, &mut print_pull_event)?;
    core.set_model(model);
    if let Some(nodes) = &args.cluster.nodes {
        cluster::connect(&mut core, &args.cluster, nodes, args.threads, args.pin)?;
    }
    match choice {
        LayoutChoice::Given(layout) => {
            let report = core.plan(layout)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                plan_print::plan(&report);
            }
        }
        LayoutChoice::Auto => {
            let ranking = core.rank_layouts(objective(workload), workload)?;
            if args.json {
                println!("{}", serde_json::to_string(&ranking)?);
            } else {
                plan_print::ranking(&ranking);
            }
        }
    }
    core.shutdown();
    Ok(())
}
