//! What `run`, `bench`, `serve`, `perplexity` and `plan` share: the
//! cluster flags, connecting the nodes they name, and putting the open
//! model on them (connect, resolve `--layout auto`, plan, shard) with
//! progress on stderr. The work itself is the orchestrator's.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use shardlab_engine::cluster::coordinator::LoadProgress;
use shardlab_engine::cluster::heartbeat::Liveness;
use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::net::{LinkProfile, LinkSecurity};
use shardlab_engine::orchestrator::{NodesSpec, Orchestrator, OrchestratorConfig};
use shardlab_engine::parallel::WireDtype;
use shardlab_engine::shard::plan::speed::Workload;
use shardlab_engine::shard::plan::LayoutRequest;
use shardlab_repl::output::{text, views, Output};

use super::layout_choice::LayoutChoice;
use super::shell::step_timeout_from_env;

#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Run across nodes: `local:N` starts N node processes here, give
    /// `ADDR,ADDR,...` of running `shardlab node`s, or `auto` to find them
    /// on the LAN (mDNS) for --discover-for seconds. Left out: one process.
    #[arg(long)]
    pub nodes: Option<String>,
    /// With --nodes auto, how long to browse the LAN for nodes, in seconds.
    #[arg(long = "discover-for", default_value = "3", value_parser = parse_seconds)]
    pub discover_for: Duration,
    /// tensor, expert (mixture-of-experts models), pipeline, hybrid:TxP,
    /// or auto: after connecting, the layout the cost model predicts
    /// fastest on these nodes for this command's workload, ranked by
    /// prefill rate when the prompt is at least 4x the generated tokens
    /// (bench: --prompt-tokens and --gen; perplexity: always), else by
    /// decode rate.
    #[arg(long, default_value = "tensor")]
    pub layout: String,
    /// Pipeline layer ranges by hand, e.g. 0..12,12..30.
    #[arg(long)]
    pub layers: Option<String>,
    /// The nodes' shared token (required with node addresses).
    #[arg(long = "token-file")]
    pub token_file: Option<PathBuf>,
    /// With --nodes, emulate a slower link on every connection of the
    /// cluster: a profile (tb5, 10gbe, 1gbe, wifi) or
    /// latency=200us,bandwidth=10gbit,jitter=20us. See docs/LINKS.md.
    #[arg(long)]
    pub link: Option<LinkProfile>,
    /// Precision of activations between nodes: f64 (exact), f32, f16, bf16, q8.
    #[arg(long, default_value = "f64")]
    pub wire: WireDtype,
    /// Precision of the KV cache: f16 (the default, as llama.cpp's), f32
    /// or q8_0. Applies to one process too.
    #[arg(long, default_value = "f16")]
    pub kv: KvType,
    /// With --nodes local:N, the memory budget of each node (e.g. 3G): a
    /// layout that does not fit is refused before anything loads.
    #[arg(long = "mem-limit", value_parser = parse_mem_limit)]
    pub mem_limit: Option<u64>,
    /// When a node dies mid-generation, fail naming it instead of
    /// re-planning on the survivors, replaying the caches and going on.
    #[arg(long = "no-recover")]
    pub no_recover: bool,
    /// Seconds a node, or a node's peer, may stay silent (stopped, or its
    /// link cut) before it is named, however long the step it is in; 0
    /// switches heartbeats off and leaves only the step deadline.
    #[arg(long, default_value = "1.5", value_parser = parse_seconds)]
    pub heartbeat: Duration,
    /// Send frames between the coordinator and nodes, and between nodes,
    /// in the clear after the token handshake, instead of sealed with
    /// AES-256-GCM: for measuring what the sealing costs. Anyone on
    /// the path can then read and rewrite them.
    #[arg(long = "insecure-plaintext")]
    pub insecure_plaintext: bool,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("expected seconds, e.g. 1.5, got '{text}'"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("expected seconds >= 0, got '{text}'"))
}

fn parse_mem_limit(text: &str) -> Result<u64, String> {
    shardlab_repl::size::parse_size(text)
}

impl ClusterArgs {
    /// Refuses the node-only flags when there are no nodes (one process).
    pub fn check_one_process(&self) -> Result<()> {
        if self.nodes.is_none() && self.mem_limit.is_some() {
            bail!("--mem-limit is a node's budget: add --nodes local:N");
        }
        Ok(())
    }

    /// `--layout`, with `--layers` applied to a pipeline; `auto` is
    /// resolved once the nodes are connected.
    pub fn layout(&self) -> Result<LayoutChoice> {
        LayoutChoice::parse(&self.layout, self.layers.as_deref())
    }

    /// `--nodes local:N` or `ADDR,ADDR,...`.
    fn spec(&self, nodes: &str, threads: usize, pin: bool) -> Result<NodesSpec> {
        if let Some(n) = nodes.strip_prefix("local:") {
            let n: usize = n
                .parse()
                .map_err(|_| anyhow!("--nodes local:N needs a number, got '{n}'"))?;
            if n == 0 {
                bail!("--nodes local:N needs at least 1 node");
            }
            return Ok(NodesSpec::Local {
                nodes: n,
                mem_limits: self.mem_limit.into_iter().collect(),
                threads: Some(threads),
                pin,
            });
        }
        if self.mem_limit.is_some() {
            bail!("--mem-limit applies to --nodes local:N; give remote nodes theirs with `shardlab node --mem-limit`");
        }
        let addrs: Vec<String> = nodes
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if addrs.is_empty() {
            bail!("--nodes takes local:N or a comma-separated list of ADDR:PORT");
        }
        Ok(NodesSpec::Remote {
            addrs,
            token_file: self.token_file.clone(),
        })
    }
}

