//! `:bench`: one workload (a prompt of N tokens, M greedy tokens) under
//! several layouts, against the whole model in this process with one
//! node's thread count. The layout in place before is put back after.
//!
//! Beside the rates it reports what they are judged against, measured in
//! the same run: decode as a fraction of this machine's memory bandwidth
//! (the roofline), and for clusters the share of step time spent waiting
//! on peers and the all-reduce p50 against a raw loopback TCP round trip
//! of the same payload.

use shardlab_engine::cluster::coordinator::{LoadProgress, ModelToLoad};
use shardlab_engine::cluster::messages::LocalModel;
use shardlab_engine::metrics::bandwidth::{loopback_round_trips, quantile, BandwidthProbe};
use shardlab_engine::model::generate::{generate, GenerateOptions, GenerationStats};
use shardlab_engine::model::loader::{self, OpenedModel};
use shardlab_engine::model::sampling::SamplingParams;
use shardlab_engine::model::weights::GgufSource;
use shardlab_engine::shard::plan::{check_fits, plan, LayoutRequest};

use super::{Runner, Session, SessionError, Sink};
use crate::command::BenchArgs;
use crate::output::text::{duration, rate};
use crate::output::{Output, Rich, Table, Varies};

/// Text repeated to make a prompt of any length.
const FILLER: &str =
    "The quick brown fox jumps over the lazy dog while the cluster counts tokens. ";

impl Session {
    pub(super) fn bench(
        &mut self,
        args: &BenchArgs,
        sink: &mut dyn Sink,
    ) -> Result<Output, SessionError> {
        let m = self.model.as_ref().ok_or(SessionError::NoModel)?;
        let ids = filler_ids(m, args.prompt_tokens)?;
        let context = self.context(&m.config);
        if ids.len() + args.gen_tokens >= context {
            return Err(SessionError::state(format!(
                "{} prompt + {} generated tokens do not fit the context of {context}",
                ids.len(),
                args.gen_tokens
            )));
        }
        let opts = GenerateOptions {
            max_tokens: args.gen_tokens,
            sampling: SamplingParams::greedy(),
            stop_strings: Vec::new(),
            stop_at_eos: false,
        };
        let layouts: Vec<LayoutRequest> = match (&self.nodes, args.layouts.is_empty()) {
            (_, false) => args.layouts.clone(),
            (Some(n), true) if n.cluster.budgets().len() > 1 => {
                vec![
                    LayoutRequest::Tensor,
                    LayoutRequest::Pipeline { layers: None },
                ]
            }
            (Some(_), true) => vec![LayoutRequest::Tensor],
            (None, true) => Vec::new(),
        };
        let threads = self
            .nodes
            .as_ref()
            .and_then(|n| n.cluster.nodes().first().map(|h| h.info.threads))
            .unwrap_or(self.config.threads_per_node)
            .max(1);
        sink.note(&Rich::from(format!(
            "bench: {} prompt tokens, {} generated, greedy; baseline: this process with {threads} thread{}",
            ids.len(),
            args.gen_tokens,
            if threads == 1 { "" } else { "s" }
        )));
        let limits = Limits::measure(m, threads);
        let baseline = self.bench_in_process(&ids, &opts, threads)?;
        let mut results = vec![(
            format!("single (this process, {threads} threads)"),
            1,
            Ok(Figures {
                stats: baseline.clone(),
                comm_share: None,
                allreduce_p50: None,
            }),
        )];
        let previous = match &self.runner {
            Runner::Cluster(l) => Some(l.clone()),
            _ => None,
        };
        for layout in &layouts {
            sink.note(&Rich::from(format!("bench: {layout}")));
            let n = self.nodes.as_ref().map_or(0, |n| n.cluster.budgets().len());
            results.push((
                layout.to_string(),
                n,
                self.bench_on_cluster(layout, &ids, &opts),
            ));
        }
        let mut out = Output::Table(bench_table(&results, &baseline, &limits, &self.literals()));
        if let Some(prev) = previous {
            self.runner = Runner::Idle;
            out = out.then(match self.shard(&prev, &mut super::NullSink) {
                Ok(_) => Output::text(format!("restored {prev}")),
                Err(e) => Output::Error(self.mask(&format!("restoring {prev}: {e}"))),
            });
        } else if !layouts.is_empty() {
            if let Some(n) = self.nodes.as_mut() {
                n.cluster.unload();
            }
        }
        self.cached.clear();
        self.tokens_since_load = 0;
        Ok(out)
    }

