//! One workload (a prompt of N tokens, M greedy tokens) under several
//! layouts, with what the rates are judged against measured in the same
//! run: the memory bandwidth one node's cores read here (the roofline) and
//! a raw loopback TCP round trip of one all-reduce payload, hot and after
//! each end has read what a node reads between two all-reduces. `:bench` and
//! `shardlab bench` both come here. The layout in place before is put back.

use crate::metrics::bandwidth::{loopback_round_trips, BandwidthProbe};
use crate::metrics::quantile;
use crate::model::generate::{generate, GenerateOptions, GenerationStats};
use crate::model::loader;
use crate::model::sampling::SamplingParams;
use crate::shard::plan::speed::{predict_speed, SpeedInputs, SpeedPrediction, Workload};
use crate::shard::plan::{plan, LayoutRequest, NodeBudget};

use super::layout::THIS_PROCESS;
use super::report::{AggregateRates, BenchFigures, BenchLimits, BenchReport, BenchRow, Restored};
use super::stats::{exchange_split, rows_of};
use super::{Orchestrator, OrchestratorError, Runner};

/// Bytes the bandwidth probe reads per pass.
const PROBE_BYTES: usize = 256 << 20;
/// Round trips behind the raw RTT figure.
const RTT_SAMPLES: usize = 400;
/// Round trips behind the raw RTT after streaming (each end reads its
/// share of weights first, so fewer).
const STREAMED_RTT_SAMPLES: usize = 100;
/// The most either end of that round trip reads before it.
const MAX_STREAMED: u64 = 256 << 20;

#[derive(Debug, Clone)]
pub struct BenchRequest {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    /// Measure the whole model in this process with this many threads
    /// first, as the baseline the layouts are compared with.
    pub baseline_threads: Option<usize>,
    /// Layouts to measure across the connected nodes.
    pub layouts: Vec<LayoutRequest>,
    /// Sequences in flight at once on the nodes (decode is then the
    /// aggregate rate).
    pub parallel: usize,
    /// Threads whose memory bandwidth is the roofline; `None`: no probe.
    pub probe_threads: Option<usize>,
}

/// Where a benchmark is, for front ends that show progress.
#[derive(Debug, Clone)]
pub enum BenchEvent<'a> {
    /// Measuring the whole model in this process with this many threads.
    Baseline { threads: usize },
    /// Loading and measuring this layout.
    Layout(&'a LayoutRequest),
}

impl Orchestrator {
    pub fn bench(
        &mut self,
        request: &BenchRequest,
        on_event: &mut dyn FnMut(BenchEvent),
    ) -> Result<BenchReport, OrchestratorError> {
        let m = self.require_model()?;
        let ids = m.filler(request.prompt_tokens)?;
        let context = m.context(self.context);
        // The last token generated is never fed back, so a prompt and
        // its answer fit when together they fill the context exactly
        // (generation's own limit).
        if ids.len() + request.gen_tokens > context {
            return Err(OrchestratorError::BenchTooLong {
                prompt: ids.len(),
                generate: request.gen_tokens,
                context,
            });
        }
        let opts = GenerateOptions {
            max_tokens: request.gen_tokens,
            sampling: SamplingParams::greedy(),
            stop_strings: Vec::new(),
            stop_at_eos: false,
        };
        let limits = self.measure_limits(request.probe_threads);
        let workload = Workload {
            prompt_tokens: ids.len(),
            gen_tokens: request.gen_tokens,
            in_flight: request.parallel.max(1),
        };
        let mut rows = Vec::new();
        if let Some(threads) = request.baseline_threads {
            on_event(BenchEvent::Baseline { threads });
            let predicted = self.predict_in_process(threads, workload);
            let stats = self.bench_in_process(&ids, &opts, threads)?;
            rows.push(BenchRow::new(
                format!("single (this process, {threads} threads)"),
                1,
                predicted,
                Ok(BenchFigures {
                    stats,
                    aggregate: None,
                    comm_share: None,
                    allreduce_p50: None,
                    exchange: None,
                    nodes: Vec::new(),
                }),
            ));
        }
        let previous = match &self.runner {
            Runner::Cluster(l) => Some(l.clone()),
            _ => None,
        };
        for layout in &request.layouts {
            on_event(BenchEvent::Layout(layout));
            let nodes = self.nodes.as_ref().map_or(0, |n| n.cluster.budgets().len());
            let (predicted, result) = match self.shard(layout, &|_| {}, &mut |_| {}) {
                // The plan just loaded, predicted before anything is timed.
                Ok(outcome) => (
                    self.predict(&outcome.plan.plan, workload).ok(),
                    self.bench_layout(&ids, &opts, request.parallel),
                ),
                Err(e) => (None, Err(e)),
            };
            rows.push(BenchRow::new(
                layout.to_string(),
                nodes,
                predicted,
                result.map_err(|e| e.to_string()),
            ));
        }
        let mut restored = None;
        if !request.layouts.is_empty() {
            self.unload();
            if let Some(prev) = previous {
                let error = self.reshard(&prev).err().map(|e| e.to_string());
                restored = Some(Restored {
                    layout: prev.to_string(),
                    error,
                });
            }
        }
        Ok(BenchReport {
            model: self.require_model()?.name.clone(),
            prompt_tokens: ids.len(),
            gen_tokens: request.gen_tokens,
            parallel: workload.in_flight,
            threads: self.bench_threads(),
            wire: self.wire.to_string(),
            link: self.link.as_ref().map(|l| l.describe()),
            limits,
            rows,
            restored,
        })
    }

