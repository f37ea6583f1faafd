//! `:plan`: how the open model splits over the nodes, and whether it fits.

use serde::Serialize;

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
}
