//! Plans for mixture-of-experts models: the expert layout places whole
//! experts, the tensor layout splits every expert's columns, uneven counts
//! and K-quant blocks wider than a node's share still plan, and memory
//! counts the expert bytes each node holds.

use crate::model::kv_type::KvType;
use crate::shard::plan::KvSpec;
use std::ops::Range;

use super::fixtures::{budgets, config, moe_config};
use super::memory::weight_bytes;
use super::*;
use crate::model::gguf::GgmlType;

fn plan_of(model: &ModelSummary, n: usize, request: LayoutRequest) -> Plan {
    plan(
        model,
        &budgets(&vec![u64::MAX; n]),
        &request,
        KvSpec::new(256, KvType::F16),
    )
    .expect("plans")
}

fn expert_ranges(p: &Plan) -> Vec<Range<usize>> {
    p.nodes.iter().map(|n| n.layout.experts.clone()).collect()
}

#[test]
fn expert_layout_places_whole_experts_evenly() {
    for (experts, n, counts) in [
        (128, 3, vec![43, 43, 42]),
        (16, 3, vec![6, 5, 5]),
        (8, 2, vec![4, 4]),
    ] {
        let model = ModelSummary::synthetic(
            moe_config("moe", 2048, experts, 8.min(experts), 768),
            GgmlType::Q4_0,
        );
        let p = plan_of(&model, n, LayoutRequest::Expert);
        let got: Vec<usize> = expert_ranges(&p).iter().map(|r| r.len()).collect();
        let mut sorted = got.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(sorted, counts, "{experts} experts over {n}: {got:?}");
        let mut at = 0;
        for r in expert_ranges(&p) {
            assert_eq!(r.start, at, "contiguous");
            at = r.end;
        }
        assert_eq!(at, experts);
        for np in &p.nodes {
            assert_eq!(np.layout.expert_ffn, 0..768, "whole experts");
        }
    }
}

#[test]
fn tensor_layout_splits_every_expert_by_columns() {
    let model = ModelSummary::synthetic(moe_config("moe", 2048, 128, 8, 768), GgmlType::Q4_0);
    let p = plan_of(&model, 3, LayoutRequest::Tensor);
    let cols: Vec<Range<usize>> = p
        .nodes
        .iter()
        .map(|n| n.layout.expert_ffn.clone())
        .collect();
    assert_eq!(cols.iter().map(|r| r.len()).sum::<usize>(), 768);
    for (np, c) in p.nodes.iter().zip(&cols) {
        assert_eq!(np.layout.experts, 0..128, "every node runs every expert");
        assert_eq!(c.start % 32, 0, "{cols:?}");
    }
}

#[test]
fn k_quant_experts_narrower_than_a_block_per_node_still_plan() {
    // 768 columns of Q4_K are 3 blocks of 256: over 4 nodes one owns none.
    let model = ModelSummary::synthetic(moe_config("moe-k", 2048, 16, 4, 768), GgmlType::Q4K);
    let p = plan_of(&model, 4, LayoutRequest::Tensor);
    let widths: Vec<usize> = p.nodes.iter().map(|n| n.layout.expert_ffn.len()).collect();
    assert_eq!(widths.iter().sum::<usize>(), 768);
    assert!(widths.iter().all(|w| w % 256 == 0), "{widths:?}");
    assert_eq!(widths.iter().filter(|&&w| w == 0).count(), 1, "{widths:?}");
    // The expert layout needs no column alignment at all.
    let p = plan_of(&model, 3, LayoutRequest::Expert);
    assert_eq!(expert_ranges(&p).iter().map(|r| r.len()).sum::<usize>(), 16);
}

#[test]
fn memory_counts_each_nodes_expert_bytes() {
    let model = ModelSummary::synthetic(moe_config("moe", 2048, 16, 4, 768), GgmlType::Q8_0);
    let exps: u64 = model
        .tensors
        .iter()
        .filter(|t| t.name.contains("_exps"))
        .map(|t| t.bytes())
        .sum();
    let per_expert = exps / 16;
    for request in [LayoutRequest::Expert, LayoutRequest::Tensor] {
        let p = plan_of(&model, 2, request.clone());
        let held: u64 = p.nodes.iter().map(|n| n.memory.weights).sum();
        let single = plan_of(&model, 1, LayoutRequest::Single).nodes[0]
            .memory
            .weights;
        // Replicated parts (norms, router, embedding, head) aside, the two
        // nodes hold the experts once between them.
        assert!(
            held >= single && held - single < per_expert,
            "{request}: {held} vs {single}"
        );
        for np in &p.nodes {
            assert_eq!(
                np.memory.weights,
                weight_bytes(&model, &np.layout).expect("bytes")
            );
        }
    }
    let p = plan_of(&model, 2, LayoutRequest::Expert);
    let heavy = p.nodes.iter().map(|n| n.memory.weights).max().unwrap_or(0);
    assert!(
        heavy < exps,
        "an expert node holds only its experts: {heavy} of {exps}"
    );
}

#[test]
fn expert_layout_of_a_dense_model_is_a_clear_error() {
    let model = ModelSummary::synthetic(
        config("dense", 2, 256, (4, 2, 64), 512, 320, true),
        GgmlType::Q8_0,
    );
    let err = plan(
        &model,
        &budgets(&[u64::MAX, u64::MAX]),
        &LayoutRequest::Expert,
        KvSpec::new(256, KvType::F16),
    )
    .expect_err("dense")
    .to_string();
    assert!(err.contains("dense is a dense model"), "{err}");
}

#[test]
fn expert_layout_replicates_attention_whose_heads_cannot_split() {
    // 4 heads of 64 in Q4_K are one 256-wide block: no two nodes can share them.
    let model = ModelSummary::synthetic(
        crate::model::config::ModelConfig {
            n_heads: 4,
            n_kv_heads: 4,
            head_dim: 64,
            rope_dim: 64,
            ..moe_config("moe-tiny-k", 256, 8, 2, 256)
        },
        GgmlType::Q4K,
    );
    let err = plan(
        &model,
        &budgets(&[u64::MAX; 2]),
        &LayoutRequest::Tensor,
        KvSpec::new(256, KvType::F16),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cannot split 4 attention heads over 2 nodes"),
        "{err}"
    );
    for n in 2..=3 {
        let p = plan_of(&model, n, LayoutRequest::Expert);
        for np in &p.nodes {
            assert!(np.layout.replicated_attention, "over {n}");
            assert_eq!(
                np.layout.q_heads,
                0..4,
                "over {n}: every node has all heads"
            );
        }
        assert_eq!(expert_ranges(&p).iter().map(|r| r.len()).sum::<usize>(), 8);
    }
    // Where heads do split, the expert layout still splits them.
    let split = ModelSummary::synthetic(moe_config("moe", 2048, 8, 2, 768), GgmlType::Q4_0);
    let p = plan_of(&split, 2, LayoutRequest::Expert);
    assert!(p.nodes.iter().all(|np| !np.layout.replicated_attention));
}