    /// Worker threads of one node (the first's), or this process's default.
    pub fn bench_threads(&self) -> usize {
        self.nodes
            .as_ref()
            .and_then(|n| n.cluster.nodes().first().map(|h| h.info.threads))
            .unwrap_or(self.config.threads_per_node)
            .max(1)
    }

    fn measure_limits(&self, probe_threads: Option<usize>) -> BenchLimits {
        let (weight_bytes, hidden, layers) = self.model.as_ref().map_or((0, 0, 0), |m| {
            (m.weight_bytes(), m.config.hidden, m.config.n_layers)
        });
        let bandwidth = probe_threads.map(|t| BandwidthProbe::new(PROBE_BYTES, t).measure(2));
        // The all-reduce payload at the exact wire: one f64 per hidden unit,
        // plus the frame header.
        let payload = hidden * 8 + 24;
        let rtt_p50 = |streamed: usize, samples: usize| {
            loopback_round_trips(payload, samples, streamed)
                .ok()
                .and_then(|t| quantile(&t, 0.5))
        };
        let raw_rtt = rtt_p50(0, RTT_SAMPLES);
        // Between two all-reduces (two a layer) a node of a tensor group
        // spanning the connected nodes reads this much of its weights.
        let nodes = self.nodes.as_ref().map_or(0, |n| n.cluster.budgets().len());
        let streamed = (nodes > 1 && layers > 0)
            .then(|| (weight_bytes / (nodes * 2 * layers) as u64).min(MAX_STREAMED) as usize);
        let raw_rtt_streamed = streamed.and_then(|s| rtt_p50(s, STREAMED_RTT_SAMPLES));
        BenchLimits {
            weight_bytes,
            bandwidth,
            raw_rtt,
            payload,
            streamed_between_allreduces: streamed.unwrap_or(0) as u64,
            raw_rtt_streamed,
        }
    }

    /// The whole model in this process, with its own worker pool, warmed
    /// up once so the first read of the file is not timed.
    fn bench_in_process(
        &self,
        ids: &[u32],
        opts: &GenerateOptions,
        threads: usize,
    ) -> Result<GenerationStats, OrchestratorError> {
        let m = self.require_model()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| {
                OrchestratorError::setup(format!("starting {threads} worker threads"), e)
            })?;
        let mut loaded = loader::load(&m.source, m.context(self.context), self.kv)?;
        let warm = GenerateOptions {
            max_tokens: 2,
            ..opts.clone()
        };
        let g = pool.install(|| {
            let t = &mut loaded.transformer;
            generate(
                t,
                &m.tokenizer,
                &mut Vec::new(),
                &ids[..8.min(ids.len())],
                &warm,
                None,
                &mut |_| {},
            )?;
            t.truncate(0);
            generate(
                t,
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

    /// The whole model in this process at `threads` threads (the baseline,
    /// whatever nodes are connected), predicted from this process's
    /// calibration at as many threads.
    fn predict_in_process(&self, threads: usize, workload: Workload) -> Option<SpeedPrediction> {
        let summary = self.require_model().ok()?.summary().ok()?;
        let here = NodeBudget {
            name: THIS_PROCESS.into(),
            budget_bytes: u64::MAX,
            speed: 1.0,
        };
        let p = plan(
            summary,
            &[here],
            &LayoutRequest::Single,
            self.kv_spec().ok()?,
        )
        .ok()?;
        // As `predict` does in this process, at `threads` rather than at
        // the current pool's size.
        let inputs = SpeedInputs {
            nodes: &[self.calibration_here(threads)],
            links: &[],
            wire: self.wire,
            workload,
        };
        predict_speed(summary, &p, &inputs).ok()
    }

    /// Measures the layout just loaded.
    fn bench_layout(
        &mut self,
        ids: &[u32],
        opts: &GenerateOptions,
        parallel: usize,
    ) -> Result<BenchFigures, OrchestratorError> {
        self.warm_up(ids, opts)?;
        let (stats, aggregate) = if parallel > 1 {
            let prompts = vec![ids.to_vec(); parallel];
            let many = self.generate_many(&prompts, opts, None)?;
            let stats = many
                .generations
                .first()
                .map(|g| g.stats.clone())
                .ok_or(OrchestratorError::NothingLoaded)?;
            let aggregate = AggregateRates {
                sequences: parallel,
                prefill_tokens_per_second: (parallel * ids.len()) as f64
                    / many.prefill_wall_seconds.max(1e-9),
                prefill_seconds: many.prefill_wall_seconds,
                decode_tokens_per_second: many.decode_tokens_per_second(),
                decode_tokens: many.steady_tokens,
                decode_seconds: many.wall_seconds - many.prefill_wall_seconds,
            };
            (stats, Some(aggregate))
        } else {
            (self.generate(ids, opts, None, &mut |_| {})?.stats, None)
        };
        let n = self.nodes.as_mut().ok_or(OrchestratorError::NoNodes)?;
        let metrics = n.cluster.metrics();
        let exchange = exchange_split(n, &metrics);
        let (nodes, _) = rows_of(n, metrics);
        let (mut compute, mut wait, mut p50) = (0.0, 0.0, None::<f64>);
        for s in nodes.iter().filter_map(|r| r.stats.as_ref()) {
            compute += s.compute_seconds;
            wait += s.wait_seconds;
            if let Some(a) = s.allreduce {
                p50 = Some(p50.map_or(a.p50, |p| p.max(a.p50)));
            }
        }
        Ok(BenchFigures {
            stats,
            aggregate,
            comm_share: (compute + wait > 0.0).then(|| wait / (compute + wait)),
            allreduce_p50: p50,
            exchange,
            nodes,
        })
    }
}
