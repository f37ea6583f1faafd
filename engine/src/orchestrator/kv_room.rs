//! How many KV positions the runner's memory holds for serving: the plan
//! reserves one sequence's whole context on each node, and what is left of
//! the node's budget after the plan holds more positions at the node's own
//! bytes per position. The node with the least room decides. The server
//! admits a request only while the positions it may fill (prompt plus
//! `max_tokens`, up to the context) fit beside those of the sequences in
//! flight.

use serde::Serialize;

use crate::shard::plan::{plan, Plan};

use super::{Orchestrator, OrchestratorError};

/// KV positions the serving sequences may hold together, and who limits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvRoom {
    pub positions: usize,
    /// The node with the least room ("this process" in one process).
    pub node: String,
}

impl Orchestrator {
    /// The KV room of the layout in place, from a plan over the budgets the
    /// nodes report now. In one process the budget is the free memory,
    /// which already excludes the loaded weights, so this errs low there.
    pub fn kv_room(&self) -> Result<KvRoom, OrchestratorError> {
        let layout = self.layout().ok_or(OrchestratorError::NothingLoaded)?;
        let summary = self.require_model()?.summary()?;
        let budgets = self.budgets(&layout)?;
        let p = plan(summary, &budgets, &layout, self.kv_spec()?)?;
        room_of(&p).ok_or(OrchestratorError::NothingLoaded)
    }
}

/// The least room over `p`'s nodes; `None` when no node holds a KV cache.
pub(crate) fn room_of(p: &Plan) -> Option<KvRoom> {
    p.nodes
        .iter()
        .filter(|n| n.memory.kv_cache > 0)
        .map(|n| {
            let per_position = n.memory.kv_cache.div_ceil(p.context.max(1) as u64).max(1);
            let left = n.budget_bytes.saturating_sub(n.memory.total());
            let positions = p.context as u64 + left / per_position;
            KvRoom {
                positions: usize::try_from(positions).unwrap_or(usize::MAX),
                node: n.name.clone(),
            }
        })
        .min_by_key(|r| r.positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kv_type::KvType;
    use crate::shard::plan::fixtures::smollm2_summary;
    use crate::shard::plan::{KvSpec, LayoutRequest, NodeBudget};

    #[test]
    fn the_node_with_the_least_budget_left_sets_the_room() {
        let model = smollm2_summary();
        let spec = KvSpec::new(1024, KvType::F16);
        let roomy = |budget_bytes| NodeBudget::new(String::new(), budget_bytes);
        let mut nodes = vec![roomy(u64::MAX / 4), roomy(u64::MAX / 4)];
        nodes[0].name = "node0".into();
        nodes[1].name = "node1".into();
        let p = plan(&model, &nodes, &LayoutRequest::Tensor, spec).unwrap();
        // Budgets exactly what the plan predicts, node1 with room for 512
        // positions more.
        let per_position = p.nodes[1].memory.kv_cache.div_ceil(1024);
        nodes[0].budget_bytes = p.nodes[0].memory.total();
        nodes[1].budget_bytes = p.nodes[1].memory.total() + 512 * per_position;
        let p = plan(&model, &nodes, &LayoutRequest::Tensor, spec).unwrap();
        assert_eq!(
            room_of(&p),
            Some(KvRoom {
                positions: 1024,
                node: "node0".into()
            })
        );
        nodes[0].budget_bytes = u64::MAX / 4;
        let p = plan(&model, &nodes, &LayoutRequest::Tensor, spec).unwrap();
        assert_eq!(
            room_of(&p),
            Some(KvRoom {
                positions: 1024 + 512,
                node: "node1".into()
            })
        );
    }
}
