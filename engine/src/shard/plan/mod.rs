//! Plans: pure functions from (model summary, nodes with memory budgets,
//! layout request) to the layout each node runs and the memory it will
//! need, computed before anything loads.
//!
//! `summary` is what the planner knows of the model, `request` what the user
//! asked for, `tensor` splits heads, FFN and vocabulary within a group,
//! `pipeline` splits layers across stages, `hybrid` puts the two together,
//! `memory` predicts each node's bytes, and `suggest` checks a plan against
//! the budgets and looks for one that fits. `apportion` holds the rounding
//! they share.

mod apportion;
pub mod error;
mod hybrid;
pub mod memory;
pub mod pipeline;
pub mod request;
pub mod speed;
pub mod suggest;
pub mod summary;
pub mod tensor;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod moe_tests;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::model::layout::LocalLayout;

pub use error::{mib, PlanError};
pub use memory::{predict, MemoryPrediction, RUNTIME_OVERHEAD_BYTES};
pub use request::{parse_layers, LayoutRequest};
pub use suggest::{check_fits, suggest};
pub use summary::{ModelSummary, TensorSummary};
pub use tensor::ExpertSplit;

use crate::model::kv_type::KvType;

/// The KV cache a plan reserves on every node: positions and precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KvSpec {
    pub context: usize,
    pub kv: KvType,
}

impl KvSpec {
    pub fn new(context: usize, kv: KvType) -> Self {
        Self { context, kv }
    }
}

/// A node as the planner sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeBudget {
    /// How messages name it, e.g. "node1 (127.0.0.1:7071)".
    pub name: String,
    /// Bytes it may use: its free memory, or `--mem-limit`.
    pub budget_bytes: u64,
    /// Its speed relative to the fastest node (1.0), from calibration
    /// ([`speed::split_weights`]): work is split in proportion to it.
    pub speed: f64,
}

impl NodeBudget {
    /// A node of full speed.
    pub fn new(name: impl Into<String>, budget_bytes: u64) -> Self {
        Self {
            name: name.into(),
            budget_bytes,
            speed: 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub request: LayoutRequest,
    /// Tokens of KV cache every node reserves for.
    pub context: usize,
    /// The precision the KV cache stores.
    pub kv: KvType,
    /// One per node, in the order the nodes were given.
    pub nodes: Vec<NodePlan>,
    /// Node indices of each pipeline stage, in order: tensor is one stage of
    /// all nodes, pipeline one node per stage.
    pub stages: Vec<Vec<usize>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodePlan {
    /// Index into the nodes the plan was made for.
    pub node: usize,
    pub name: String,
    pub layout: LocalLayout,
    pub stage: usize,
    /// Position within its tensor-parallel group (all-reduce order).
    pub rank: usize,
    pub group_size: usize,
    pub memory: MemoryPrediction,
    pub budget_bytes: u64,
}

/// The layout of every node for `request`, with its predicted memory.
/// Whether it fits the budgets is [`check_fits`]'s question.
pub fn plan(
    model: &ModelSummary,
    nodes: &[NodeBudget],
    request: &LayoutRequest,
    cache: KvSpec,
) -> Result<Plan, PlanError> {
    if cache.context == 0 {
        return Err(PlanError::ZeroContext);
    }
    model.config.validate().map_err(PlanError::Config)?;
    cache
        .kv
        .check_head_dim(model.config.head_dim)
        .map_err(PlanError::Config)?;
    let n = nodes.len();
    let no_nodes = || PlanError::NoNodes {
        layout: request.to_string(),
    };
    let experts = if *request == LayoutRequest::Expert {
        if model.config.moe.is_none() {
            return Err(PlanError::ExpertNeedsMoe {
                model: model.config.name.clone(),
            });
        }
        ExpertSplit::Whole
    } else {
        ExpertSplit::Columns
    };
    let (t, p, layers) = match request {
        LayoutRequest::Single => match n {
            0 => return Err(no_nodes()),
            1 => (1, 1, None),
            _ => return Err(PlanError::SingleNeedsOne { connected: n }),
        },
        LayoutRequest::Tensor | LayoutRequest::Expert if n == 0 => return Err(no_nodes()),
        LayoutRequest::Tensor | LayoutRequest::Expert => (n, 1, None),
        LayoutRequest::Pipeline { .. } if n == 0 => return Err(no_nodes()),
        LayoutRequest::Pipeline { layers } => (1, n, layers.as_deref()),
        &LayoutRequest::Hybrid { tensor, pipeline } => {
            if tensor == 0 || pipeline == 0 || tensor * pipeline != n {
                return Err(PlanError::HybridShape {
                    tensor,
                    pipeline,
                    needed: tensor * pipeline,
                    connected: n,
                });
            }
            (tensor, pipeline, None)
        }
    };
    let (nodes, stages) = hybrid::grid(model, nodes, t, p, layers, cache, experts)?;
    Ok(Plan {
        request: request.clone(),
        context: cache.context,
        kv: cache.kv,
        nodes,
        stages,
    })
}
