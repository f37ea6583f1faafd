//! `:stats` and the per-node table `run` prints: where the memory and the
//! time went, per node, since the load.

use serde::Serialize;

use crate::cluster::messages::ExpertMetrics;
use crate::model::generate::GenerationStats;
use crate::orchestrator::serving::ServeCounts;
use crate::orchestrator::KvRoom;

/// The 50th and 99th percentile of a set of samples, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
}

impl Percentiles {
    /// `None` when there are no samples.
    pub fn of(samples: &[f64]) -> Option<Self> {
        Some(Self {
            p50: crate::metrics::quantile(samples, 0.5)?,
            p99: crate::metrics::quantile(samples, 0.99)?,
        })
    }
}

/// One node's counters since the load.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStats {
    pub rss: u64,
    /// The most resident memory the process has held.
    pub peak_rss: u64,
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    pub budget: u64,
    pub budget_fixed: bool,
    pub steps: u64,
    pub compute_seconds: f64,
    pub wait_seconds: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub allreduce: Option<Percentiles>,
    pub hop: Option<Percentiles>,
    /// Mixture-of-experts models: the node's experts and the routing they got.
    pub experts: Option<ExpertMetrics>,
}

impl NodeStats {
    /// Compute as a share of the node's step time; `None` before any step.
    pub fn compute_share(&self) -> Option<f64> {
        let busy = self.compute_seconds + self.wait_seconds;
        (busy > 0.0).then(|| self.compute_seconds / busy)
    }

    /// Waiting on peers as a share of the node's step time.
    pub fn wait_share(&self) -> Option<f64> {
        let busy = self.compute_seconds + self.wait_seconds;
        (busy > 0.0).then(|| self.wait_seconds / busy)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StatsRow {
    /// "node1 (addr)" or "this process".
    pub label: String,
    /// `None` when the node could not be asked (it is lost).
    pub stats: Option<NodeStats>,
}

/// The node its peers waited on longest since the load.
#[derive(Debug, Clone, Serialize)]
pub struct Straggler {
    pub label: String,
    pub waited_on: f64,
    /// The median of what the peers waited on every other node.
    pub median_others: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    /// The layout in place ("single" for this process).
    pub layout: String,
    pub in_process: bool,
    pub rows: Vec<StatsRow>,
    /// Tokens run since the load (at least 1), for per-token traffic.
    pub tokens: u64,
    pub straggler: Option<Straggler>,
    pub last: Option<GenerationStats>,
    /// The server running on this model, where a front end runs one.
    pub serving: Option<ServingFigures>,
}

/// A server's requests, as `:stats` shows them beside the nodes.
#[derive(Debug, Clone, Serialize)]
pub struct ServingFigures {
    /// Where it listens, `http://IP:PORT`.
    pub url: String,
    /// Sequences generated at once.
    pub parallel: usize,
    pub counts: ServeCounts,
    /// KV positions the requests in flight may fill together, and who limits it.
    pub kv_room: Option<KvRoom>,
    /// KV positions the requests in flight have reserved.
    pub kv_reserved: usize,
    /// Why requests are failed now, while a failed step waits for `:shard`.
    pub broken: Option<String>,
}

impl StatsReport {
    /// The busiest expert owner's routed choices over the mean of all
    /// owners' (1.0 is even); `None` for dense models or before any token.
    pub fn expert_imbalance(&self) -> Option<f64> {
        let routed: Vec<f64> = self
            .rows
            .iter()
            .filter_map(|r| r.stats.as_ref()?.experts.as_ref())
            .filter(|e| !e.owned.is_empty())
            .map(|e| e.routed as f64)
            .collect();
        let mean = routed.iter().sum::<f64>() / routed.len().max(1) as f64;
        let max = routed.iter().copied().fold(0.0, f64::max);
        (mean > 0.0).then(|| max / mean)
    }
}
