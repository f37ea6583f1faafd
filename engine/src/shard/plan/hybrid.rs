//! The one builder behind every multi-node plan: `p` pipeline stages of `t`
//! tensor-parallel nodes each. Tensor parallelism is `t = N, p = 1`,
//! pipeline `t = 1, p = N`. Nodes fill stages in order: stage `s` holds
//! nodes `s*t .. (s+1)*t`, rank = position within the stage.

use std::ops::Range;

use super::error::PlanError;
use super::memory::{predict, weight_bytes, weight_elements};
use super::pipeline::{check_layers, weighted_layers, StageCost};
use super::summary::ModelSummary;
use super::tensor::{weighted_tensor_group, ExpertSplit};
use super::{KvSpec, NodeBudget, NodePlan};
use crate::model::layout::LocalLayout;

/// Node plans and the node indices of each stage.
pub fn grid(
    model: &ModelSummary,
    nodes: &[NodeBudget],
    t: usize,
    p: usize,
    layers: Option<&[Range<usize>]>,
    cache: KvSpec,
    experts: ExpertSplit,
) -> Result<(Vec<NodePlan>, Vec<Vec<usize>>), PlanError> {
    let n_layers = model.config.n_layers;
    let stage_nodes = |s: usize| &nodes[s * t..(s + 1) * t];
    let stage_speeds = |s: usize| -> Vec<f64> { stage_nodes(s).iter().map(|n| n.speed).collect() };
    let layer_ranges = match layers {
        Some(given) => {
            check_layers(given, n_layers, p)?;
            given.to_vec()
        }
        None if p == 1 => std::iter::once(0..n_layers).collect(),
        None => {
            if n_layers < p {
                return Err(PlanError::ZeroLayers {
                    node: stage_nodes(p - 1)[0].name.clone(),
                    stages: p,
                    layers: n_layers,
                });
            }
            let mut costs = Vec::with_capacity(p);
            let mut work = Vec::with_capacity(p);
            for s in 0..p {
                let budget = stage_nodes(s)
                    .iter()
                    .map(|n| n.budget_bytes)
                    .min()
                    .unwrap_or(0);
                let speeds = stage_speeds(s);
                costs.push(stage_cost(model, &speeds, s, p, cache, budget)?);
                work.push(stage_work(model, &speeds, s, p)?);
            }
            // Stages run one after another per token, so the split that
            // evens out each stage's time per token (work over speed) is
            // the fast one; it is taken when it fits every node, else the
            // split that evens out memory.
            let by_work = weighted_layers(&work, n_layers);
            if fits(model, t, &by_work, nodes, cache)? {
                by_work
            } else {
                weighted_layers(&costs, n_layers)
            }
        }
    };
    let mut plans = Vec::with_capacity(t * p);
    let mut stages = Vec::with_capacity(p);
    for (s, range) in layer_ranges.into_iter().enumerate() {
        let layouts =
            weighted_tensor_group(model, &stage_speeds(s), range, s == 0, s + 1 == p, experts)?;
        let mut members = Vec::with_capacity(t);
        for (rank, (layout, node)) in layouts.into_iter().zip(stage_nodes(s)).enumerate() {
            let index = s * t + rank;
            members.push(index);
            plans.push(NodePlan {
                node: index,
                name: node.name.clone(),
                memory: predict(model, &layout, cache)?,
                layout,
                stage: s,
                rank,
                group_size: t,
                budget_bytes: node.budget_bytes,
            });
        }
        stages.push(members);
    }
    Ok((plans, stages))
}

/// Whether every node of every stage fits its budget under `ranges`.
fn fits(
    model: &ModelSummary,
    t: usize,
    ranges: &[Range<usize>],
    nodes: &[NodeBudget],
    cache: KvSpec,
) -> Result<bool, PlanError> {
    let p = ranges.len();
    for (s, range) in ranges.iter().enumerate() {
        let group = &nodes[s * t..(s + 1) * t];
        let speeds: Vec<f64> = group.iter().map(|n| n.speed).collect();
        let layouts = weighted_tensor_group(
            model,
            &speeds,
            range.clone(),
            s == 0,
            s + 1 == p,
            ExpertSplit::Columns,
        )?;
        for (layout, node) in layouts.iter().zip(group) {
            if predict(model, layout, cache)?.total() > node.budget_bytes {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Stage `s`'s work per token and node, in multiply-adds: the layers, and
/// for the last stage the output head. Looking up an embedding reads one
/// row, so the first stage's embedding table counts as no work. (Elements,
/// not bytes: the kernels are compute-bound here, and a Q8_0 head costs
/// about what a Q4 one does per element while reading twice the bytes.)
/// A stage's layers scale with its speed: its slowest node's.
fn stage_work(
    model: &ModelSummary,
    speeds: &[f64],
    s: usize,
    p: usize,
) -> Result<StageCost, PlanError> {
    let n_layers = model.config.n_layers;
    let mut cost = StageCost {
        fixed: 0.0,
        per_layer: 0.0,
        weight: speeds.iter().copied().fold(f64::INFINITY, f64::min),
    };
    for layout in weighted_tensor_group(
        model,
        speeds,
        0..n_layers,
        false,
        s + 1 == p,
        ExpertSplit::Columns,
    )? {
        let all = weight_elements(model, &layout)?;
        let fixed = weight_elements(
            model,
            &LocalLayout {
                layers: 0..0,
                ..layout.clone()
            },
        )?;
        cost.per_layer = cost.per_layer.max((all - fixed) as f64 / n_layers as f64);
        cost.fixed = cost.fixed.max(fixed as f64);
    }
    Ok(cost)
}

/// Stage `s`'s cost per node if it ran every layer, split into the part
/// that does not depend on its layer count and the part per layer; the
/// heaviest node of the group counts.
fn stage_cost(
    model: &ModelSummary,
    speeds: &[f64],
    s: usize,
    p: usize,
    cache: KvSpec,
    budget: u64,
) -> Result<StageCost, PlanError> {
    let n_layers = model.config.n_layers;
    let mut cost = StageCost {
        fixed: 0.0,
        per_layer: 0.0,
        weight: budget as f64,
    };
    for layout in weighted_tensor_group(
        model,
        speeds,
        0..n_layers,
        s == 0,
        s + 1 == p,
        ExpertSplit::Columns,
    )? {
        let all = predict(model, &layout, cache)?;
        let bare = weight_bytes(
            model,
            &LocalLayout {
                layers: 0..0,
                ..layout.clone()
            },
        )?;
        let layers_bytes = (all.weights - bare + all.kv_cache) as f64;
        let per_layer = layers_bytes / n_layers as f64;
        cost.per_layer = cost.per_layer.max(per_layer);
        cost.fixed = cost.fixed.max(all.total() as f64 - layers_bytes);
    }
    Ok(cost)
}
