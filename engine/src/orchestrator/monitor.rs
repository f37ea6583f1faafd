//! Live figures of the runner, readable while a generation holds the
//! orchestrator: every collected step's per-node metrics are folded in here
//! as it arrives, so a front end on another thread (the HTTP server's
//! `/metrics`, a notebook) can read throughput and the last step's
//! timeline without touching the connections the generation is using.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::cluster::messages::StepMetrics;

use super::report::{TraceNode, TraceReport};

/// Totals of one node's steps since the load.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveNode {
    pub name: String,
    pub label: String,
    pub steps: u64,
    pub compute_seconds: f64,
    pub wait_seconds: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The node process's resident memory after its latest step (0 when
    /// the node could not tell).
    pub resident_bytes: u64,
    /// The last step this node answered, for the timeline.
    pub last_step: Option<StepMetrics>,
}

/// A copy of the live figures at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveSnapshot {
    pub nodes: Vec<LiveNode>,
    /// Tokens run through the runner since the load (prompt and generated).
    pub tokens: u64,
    /// Generated tokens since the load.
    pub generated: u64,
    /// Whether a generation is running now.
    pub generating: bool,
}

#[derive(Clone, Default)]
pub struct Monitor {
    live: Arc<Mutex<LiveSnapshot>>,
}

impl Monitor {
    fn lock(&self) -> MutexGuard<'_, LiveSnapshot> {
        // A panic while holding the lock leaves plain counters behind;
        // they are still worth reading.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts counting afresh for `nodes` (name, label) after a load.
    pub(crate) fn reset(&self, nodes: usize) {
        let mut live = self.lock();
        *live = LiveSnapshot::default();
        live.nodes = vec![LiveNode::default(); nodes];
    }

    pub(crate) fn name_nodes(&self, names: impl Iterator<Item = (String, String)>) {
        let mut live = self.lock();
        for (node, (name, label)) in live.nodes.iter_mut().zip(names) {
            node.name = name;
            node.label = label;
        }
    }

    /// Folds in the steps every node answered for one collected step.
    pub(crate) fn record_step(&self, steps: &[Option<StepMetrics>]) {
        let mut live = self.lock();
        for (node, step) in live.nodes.iter_mut().zip(steps) {
            let Some(step) = step else { continue };
            node.steps += 1;
            node.compute_seconds += step.compute_seconds;
            node.wait_seconds += step.wait_seconds;
            node.bytes_sent += step.bytes_sent;
            node.bytes_received += step.bytes_received;
            node.resident_bytes = step.resident_bytes;
            node.last_step = Some(step.clone());
        }
    }

    pub(crate) fn generation_started(&self) {
        self.lock().generating = true;
    }

    pub(crate) fn generation_finished(&self, tokens: u64, generated: u64) {
        let mut live = self.lock();
        live.generating = false;
        live.tokens += tokens;
        live.generated += generated;
    }

    /// Counts a serving step's tokens: `run` through the model, of which
    /// `generated` were sampled tokens.
    pub(crate) fn count_tokens(&self, run: u64, generated: u64) {
        let mut live = self.lock();
        live.tokens += run;
        live.generated += generated;
    }

    pub fn snapshot(&self) -> LiveSnapshot {
        self.lock().clone()
    }

    /// The last step on every node that has run one, as a timeline.
    pub fn trace(&self) -> Option<TraceReport> {
        let live = self.lock();
        let nodes: Vec<TraceNode> = live
            .nodes
            .iter()
            .filter_map(|n| {
                Some(TraceNode {
                    name: n.name.clone(),
                    label: n.label.clone(),
                    step: n.last_step.clone()?,
                })
            })
            .collect();
        if nodes.is_empty() {
            return None;
        }
        let span = nodes
            .iter()
            .flat_map(|n| n.step.spans.iter().map(|s| s.start + s.seconds))
            .fold(0.0f64, f64::max);
        Some(TraceReport { nodes, span })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::messages::{Span, SpanKind};

    fn step(compute: f64, end: f64) -> StepMetrics {
        StepMetrics {
            resident_bytes: 1000,
            tokens: 1,
            compute_seconds: compute,
            wait_seconds: 0.5,
            bytes_sent: 10,
            bytes_received: 20,
            spans: vec![Span {
                kind: SpanKind::Compute,
                start: 0.0,
                seconds: end,
            }],
        }
    }

    #[test]
    fn steps_accumulate_per_node_and_the_trace_is_the_last_one() {
        let m = Monitor::default();
        m.reset(2);
        m.name_nodes(
            [("node0", "node0 (a)"), ("node1", "node1 (b)")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string())),
        );
        assert!(m.trace().is_none(), "no step yet");
        m.record_step(&[Some(step(1.0, 1.0)), None]);
        m.record_step(&[Some(step(2.0, 3.0)), Some(step(4.0, 2.0))]);
        let s = m.snapshot();
        assert_eq!(s.nodes[0].steps, 2);
        assert_eq!(s.nodes[1].steps, 1);
        assert_eq!(s.nodes[0].compute_seconds, 3.0);
        assert_eq!(s.nodes[0].bytes_sent, 20);
        let t = m.trace().expect("a step ran");
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(t.span, 3.0);
        assert_eq!(t.nodes[1].label, "node1 (b)");
    }

    #[test]
    fn resident_bytes_is_the_latest_reported_not_a_sum() {
        let m = Monitor::default();
        m.reset(2);
        let with_rss = |rss| StepMetrics {
            resident_bytes: rss,
            ..step(1.0, 1.0)
        };
        m.record_step(&[Some(with_rss(5_000)), Some(with_rss(7_000))]);
        m.record_step(&[Some(with_rss(3_000)), None]);
        let s = m.snapshot();
        assert_eq!(s.nodes[0].resident_bytes, 3_000, "the latest step wins");
        assert_eq!(
            s.nodes[1].resident_bytes, 7_000,
            "kept when a node skips a step"
        );
    }

    #[test]
    fn a_clone_reads_what_the_generation_writes_from_another_thread() {
        let m = Monitor::default();
        m.reset(1);
        let reader = m.clone();
        m.generation_started();
        let seen = std::thread::spawn(move || reader.snapshot().generating)
            .join()
            .expect("reader thread");
        assert!(seen);
        m.generation_finished(12, 8);
        let s = m.snapshot();
        assert!(!s.generating);
        assert_eq!((s.tokens, s.generated), (12, 8));
    }
}
