//! Per-node figures since the load: memory, compute against waiting,
//! traffic per token, all-reduce and hop latencies, and the straggler.

use crate::cluster::coordinator::ClusterError;
use crate::cluster::messages::NodeMetrics;
use crate::metrics::memory::{current_rss_bytes, peak_rss_bytes};
use crate::metrics::{split_exchanges, ExchangeSplit};
use crate::model::layout::LocalLayout;
use crate::shard::plan::memory::kv_cache_bytes;
use crate::shard::plan::KvSpec;

use super::layout::THIS_PROCESS;
use super::nodes::NodeSet;
use super::report::{NodeStats, Percentiles, StatsReport, StatsRow, Straggler};
use super::{Orchestrator, OrchestratorError, Runner};

impl Orchestrator {
    /// Asks every node for its counters (so not while a generation runs:
    /// [`Monitor`](super::Monitor) serves that).
    pub fn stats(&mut self) -> Result<StatsReport, OrchestratorError> {
        let tokens = self.tokens_since_load.max(1);
        let last = self.last.clone();
        match (&self.runner, self.nodes.as_mut(), self.model.as_ref()) {
            (Runner::Cluster(layout), Some(n), _) => {
                let layout = layout.to_string();
                let (rows, straggler) = node_rows(n);
                Ok(StatsReport {
                    serving: None,
                    layout,
                    in_process: false,
                    rows,
                    tokens,
                    straggler,
                    last,
                })
            }
            (Runner::InProcess(tr), _, Some(m)) => {
                let kv = kv_cache_bytes(
                    &m.config,
                    &LocalLayout::whole(&m.config),
                    KvSpec::new(tr.cache().context(), tr.cache().kind()),
                );
                let stats = NodeStats {
                    rss: current_rss_bytes().unwrap_or(0),
                    peak_rss: peak_rss_bytes().unwrap_or(0),
                    weight_bytes: m.weight_bytes(),
                    kv_bytes: kv,
                    budget: 0,
                    budget_fixed: false,
                    steps: 0,
                    compute_seconds: 1.0,
                    wait_seconds: 0.0,
                    bytes_sent: 0,
                    bytes_received: 0,
                    allreduce: None,
                    hop: None,
                    experts: tr.expert_metrics(),
                };
                Ok(StatsReport {
                    serving: None,
                    layout: "single".into(),
                    in_process: true,
                    rows: vec![StatsRow {
                        label: THIS_PROCESS.into(),
                        stats: Some(stats),
                    }],
                    tokens,
                    straggler: None,
                    last,
                })
            }
            _ => Err(OrchestratorError::NothingToMeasure),
        }
    }
}

/// A node's label and its counters, or why it could not be asked.
type NodeAnswer = (String, Result<NodeMetrics, ClusterError>);

/// One row per node, and the node its peers waited on longest.
pub(super) fn node_rows(n: &mut NodeSet) -> (Vec<StatsRow>, Option<Straggler>) {
    let metrics = n.cluster.metrics();
    rows_of(n, metrics)
}

/// [`node_rows`] from metrics already asked for.
pub(super) fn rows_of(n: &NodeSet, metrics: Vec<NodeAnswer>) -> (Vec<StatsRow>, Option<Straggler>) {
    let fixed: Vec<bool> = n
        .cluster
        .nodes()
        .iter()
        .map(|h| n.budget_is_fixed(&h.name))
        .collect();
    // Seconds the nodes spent waiting on each peer, by node name.
    let mut blame: Vec<(String, f64)> = Vec::new();
    let mut labels = Vec::new();
    let mut rows = Vec::new();
    for (i, (label, metrics)) in metrics.into_iter().enumerate() {
        labels.push(label.clone());
        if let Ok(m) = &metrics {
            for t in &m.traffic {
                add_blame(&mut blame, &t.peer, t.waited_seconds);
            }
        }
        rows.push(StatsRow {
            label,
            stats: metrics
                .ok()
                .map(|m| node_stats(&m, fixed.get(i).copied().unwrap_or(false))),
        });
    }
    let straggler = straggler(&labels, &blame);
    (rows, straggler)
}