    fn bench_in_process(
        &self,
        ids: &[u32],
        opts: &GenerateOptions,
        threads: usize,
    ) -> Result<GenerationStats, SessionError> {
        let m = self.model.as_ref().ok_or(SessionError::NoModel)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| SessionError::state(format!("starting {threads} worker threads: {e}")))?;
        let mut loaded = loader::load(&m.source, self.context(&m.config))?;
        let g = pool.install(|| {
            generate(
                &mut loaded.transformer,
                &m.tokenizer,
                &mut Vec::new(),
                ids,
                opts,
                None,
                &mut |_| {},
            )
        })?;
        Ok(g.stats)
    }

    fn bench_on_cluster(
        &mut self,
        layout: &LayoutRequest,
        ids: &[u32],
        opts: &GenerateOptions,
    ) -> Result<Figures, SessionError> {
        let context = self
            .model
            .as_ref()
            .map(|m| self.context(&m.config))
            .ok_or(SessionError::NoModel)?;
        let (Some(m), Some(n)) = (self.model.as_ref(), self.nodes.as_mut()) else {
            return Err(SessionError::NoNodes);
        };
        let (OpenedModel::Gguf(file), Some(summary)) = (&m.opened, &m.summary) else {
            return Err(SessionError::state("benchmarking nodes takes a GGUF model"));
        };
        let budgets = n.cluster.budgets();
        let p = plan(summary, &budgets, layout, context)?;
        check_fits(summary, &p, &budgets)?;
        let model = ModelToLoad {
            name: m.name.clone(),
            config: &summary.config,
            source: &GgufSource { file },
            file: Some(LocalModel::describe(&m.path, m.file_bytes)),
        };
        n.cluster.wire = self.settings.wire;
        n.cluster.load(&model, &p, &|_: LoadProgress| {})?;
        n.cluster.reset_metrics();
        let g = generate(
            &mut n.cluster,
            &m.tokenizer,
            &mut Vec::new(),
            ids,
            opts,
            None,
            &mut |_| {},
        )?;
        let (mut compute, mut wait, mut p50s) = (0.0, 0.0, Vec::new());
        for (_, m) in n.cluster.metrics() {
            let Ok(m) = m else { continue };
            compute += m.compute_seconds;
            wait += m.wait_seconds;
            p50s.extend(quantile(&m.allreduce_seconds, 0.5));
        }
        Ok(Figures {
            stats: g.stats,
            comm_share: (compute + wait > 0.0).then(|| wait / (compute + wait)),
            allreduce_p50: p50s.into_iter().reduce(f64::max),
        })
    }
}

/// One layout's result: its rates, and for clusters where the time went.
struct Figures {
    stats: GenerationStats,
    /// Waiting on peers as a share of the nodes' step time.
    comm_share: Option<f64>,
    /// The slowest node's all-reduce p50, seconds.
    allreduce_p50: Option<f64>,
}

/// The physical limits the figures are judged against, measured on this
/// machine at the start of the run.
struct Limits {
    weight_bytes: f64,
    /// Bytes/s that `threads` cores read here.
    bandwidth: f64,
    /// p50 of a raw loopback TCP round trip of one all-reduce payload.
    raw_rtt: Option<f64>,
}

