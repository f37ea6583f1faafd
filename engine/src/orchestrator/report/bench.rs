//! `:bench` and `shardlab bench`: one workload under several layouts, with
//! the physical limits the rates are judged against, measured in the same run.

use serde::Serialize;

use crate::metrics::ExchangeSplit;
use crate::model::generate::GenerationStats;
use crate::shard::plan::speed::SpeedPrediction;

/// One layout's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchFigures {
    pub stats: GenerationStats,
    /// Aggregate rates with several sequences in flight.
    pub aggregate: Option<AggregateRates>,
    /// Waiting on peers as a share of the nodes' step time.
    pub comm_share: Option<f64>,
    /// The slowest node's all-reduce p50, seconds.
    pub allreduce_p50: Option<f64>,
    /// The all-reduce split into the exchange itself and the skew between
    /// peers (tensor groups of two or more nodes).
    pub exchange: Option<ExchangeSplit>,
    /// Per node: label and its counters, for the detailed text form.
    pub nodes: Vec<super::StatsRow>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct AggregateRates {
    pub sequences: usize,
    pub prefill_tokens_per_second: f64,
    pub prefill_seconds: f64,
    pub decode_tokens_per_second: f64,
    pub decode_tokens: usize,
    pub decode_seconds: f64,
}

impl BenchFigures {
    /// Decode tok/s: the aggregate with sequences in flight, else the one sequence's.
    pub fn decode_rate(&self) -> f64 {
        self.aggregate.map_or_else(
            || self.stats.decode_tokens_per_second(),
            |a| a.decode_tokens_per_second,
        )
    }

    pub fn prefill_rate(&self) -> f64 {
        self.aggregate.map_or_else(
            || self.stats.prefill_tokens_per_second(),
            |a| a.prefill_tokens_per_second,
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// "single (this process, 1 threads)", "tensor", ...
    pub layout: String,
    pub nodes: usize,
    /// The cost model's rates for the same plan and workload (prompt,
    /// generated tokens, sequences in flight), computed before measuring.
    pub predicted: Option<SpeedPrediction>,
    /// (measured - predicted) / predicted decode tok/s.
    pub decode_error: Option<f64>,
    /// (measured - predicted) / predicted prefill tok/s.
    pub prefill_error: Option<f64>,
    /// The failure message when this layout could not run.
    pub result: Result<BenchFigures, String>,
}

impl BenchRow {
    /// A row with the prediction's errors against what was measured.
    pub fn new(
        layout: String,
        nodes: usize,
        predicted: Option<SpeedPrediction>,
        result: Result<BenchFigures, String>,
    ) -> Self {
        let (decode_error, prefill_error) = match (&result, &predicted) {
            (Ok(f), Some(p)) => (
                relative_error(f.decode_rate(), p.decode_tok_s),
                relative_error(f.prefill_rate(), p.prefill_tok_s),
            ),
            _ => (None, None),
        };
        Self {
            layout,
            nodes,
            predicted,
            decode_error,
            prefill_error,
            result,
        }
    }
}

/// (measured - predicted) / predicted; `None` when either is not a
/// positive finite rate.
pub fn relative_error(measured: f64, predicted: f64) -> Option<f64> {
    (measured.is_finite() && predicted.is_finite() && predicted > 0.0)
        .then(|| (measured - predicted) / predicted)
}

/// What the figures are judged against, measured on this machine.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BenchLimits {
    pub weight_bytes: u64,
    /// Bytes/s that one node's cores read here; `None` when not probed.
    pub bandwidth: Option<f64>,
    /// p50 of a raw loopback TCP round trip of one all-reduce payload.
    pub raw_rtt: Option<f64>,
    /// That payload's size in bytes.
    pub payload: usize,
    /// Weight bytes one node reads between two all-reduces when the
    /// connected nodes form one tensor group (0: not connected).
    pub streamed_between_allreduces: u64,
    /// p50 of the same round trip with each end first reading that many
    /// bytes, as inside a decode step; `None` when not measured.
    pub raw_rtt_streamed: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    /// Sequences in flight on the nodes.
    pub parallel: usize,
    pub threads: usize,
    pub wire: String,
    pub link: Option<String>,
    pub limits: BenchLimits,
    /// The baseline first (when measured), then each layout.
    pub rows: Vec<BenchRow>,
    /// The layout in place before, loaded again afterwards.
    pub restored: Option<Restored>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub layout: String,
    /// Why it could not be loaded again.
    pub error: Option<String>,
}

impl BenchReport {
    /// Decode tok/s of the first row (the baseline), if it ran.
    pub fn baseline_decode(&self) -> Option<f64> {
        self.rows
            .first()?
            .result
            .as_ref()
            .ok()
            .map(BenchFigures::decode_rate)
    }

    /// Weight bytes x decode tok/s over the bandwidth of `nodes` nodes' cores.
    pub fn roofline(&self, figures: &BenchFigures, nodes: usize) -> Option<f64> {
        let bw = self.limits.bandwidth?;
        Some(self.limits.weight_bytes as f64 * figures.decode_rate() / (bw * nodes.max(1) as f64))
    }

    /// The all-reduce exchange's p50 over the raw round trip: the
    /// last-ready node's, without the skew between peers, where the nodes'
    /// samples pair up; else the slowest node's.
    pub fn allreduce_vs_rtt(&self, figures: &BenchFigures) -> Option<f64> {
        let exchange = figures
            .exchange
            .map(|x| x.exchange_p50)
            .or(figures.allreduce_p50);
        match (exchange, self.limits.raw_rtt) {
            (Some(a), Some(r)) if r > 0.0 => Some(a / r),
            _ => None,
        }
    }
}
