//! `shardlab run --nodes ...`: the same generation, across a cluster.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use shardlab_engine::cluster::coordinator::{Cluster, LoadProgress, LocalNodeOptions, ModelToLoad};
use shardlab_engine::cluster::messages::{LocalModel, NodeMetrics};
use shardlab_engine::model::generate::GenerationStats;
use shardlab_engine::model::gguf::GgufFile;
use shardlab_engine::model::weights::GgufSource;
use shardlab_engine::net::{LinkProfile, Token};
use shardlab_engine::parallel::WireDtype;
use shardlab_engine::shard::plan::{check_fits, plan, LayoutRequest, ModelSummary};

/// `--nodes local:N` or `ADDR,ADDR,...`.
pub enum NodesArg {
    Local(usize),
    Remote(Vec<String>),
}

impl std::str::FromStr for NodesArg {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if let Some(n) = s.strip_prefix("local:") {
            let n: usize = n
                .parse()
                .map_err(|_| anyhow!("--nodes local:N needs a number, got '{n}'"))?;
            if n == 0 {
                bail!("--nodes local:N needs at least 1 node");
            }
            return Ok(Self::Local(n));
        }
        let addrs: Vec<String> = s
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if addrs.is_empty() {
            bail!("--nodes takes local:N or a comma-separated list of ADDR:PORT");
        }
        Ok(Self::Remote(addrs))
    }
}

pub struct ClusterSetup {
    pub nodes: NodesArg,
    pub layout: LayoutRequest,
    pub token_file: Option<PathBuf>,
    pub threads_per_node: usize,
    pub home: PathBuf,
    pub context: usize,
    /// Pin each local node to its own cores (taskset).
    pub pin: bool,
    /// Emulate this link on every connection (`--link`).
    pub link: Option<LinkProfile>,
    /// Precision of activations between nodes.
    pub wire: WireDtype,
}

/// Connects, plans, checks memory and loads the model; returns the cluster.
pub fn start(setup: &ClusterSetup, gguf: &GgufFile) -> Result<Cluster> {
    let mut cluster = match &setup.nodes {
        NodesArg::Local(n) => {
            let exe = std::env::current_exe().context("finding the shardlab binary")?;
            let opts = LocalNodeOptions {
                exe,
                home: setup.home.clone(),
                threads_per_node: setup.threads_per_node,
                mem_limits: Vec::new(),
                pin_cores: setup.pin,
                extra_args: Vec::new(),
            };
            eprintln!("starting {n} local node processes");
            Cluster::spawn_local(*n, &opts, "run")?
        }
        NodesArg::Remote(addrs) => {
            let path = setup
                .token_file
                .as_ref()
                .ok_or_else(|| anyhow!("--token-file is required with node addresses (the nodes print where theirs is)"))?;
            Cluster::connect(addrs, Token::from_file(path)?, "run")?
        }
    };
    cluster.step_deadline = Duration::from_secs(120);
    if let Some(link) = &setup.link {
        // Before the load, so weights cross the emulated link too.
        eprintln!("emulating link {} on every connection", link.describe());
        cluster.emulate_links(Some(link.clone()))?;
    }
    cluster.wire = setup.wire;
    let summary = ModelSummary::from_gguf(gguf)?;
    let budgets = cluster.budgets();
    let p = plan(&summary, &budgets, &setup.layout, setup.context)?;
    check_fits(&summary, &p, &budgets)?;
    let file = std::fs::metadata(&gguf.path)
        .ok()
        .map(|m| LocalModel::describe(&gguf.path, m.len()));
    let model = ModelToLoad {
        name: gguf.path.display().to_string(),
        config: &summary.config,
        source: &GgufSource { file: gguf },
        file,
    };
    let last_print = Mutex::new(std::time::Instant::now());
    let progress = |p: LoadProgress| match p {
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
                *last = std::time::Instant::now();
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
        LoadProgress::Loaded { node, report } => eprintln!(
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
        ),
    };
    eprintln!(
        "loading {} as {} (activations on the wire: {})",
        gguf.path.display(),
        setup.layout,
        setup.wire
    );
    for np in &p.nodes {
        eprintln!(
            "  {}: layers {:?}, heads {:?}, ffn {:?}, predicted {:.1} MiB of {:.1} MiB budget",
            np.name,
            np.layout.layers,
            np.layout.q_heads,
            np.layout.ffn,
            np.memory.total() as f64 / 1048576.0,
            np.budget_bytes as f64 / 1048576.0
        );
    }
    cluster.load(&model, &p, &progress)?;
    Ok(cluster)
}

pub fn print_stats(cluster: &mut Cluster, stats: &GenerationStats) {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "node",
        "layers",
        "heads",
        "ffn cols",
        "RSS MiB",
        "weights MiB",
        "KV MiB",
        "budget MiB",
        "compute s",
        "wait s",
        "sent MiB",
        "recv MiB",
        "all-reduce p50/p99 µs",
    ]);
    let plan_nodes = cluster
        .loaded()
        .map(|l| l.plan.nodes.clone())
        .unwrap_or_default();
    for (i, (label, metrics)) in cluster.metrics().into_iter().enumerate() {
        let np = plan_nodes.get(i);
        let m = metrics.unwrap_or_else(|_| NodeMetrics::default());
        let mib = |b: u64| format!("{:.1}", b as f64 / 1048576.0);
        let sent: u64 = m.traffic.iter().map(|t| t.bytes_sent).sum();
        let recv: u64 = m.traffic.iter().map(|t| t.bytes_received).sum();
        let (p50, p99) = percentiles(&m.allreduce_seconds);
        table.add_row(vec![
            Cell::new(label),
            Cell::new(np.map_or("-".into(), |n| format!("{:?}", n.layout.layers))),
            Cell::new(np.map_or("-".into(), |n| format!("{:?}", n.layout.q_heads))),
            Cell::new(np.map_or("-".into(), |n| n.layout.ffn.len().to_string()))
                .set_alignment(CellAlignment::Right),
            Cell::new(mib(m.rss)).set_alignment(CellAlignment::Right),
            Cell::new(mib(m.weight_bytes)).set_alignment(CellAlignment::Right),
            Cell::new(mib(m.kv_bytes)).set_alignment(CellAlignment::Right),
            Cell::new(mib(m.budget)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.3}", m.compute_seconds)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.3}", m.wait_seconds)).set_alignment(CellAlignment::Right),
            Cell::new(mib(sent)).set_alignment(CellAlignment::Right),
            Cell::new(mib(recv)).set_alignment(CellAlignment::Right),
            Cell::new(match (p50, p99) {
                (Some(a), Some(b)) => format!("{:.0} / {:.0}", a * 1e6, b * 1e6),
                _ => "-".into(),
            })
            .set_alignment(CellAlignment::Right),
        ]);
    }
    eprintln!("{table}");
    eprintln!(
        "prompt tokens {} | generated tokens {} | prefill {:.1} tok/s | decode {:.1} tok/s | time to first token {:.0} ms",
        stats.prompt_tokens,
        stats.generated_tokens,
        stats.prefill_tokens_per_second(),
        stats.decode_tokens_per_second(),
        stats.time_to_first_token * 1e3
    );
}

fn percentiles(samples: &[f64]) -> (Option<f64>, Option<f64>) {
    if samples.is_empty() {
        return (None, None);
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    (Some(at(0.5)), Some(at(0.99)))
}
