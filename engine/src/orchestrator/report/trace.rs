//! `:trace`: the last step on every node, as a timeline.

use serde::Serialize;

use crate::cluster::messages::StepMetrics;

#[derive(Debug, Clone, Serialize)]
pub struct TraceNode {
    pub name: String,
    /// "node1 (addr)".
    pub label: String,
    pub step: StepMetrics,
}

#[derive(Debug, Clone, Serialize)]
pub struct TraceReport {
    pub nodes: Vec<TraceNode>,
    /// The step's length end to end, seconds (the latest span end).
    pub span: f64,
}
