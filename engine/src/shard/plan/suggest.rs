//! Checking a plan against the nodes' budgets, and finding one that fits
//! when it does not, so the refusal can say what would work.

use super::error::{mib, PlanError};
use super::request::LayoutRequest;
use super::summary::ModelSummary;
use super::{plan, KvSpec, NodeBudget, Plan};

/// Refuses, naming the first node whose prediction exceeds its budget and by
/// how much, with a layout over the same nodes that fits when there is one.
pub fn check_fits(
    model: &ModelSummary,
    plan: &Plan,
    nodes: &[NodeBudget],
) -> Result<(), PlanError> {
    if plan.nodes.len() != nodes.len() {
        return Err(PlanError::NodeMismatch {
            planned: plan.nodes.len(),
            given: nodes.len(),
        });
    }
    for np in &plan.nodes {
        let budget = nodes
            .get(np.node)
            .map_or(np.budget_bytes, |n| n.budget_bytes);
        let predicted = np.memory.total();
        if predicted > budget {
            let suggestion =
                suggest(model, nodes, KvSpec::new(plan.context, plan.kv)).map(|(request, fits)| {
                    let totals: Vec<String> =
                        fits.nodes.iter().map(|n| mib(n.memory.total())).collect();
                    format!(
                        "{request} over these {} nodes fits: {}",
                        nodes.len(),
                        join_and(&totals)
                    )
                });
            return Err(PlanError::DoesNotFit {
                node: np.name.clone(),
                predicted,
                budget,
                shortfall: predicted - budget,
                suggestion,
            });
        }
    }
    Ok(())
}

/// A layout over exactly these nodes that fits their budgets: tensor first
/// (every node works on every token), then pipeline, then hybrids with the
/// widest tensor groups first; a single node can only run `single`.
pub fn suggest(
    model: &ModelSummary,
    nodes: &[NodeBudget],
    cache: KvSpec,
) -> Option<(LayoutRequest, Plan)> {
    let n = nodes.len();
    let mut candidates = Vec::new();
    if n == 1 {
        candidates.push(LayoutRequest::Single);
    } else if n > 1 {
        candidates.push(LayoutRequest::Tensor);
        candidates.push(LayoutRequest::Pipeline { layers: None });
        for tensor in (2..n).rev().filter(|&t| n.is_multiple_of(t)) {
            candidates.push(LayoutRequest::Hybrid {
                tensor,
                pipeline: n / tensor,
            });
        }
    }
    candidates.into_iter().find_map(|request| {
        let p = plan(model, nodes, &request, cache).ok()?;
        fits(&p, nodes).then_some((request, p))
    })
}

fn fits(plan: &Plan, nodes: &[NodeBudget]) -> bool {
    plan.nodes.iter().all(|np| {
        nodes
            .get(np.node)
            .is_some_and(|n| np.memory.total() <= n.budget_bytes)
    })
}

/// "a", "a and b", "a, b and c".
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_english() {
        let s = |v: &[&str]| join_and(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&["a"]), "a");
        assert_eq!(s(&["a", "b"]), "a and b");
        assert_eq!(s(&["a", "b", "c"]), "a, b and c");
    }
}
