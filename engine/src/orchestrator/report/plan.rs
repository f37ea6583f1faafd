//! `:plan`: how the open model splits over the nodes, and whether it fits.

use serde::Serialize;

use crate::shard::plan::speed::SpeedPrediction;
use crate::shard::plan::Plan;

#[derive(Debug, Clone, Serialize)]
pub struct PlanRow {
    /// Index into `Plan::nodes`.
    pub node: usize,
    /// KV heads the node owns (derived from its query heads).
    pub kv_heads: std::ops::Range<usize>,
    /// The budget was given rather than measured.
    pub budget_fixed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub plan: Plan,
    pub rows: Vec<PlanRow>,
    /// Why `shard` would refuse this plan; `None` when every node fits.
    pub refusal: Option<String>,
    /// Predicted speed on the calibrated nodes and measured links.
    pub speed: Option<SpeedPrediction>,
    /// Why there is no prediction, when there is none.
    pub speed_missing: Option<String>,
}
