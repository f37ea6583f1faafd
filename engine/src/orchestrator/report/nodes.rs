//! `:nodes`: who is connected and what each has.

use serde::Serialize;

use crate::calibration::Calibration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NodeState {
    Up,
    /// Failed (a dead process, a broken connection, a missed deadline).
    Lost,
    /// Disconnected on purpose.
    Closed,
}

/// How a node came to be in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum NodeOrigin {
    /// Started here (`:connect local N`, `--nodes local:N`).
    Local,
    /// At an address someone typed.
    Address,
    /// Found on the LAN by mDNS, under this service instance name.
    Mdns { instance: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    /// "node0", "node1", ... in connection order.
    pub name: String,
    pub addr: String,
    /// How it was found.
    pub found: NodeOrigin,
    pub state: NodeState,
    pub cores: usize,
    pub threads: usize,
    pub mem_total: u64,
    pub mem_free: u64,
    pub budget: u64,
    /// The budget was given (`--mem-limit`) rather than measured.
    pub budget_fixed: bool,
    pub version: String,
    /// Round trip of the last ping; `None` when the node is not up.
    pub rtt: Option<f64>,
    /// What the node measured of itself at `:connect` (memory bandwidth,
    /// kernel rates); `None` before it has.
    pub calibration: Option<Calibration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodesReport {
    pub nodes: Vec<NodeRow>,
}
