//! `shardlab serve`: the open model, on one process or a cluster, behind an
//! OpenAI-compatible HTTP API. The HTTP side is the server crate's; the
//! generation runs here, on the main thread, in the orchestrator's serving
//! loop, until SIGINT or SIGTERM closes the queue.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use shardlab_engine::model::loader::DEFAULT_CONTEXT;
use shardlab_engine::orchestrator::serving::{ServeEnd, ServeQueue, MAX_PARALLEL};
use shardlab_engine::orchestrator::Orchestrator;
use shardlab_engine::shard::plan::speed::Workload;
use shardlab_engine::shard::plan::LayoutRequest;
use shardlab_server::{Served, ServerOptions, DEFAULT_MAX_BODY};

use super::cluster::{self, ClusterArgs};
use super::progress::print_pull_event;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A model alias (smollm2), a .gguf file or a Hugging Face directory.
    /// Requests name it by this, or by its file name.
    #[arg(long, short = 'm', default_value = "smollm2")]
    pub model: String,
    /// Address to listen on. Loopback unless you say otherwise.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A file holding the API key: requests must then send
    /// `Authorization: Bearer KEY`. Without it any request is served.
    #[arg(long = "api-key-file")]
    pub api_key_file: Option<PathBuf>,
    /// Sequences generated at once (each holds a KV cache); more requests
    /// wait in the queue.
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// Requests that may wait for a slot; past that they get a 429.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Largest request body in bytes; larger ones get a 413.
    #[arg(long = "max-body", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body: usize,
    /// Context length (KV cache positions) of each sequence.
    #[arg(long, default_value_t = DEFAULT_CONTEXT)]
    pub ctx: usize,
    /// Worker threads for the matmuls (default: all cores; per node with --nodes: 1).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(args: ServeArgs) -> Result<()> {
    if args.parallel == 0 || args.queue == 0 {
        bail!("--parallel and --queue must be at least 1");
    }
    if args.parallel > MAX_PARALLEL {
        bail!("--parallel may be at most {MAX_PARALLEL} (sequences one model keeps KV caches for)");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let api_key = args
        .api_key_file
        .as_deref()
        .map(shardlab_server::read_api_key)
        .transpose()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the worker threads")?;
    pool.install(|| serve_in_pool(args, api_key))
}

fn serve_in_pool(args: ServeArgs, api_key: Option<String>) -> Result<()> {
    args.cluster.check_one_process()?;
    let node_threads = args.threads.unwrap_or(1);
    let mut core = cluster::orchestrator("serve", node_threads)?;
    core.context = Some(args.ctx);
    core.kv = args.cluster.kv;
    let model = core.open_model(&args.model, &mut print_pull_event)?;
    let file_name = model
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    core.set_model(model);
    // `--layout auto` ranks for a short chat turn, --parallel in flight.
    let workload = Workload {
        in_flight: args.parallel,
        ..Workload::default()
    };
    let layout = match &args.cluster.nodes {
        Some(nodes) => Some(cluster::start(
            &mut core,
            &args.cluster,
            nodes,
            node_threads,
            false,
            workload,
        )?),
        None => {
            core.ensure_runner(&mut |_| {})?;
            None
        }
    };
    let queue = Arc::new(ServeQueue::new(args.queue));
    let served = Served {
        id: args.model.clone(),
        aliases: file_name.into_iter().collect(),
        context: core.planned_context()?,
    };
    let server = shardlab_server::start(
        ServerOptions {
            listen: args.listen,
            api_key,
            served,
            max_body: args.max_body,
        },
        queue.clone(),
        core.monitor(),
    )
    .with_context(|| format!("listening on {}", args.listen))?;
    shardlab_server::close_on_signal(queue.clone())?;
    if let Ok(room) = core.kv_room() {
        eprintln!(
            "KV memory holds {} positions for all requests together ({} limits it); requests wait until theirs fit",
            room.positions, room.node
        );
    }
    eprintln!(
        "serving {} on http://{} (OpenAI API under /v1; {} sequences at once, {} may wait)",
        args.model,
        server.addr(),
        args.parallel,
        args.queue
    );
    while let ServeEnd::StepFailed(message) = core.serve(&queue, args.parallel)? {
        eprintln!("a step failed: {message}");
        if let Some(layout) = &layout {
            replan(&mut core, layout);
        }
    }
    eprintln!("stopping: the queue is closed and every request in flight has finished");
    server.stop();
    core.shutdown();
    Ok(())
}

/// After a failed step on a cluster: the same layout again on the nodes
/// still alive, when they can hold the model. Requests that arrive
/// meanwhile wait in the queue. When the survivors cannot hold it, the
/// server goes on answering 503 with the reason.
fn replan(core: &mut Orchestrator, layout: &LayoutRequest) {
    if !core.is_sharded() {
        return;
    }
    let started = std::time::Instant::now();
    match core.shard(layout, &|_| {}, &mut |_| {}) {
        Ok(_) => eprintln!(
            "re-planned {layout} on {} surviving nodes ({}) in {:.2} s; serving again",
            core.node_names().len(),
            core.node_names().join(", "),
            started.elapsed().as_secs_f64()
        ),
        Err(e) => eprintln!("could not re-plan on the survivors: {e}; requests get a 503"),
    }
}