impl Limits {
    fn measure(m: &super::model::OpenModel, threads: usize) -> Self {
        let weight_bytes = m
            .summary
            .as_ref()
            .map_or(m.file_bytes, |s| s.total_weight_bytes()) as f64;
        let bandwidth = BandwidthProbe::new(256 << 20, threads).measure(2);
        // The all-reduce payload: one f64 per hidden unit, plus the header.
        let payload = m.config.hidden * 8 + 24;
        let raw_rtt = loopback_round_trips(payload, 200)
            .ok()
            .and_then(|t| quantile(&t, 0.5));
        Self {
            weight_bytes,
            bandwidth,
            raw_rtt,
        }
    }
}

/// The first `n` tokens of the filler text repeated.
fn filler_ids(m: &super::model::OpenModel, n: usize) -> Result<Vec<u32>, SessionError> {
    let mut text = String::from(FILLER);
    loop {
        let ids = m
            .tokenizer
            .encode(&text, true)
            .map_err(|e| SessionError::state(e.to_string()))?;
        if ids.len() >= n {
            return Ok(ids[..n].to_vec());
        }
        text.push_str(FILLER);
    }
}

type BenchResult = (String, usize, Result<Figures, SessionError>);

fn bench_table(
    results: &[BenchResult],
    baseline: &GenerationStats,
    limits: &Limits,
    lits: &[(String, Varies)],
) -> Table {
    let mut t = Table::new(&[
        "layout",
        "nodes",
        "prefill",
        "decode",
        "TTFT",
        "decode vs 1 node",
        "roofline",
        "comm share",
        "all-reduce / raw RTT",
    ]);
    let base = baseline.decode_tokens_per_second();
    for (name, nodes, r) in results {
        match r {
            Ok(f) => {
                let s = &f.stats;
                // Each node reads its own share of the weights from its own cores.
                let roofline = limits.weight_bytes * s.decode_tokens_per_second()
                    / (limits.bandwidth * (*nodes).max(1) as f64);
                let vs_rtt = match (f.allreduce_p50, limits.raw_rtt) {
                    (Some(a), Some(r)) if r > 0.0 => format!("{:.2}x", a / r),
                    _ => "-".into(),
                };
                t.row(vec![
                    name.clone().into(),
                    nodes.max(&1).to_string().into(),
                    Rich::varies(Varies::Rate, rate(s.prefill_tokens_per_second())),
                    Rich::varies(Varies::Rate, rate(s.decode_tokens_per_second())),
                    Rich::varies(Varies::Time, duration(s.time_to_first_token)),
                    Rich::varies(
                        Varies::Float,
                        if base > 0.0 {
                            format!("{:.2}x", s.decode_tokens_per_second() / base)
                        } else {
                            "-".into()
                        },
                    ),
                    Rich::varies(Varies::Float, format!("{:.0}%", 100.0 * roofline)),
                    match f.comm_share {
                        Some(c) => Rich::varies(Varies::Float, format!("{:.0}%", 100.0 * c)),
                        None => "-".into(),
                    },
                    match f.allreduce_p50 {
                        Some(_) => Rich::varies(Varies::Float, vs_rtt),
                        None => "-".into(),
                    },
                ])
            }
            Err(e) => {
                t.row(vec![
                    name.clone().into(),
                    nodes.to_string().into(),
                    "failed".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                t.note(Rich::from(format!("{name}: ")).append(Rich::masking(&e.to_string(), lits)));
            }
        }
    }
    t.note(
        Rich::from(
            "roofline: weight bytes x decode tok/s / the memory bandwidth one node's cores read here (",
        )
        .append(Rich::varies(
            Varies::Rate,
            format!("{:.1} GB/s", limits.bandwidth / 1e9),
        ))
        .append(Rich::from(
            "); raw RTT: a loopback TCP round trip of one all-reduce payload, p50 ",
        ))
        .append(Rich::varies(
            Varies::Time,
            limits
                .raw_rtt
                .map_or("-".to_string(), |r| format!("{:.0} µs", r * 1e6)),
        )),
    );
    t
}