/// The all-reduce exchange told apart from the skew between peers, over
/// every tensor group of the loaded plan (see [`split_exchanges`]).
pub(super) fn exchange_split(n: &NodeSet, metrics: &[NodeAnswer]) -> Option<ExchangeSplit> {
    let plan = &n.cluster.loaded()?.plan;
    let samples_of = |plan_index: usize| {
        let name = &plan.nodes.get(plan_index)?.name;
        metrics.iter().find_map(|(label, m)| match m {
            Ok(m) if label == name => Some(m.allreduce_seconds.as_slice()),
            _ => None,
        })
    };
    let groups: Vec<Vec<&[f64]>> = plan
        .stages
        .iter()
        .map(|stage| stage.iter().filter_map(|&i| samples_of(i)).collect())
        .collect();
    split_exchanges(&groups)
}

pub(super) fn node_stats(m: &NodeMetrics, budget_fixed: bool) -> NodeStats {
    NodeStats {
        rss: m.rss,
        peak_rss: m.peak_rss,
        weight_bytes: m.weight_bytes,
        kv_bytes: m.kv_bytes,
        budget: m.budget,
        budget_fixed,
        steps: m.steps,
        compute_seconds: m.compute_seconds,
        wait_seconds: m.wait_seconds,
        bytes_sent: m.traffic.iter().map(|t| t.bytes_sent).sum(),
        bytes_received: m.traffic.iter().map(|t| t.bytes_received).sum(),
        allreduce: Percentiles::of(&m.allreduce_seconds),
        hop: Percentiles::of(&m.hop_seconds),
        experts: m.experts.clone(),
    }
}

/// Adds `seconds` waited on `peer` ("node1" or "node1 (addr)").
fn add_blame(blame: &mut Vec<(String, f64)>, peer: &str, seconds: f64) {
    let name = peer.split_whitespace().next().unwrap_or(peer);
    match blame.iter_mut().find(|(n, _)| n == name) {
        Some((_, s)) => *s += seconds,
        None => blame.push((name.to_string(), seconds)),
    }
}

/// The node its peers waited on longest since the load: a slow core, an
/// overloaded machine or a slow link all show up as the others blocked on
/// its activations. `None` with no node-to-node traffic.
fn straggler(labels: &[String], blame: &[(String, f64)]) -> Option<Straggler> {
    let (name, most) = blame
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, s)| (n.clone(), *s))?;
    let label = labels
        .iter()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .cloned()
        .unwrap_or(name.clone());
    let mut others: Vec<f64> = blame
        .iter()
        .filter(|(n, _)| *n != name)
        .map(|(_, s)| *s)
        .collect();
    others.sort_by(|a, b| a.total_cmp(b));
    let median = others.get(others.len() / 2).copied().unwrap_or(0.0);
    Some(Straggler {
        label,
        waited_on: most,
        median_others: median,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_straggler_is_the_node_waited_on_longest() {
        let mut blame = Vec::new();
        add_blame(&mut blame, "node1 (127.0.0.1:1)", 0.5);
        add_blame(&mut blame, "node0", 0.1);
        add_blame(&mut blame, "node1", 0.25);
        add_blame(&mut blame, "node2", 0.2);
        let labels = vec![
            "node0 (a)".to_string(),
            "node1 (b)".to_string(),
            "node2 (c)".to_string(),
        ];
        let s = straggler(&labels, &blame).expect("traffic");
        assert_eq!(s.label, "node1 (b)");
        assert_eq!(s.waited_on, 0.75);
        assert_eq!(s.median_others, 0.2);
        assert!(straggler(&labels, &[]).is_none());
    }

    #[test]
    fn node_stats_sum_traffic_and_take_percentiles() {
        let m = NodeMetrics {
            traffic: vec![
                crate::cluster::messages::PeerTraffic {
                    peer: "node1".into(),
                    bytes_sent: 10,
                    bytes_received: 3,
                    waited_seconds: 0.0,
                },
                crate::cluster::messages::PeerTraffic {
                    peer: "node2".into(),
                    bytes_sent: 5,
                    bytes_received: 4,
                    waited_seconds: 0.0,
                },
            ],
            allreduce_seconds: vec![3.0, 1.0, 2.0],
            compute_seconds: 3.0,
            wait_seconds: 1.0,
            ..NodeMetrics::default()
        };
        let s = node_stats(&m, true);
        assert_eq!((s.bytes_sent, s.bytes_received), (15, 7));
        assert_eq!(s.allreduce.map(|p| p.p50), Some(2.0));
        assert!(s.hop.is_none());
        assert_eq!(s.compute_share(), Some(0.75));
        assert_eq!(s.wait_share(), Some(0.25));
    }
}
