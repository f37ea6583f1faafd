//! `:links`: round trips and bandwidth from the coordinator to each node,
//! and what the nodes measured on their own links while running.

use serde::Serialize;

/// What a link emulates, per direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkSetting {
    /// The profile this side's sends emulate (`None`: the real link).
    pub out: Option<String>,
    /// The far side's.
    pub back: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CoordinatorLink {
    pub node: String,
    pub addr: String,
    pub rtt_min: Option<f64>,
    pub rtt_median: Option<f64>,
    /// Bytes per second, coordinator to node.
    pub up: Option<f64>,
    /// Bytes per second, node to coordinator.
    pub down: Option<f64>,
    pub link: LinkSetting,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerLink {
    /// "node1 (addr)".
    pub label: String,
    pub peers: Vec<String>,
    pub allreduce_p50: Option<f64>,
    pub allreduce_p99: Option<f64>,
    pub hop_p50: Option<f64>,
    pub hop_p99: Option<f64>,
    pub link: LinkSetting,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinksReport {
    pub coordinator: Vec<CoordinatorLink>,
    /// Round trips measured per node.
    pub pings: usize,
    /// Bytes sent each way to measure bandwidth.
    pub probe_bytes: u64,
    /// The profile emulated on every link, if any (its description).
    pub emulated: Option<String>,
    /// Nodes that exchanged activations since the load.
    pub peers: Vec<PeerLink>,
    /// Whether the cluster's frames are sealed (every link alike).
    pub security: crate::net::LinkSecurity,
}