/// An orchestrator configured from the environment, here at the edge.
pub fn orchestrator(client_name: &str, threads_per_node: usize) -> Result<Orchestrator> {
    let store = shardlab_engine::model::store::ModelStore::from_env()?;
    let node_exe = std::env::current_exe()?;
    Ok(Orchestrator::new(OrchestratorConfig {
        store,
        node_exe,
        threads_per_node: threads_per_node.max(1),
        step_timeout: step_timeout_from_env()?,
        client_name: client_name.into(),
    }))
}

/// Connects the nodes `args` names, resolves `--layout` (auto: the best
/// predicted for `workload`), prints the plan, and shards the open model
/// over them, printing each node's progress. Returns the layout loaded.
pub fn start(
    core: &mut Orchestrator,
    args: &ClusterArgs,
    nodes: &str,
    threads: usize,
    pin: bool,
    workload: Workload,
) -> Result<LayoutRequest> {
    let choice = args.layout()?;
    connect(core, args, nodes, threads, pin)?;
    let layout = choice.resolve(core, workload)?;
    // The plan printed below predicts for the command's own workload.
    core.workload = workload;
    let plan = core.plan(&layout)?;
    let model = core.require_model()?.name.clone();
    eprintln!(
        "loading {model} as {layout} (activations on the wire: {})",
        args.wire
    );
    eprint!(
        "{}",
        text::render(&Output::Table(views::plan(&plan, &[])), false)
    );
    if let Some(refusal) = plan.refusal {
        bail!("{refusal}");
    }
    let last_print = Mutex::new(Instant::now());
    core.shard(&layout, &|p| print_progress(p, &last_print), &mut |_| {})?;
    Ok(layout)
}

/// Connects the nodes `args` names (spawned here, reached at addresses, or
/// found on the LAN), with the link, wire, recovery and liveness settings
/// the flags give. The nodes calibrate as they connect; nothing loads.
pub fn connect(
    core: &mut Orchestrator,
    args: &ClusterArgs,
    nodes: &str,
    threads: usize,
    pin: bool,
) -> Result<()> {
    // `auto`: no spec; the nodes are whatever answers on the LAN.
    let spec = match nodes {
        "auto" => None,
        named => Some(args.spec(named, threads, pin)?),
    };
    if let Some(NodesSpec::Local { nodes, .. }) = &spec {
        eprintln!("starting {nodes} local node processes");
    }
    if let Some(link) = &args.link {
        // Before the connect, so weights cross the emulated link too.
        eprintln!("emulating link {} on every connection", link.describe());
    }
    core.emulate_links(args.link.clone())?;
    core.wire = args.wire;
    core.set_recover(!args.no_recover);
    core.set_liveness(Liveness::from_silence(args.heartbeat))?;
    core.set_link_security(if args.insecure_plaintext {
        LinkSecurity::Plaintext
    } else {
        LinkSecurity::Sealed
    });
    // One line on stderr per recovery, so stdout holds only the text.
    core.on_recovery(Some(Box::new(|r| eprintln!("{r}"))));
    match spec {
        Some(spec) => {
            core.connect(spec)?;
        }
        None => discover(core, args)?,
    }
    Ok(())
}

/// `--nodes auto`: browses, then connects the nodes that accept the token;
/// what was found, and what became of each, goes to stderr.
fn discover(core: &mut Orchestrator, args: &ClusterArgs) -> Result<()> {
    if args.mem_limit.is_some() {
        bail!("--mem-limit applies to --nodes local:N; give remote nodes theirs with `shardlab node --mem-limit`");
    }
    eprintln!(
        "looking for nodes on the LAN for {} s",
        args.discover_for.as_secs_f64()
    );
    let report = core.connect_auto(args.discover_for, args.token_file.as_deref())?;
    eprint!(
        "{}",
        text::render(&Output::Table(views::discovery(&report)), false)
    );
    Ok(())
}

fn print_progress(p: LoadProgress, last_print: &Mutex<Instant>) {
    match p {
        LoadProgress::Sending {
            node,
            sent,
            total,
            seconds,
        } => {
            let Ok(mut last) = last_print.lock() else {
                return;
            };
            if sent == total || last.elapsed() > Duration::from_millis(500) {
                *last = Instant::now();
                let rate = if seconds > 0.0 {
                    sent as f64 / seconds / 1e6
                } else {
                    0.0
                };
                if total == 0 {
                    eprintln!("  {node}: shard already cached, nothing to send");
                } else {
                    eprintln!(
                        "  {node}: {:.1}/{:.1} MiB  {rate:.0} MB/s",
                        sent as f64 / 1048576.0,
                        total as f64 / 1048576.0
                    );
                }
            }
        }
        LoadProgress::Loaded { node, report } => {
            eprintln!(
                "  {node}: loaded {:.1} MiB of weights in {:.2} s{}",
                report.weight_bytes as f64 / 1048576.0,
                report.seconds,
                if report.from_cache {
                    " (from its shard cache)"
                } else if report.from_local_file {
                    " (sliced from its local model file)"
                } else {
                    ""
                }
            );
            if let Some(miss) = &report.local_file_miss {
                eprintln!("  {node}: {miss}; its slices were streamed instead");
            }
        }
    }
}

/// The per-node table `:stats` shows, on stderr.
pub fn print_stats(core: &mut Orchestrator) -> Result<()> {
    let report = core.stats()?;
    eprint!(
        "{}",
        text::render(&Output::Table(views::stats(&report, &[])), false)
    );
    Ok(())
}
