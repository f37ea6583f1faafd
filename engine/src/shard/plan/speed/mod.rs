//! Predicted speed of a plan: prefill and decode tokens per second and the
//! time to the first token, from each node's calibration and the measured
//! links, before anything loads (docs/ARCHITECTURE.md, "Predicting speed").
//!
//! `work` counts what each node does per token, `terms` prices each part
//! (matmuls, attention, all-reduces, hand-offs, the coordinator, machines
//! shared by several nodes), and [`predict_speed`] adds them up along the
//! plan's stages. `weights` turns calibrations into the per-node weights
//! that split work unevenly between unequal nodes.

pub mod terms;
pub mod weights;
pub mod work;

use serde::{Deserialize, Serialize};

use super::error::PlanError;
use super::summary::ModelSummary;
use super::Plan;
use crate::calibration::Calibration;
use crate::parallel::WireDtype;

pub use terms::LinkCost;
pub use weights::split_weights;
pub use work::{node_work, NodeWork};

/// What the prediction is for: a prompt, the tokens generated after it and
/// the sequences in flight (pipelines fill with several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub in_flight: usize,
}

impl Default for Workload {
    /// A short chat turn: what `:plan` predicts unless told otherwise.
    fn default() -> Self {
        Self {
            prompt_tokens: 64,
            gen_tokens: 64,
            in_flight: 1,
        }
    }
}

/// Everything measured that a prediction needs, one entry per plan node.
pub struct SpeedInputs<'a> {
    pub nodes: &'a [Calibration],
    /// The coordinator's link to each node; empty when the model runs in
    /// the coordinator's own process.
    pub links: &'a [LinkCost],
    pub wire: WireDtype,
    pub workload: Workload,
}

/// One stage's predicted seconds: its slowest node's compute, and its
/// exchanges (all-reduces within it, the hand-off to the next stage).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageTime {
    pub nodes: Vec<usize>,
    pub decode_compute: f64,
    pub decode_allreduce: f64,
    pub decode_hop: f64,
    pub prefill_compute: f64,
    pub prefill_allreduce: f64,
    pub prefill_hop: f64,
}

impl StageTime {
    fn decode(&self) -> f64 {
        self.decode_compute + self.decode_allreduce + self.decode_hop
    }
    fn prefill(&self) -> f64 {
        self.prefill_compute + self.prefill_allreduce + self.prefill_hop
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeedPrediction {
    pub workload: Workload,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// Seconds from sending the prompt to holding the first token.
    pub ttft: f64,
    pub stages: Vec<StageTime>,
    /// The coordinator's part of each step (request out, logits back).
    pub coordinator: f64,
    /// Per plan node: seconds of compute per decoded token.
    pub node_decode: Vec<f64>,
}

/// The predicted speed of `plan` on the measured nodes and links.
pub fn predict_speed(
    model: &ModelSummary,
    plan: &Plan,
    inputs: &SpeedInputs,
) -> Result<SpeedPrediction, PlanError> {
    let n = plan.nodes.len();
    if inputs.nodes.len() != n || !(inputs.links.is_empty() || inputs.links.len() == n) {
        return Err(PlanError::Speed(format!(
            "{n} nodes in the plan, {} calibrated, {} links measured",
            inputs.nodes.len(),
            inputs.links.len()
        )));
    }
    let c = &model.config;
    let w = inputs.workload;
    let prompt = w.prompt_tokens.max(1) as f64;
    let depth = w.prompt_tokens as f64 + w.gen_tokens as f64 / 2.0;
    let work: Vec<NodeWork> = plan
        .nodes
        .iter()
        .map(|np| node_work(model, &np.layout, plan.kv))
        .collect::<Result<_, _>>()?;
    // Which nodes are busy at once: a stage's nodes, or every node when
    // several sequences keep every stage busy.
    let all: Vec<usize> = (0..n).collect();
    let busy_with = |stage: &[usize]| -> Vec<usize> {
        if w.in_flight > 1 && plan.stages.len() > 1 {
            all.clone()
        } else {
            stage.to_vec()
        }
    };
    let link = |i: usize| {
        inputs.links.get(i).copied().unwrap_or(LinkCost {
            rtt: 0.0,
            bandwidth: f64::INFINITY,
        })
    };
    let mut node_decode = vec![0.0; n];
    let mut stages = Vec::with_capacity(plan.stages.len());
    for (s, members) in plan.stages.iter().enumerate() {
        let mut st = StageTime {
            nodes: members.clone(),
            decode_compute: 0.0,
            decode_allreduce: 0.0,
            decode_hop: 0.0,
            prefill_compute: 0.0,
            prefill_allreduce: 0.0,
            prefill_hop: 0.0,
        };
        // The least compute share in the stage also stretches its
        // exchanges (see `allreduce_seconds`).
        let mut crowding: f64 = 1.0;
        for (i, share) in terms::host_shares(inputs.nodes, &busy_with(members)) {
            if !members.contains(&i) {
                continue;
            }
            crowding = crowding.min(share.compute);
            let cal = &inputs.nodes[i];
            let decode = terms::decode_matmul_seconds(&work[i], cal, share)
                + terms::decode_attention_seconds(&work[i], depth, cal, share);
            node_decode[i] = decode;
            st.decode_compute = st.decode_compute.max(decode);
            st.prefill_compute = st
                .prefill_compute
                .max(terms::prefill_seconds(&work[i], prompt, cal, share));
        }
        // The group's slowest link carries every all-reduce.
        let group_link = members
            .iter()
            .map(|&i| link(i))
            .reduce(LinkCost::between)
            .unwrap_or(link(0));
        let t = members.len();
        let layers = plan.nodes[members[0]].layout.layers.len() as f64;
        let partial = inputs.wire.partial_bytes(c.hidden) as f64;
        st.decode_allreduce =
            2.0 * layers * terms::allreduce_seconds(t, partial, group_link, crowding);
        st.prefill_allreduce =
            2.0 * layers * terms::allreduce_seconds(t, partial * prompt, group_link, crowding);
        if let Some(next) = plan.stages.get(s + 1) {
            let hop_link = LinkCost::between(group_link, link(next[0]));
            let hidden = inputs.wire.hidden_bytes(c.hidden) as f64;
            st.decode_hop = terms::hop_seconds(hidden, hop_link);
            st.prefill_hop = terms::hop_seconds(hidden * prompt, hop_link);
        }
        stages.push(st);
    }
    // The head stage's nodes each send their vocabulary rows of f32 logits.
    let coordinator = match plan.stages.last() {
        Some(head) if !inputs.links.is_empty() => head
            .iter()
            .map(|&i| {
                let rows = plan.nodes[i].layout.vocab.len() as f64;
                terms::coordinator_seconds(4.0 * rows, link(i))
            })
            .fold(0.0, f64::max),
        _ => 0.0,
    };
    let decode_stages: Vec<f64> = stages.iter().map(StageTime::decode).collect();
    let decode_tok_s = terms::pipeline_tokens_per_second(&decode_stages, coordinator, w.in_flight);
    let prefill: f64 = stages.iter().map(StageTime::prefill).sum();
    let ttft = prefill + coordinator;
    Ok(SpeedPrediction {
        workload: w,
        prefill_tok_s: prompt / ttft.max(1e-12),
        decode_tok_s,
        ttft,
        stages,
        coordinator,
        node_decode,
    })
}

#[cfg(test)]
mod tests;
