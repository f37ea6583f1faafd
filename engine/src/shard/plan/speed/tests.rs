//! The cost model end to end on hand-made calibrations: the parts add up
//! to the prediction, and layouts rank as the terms say they should.

use super::*;
use crate::calibration::KernelRate;
use crate::model::gguf::GgmlType;
use crate::model::kv_type::KvType;
use crate::shard::plan::fixtures::smollm2_summary;
use crate::shard::plan::{plan, KvSpec, LayoutRequest, NodeBudget};

fn cal(host: &str, cores: usize, threads: usize) -> Calibration {
    let rate = 4e9 * threads as f64;
    Calibration {
        host: host.into(),
        cores,
        threads,
        bandwidth: 10e9 * threads as f64,
        host_bandwidth: 10e9 * cores as f64,
        call_overhead: 2e-6,
        kernels: [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F32]
            .into_iter()
            .map(|dtype| KernelRate {
                dtype,
                decode: rate,
                prefill: 10.0 * rate,
                streamed: rate / 2.0,
                row_overhead: 1e-9,
            })
            .collect(),
        seconds: 0.0,
    }
}

fn budgets(n: usize) -> Vec<NodeBudget> {
    (0..n)
        .map(|i| NodeBudget {
            name: format!("node{i}"),
            budget_bytes: 1 << 40,
            speed: 1.0,
        })
        .collect()
}

fn predict(
    request: &str,
    nodes: &[Calibration],
    link: LinkCost,
    in_flight: usize,
) -> SpeedPrediction {
    let model = smollm2_summary();
    let request: LayoutRequest = request.parse().unwrap();
    let p = plan(
        &model,
        &budgets(nodes.len()),
        &request,
        KvSpec::new(512, KvType::F16),
    )
    .unwrap();
    let links = vec![link; nodes.len()];
    predict_speed(
        &model,
        &p,
        &SpeedInputs {
            nodes,
            links: &links,
            wire: WireDtype::F64,
            workload: Workload {
                prompt_tokens: 64,
                gen_tokens: 64,
                in_flight,
            },
        },
    )
    .unwrap()
}

const LAN: LinkCost = LinkCost {
    rtt: 50e-6,
    bandwidth: 1e9,
};

#[test]
fn a_single_node_decodes_at_its_compute_plus_the_coordinator() {
    let p = predict("single", &[cal("a", 4, 4)], LAN, 1);
    let step = p.stages[0].decode_compute + p.coordinator;
    assert_eq!(p.stages[0].decode_allreduce, 0.0);
    assert_eq!(p.stages[0].decode_hop, 0.0);
    assert!((p.decode_tok_s - 1.0 / step).abs() < 1e-9 * p.decode_tok_s);
    // 49152 f32 logits back over 1 GB/s and a round trip.
    assert!((p.coordinator - (50e-6 + 4.0 * 49152.0 / 1e9)).abs() < 1e-12);
    assert!((p.ttft - (p.stages[0].prefill_compute + p.coordinator)).abs() < 1e-12);
    assert!((p.prefill_tok_s - 64.0 / p.ttft).abs() < 1e-9);
}

#[test]
fn tensor_pays_two_all_reduces_per_layer_and_pipeline_a_hop_per_stage() {
    let nodes = [cal("a", 4, 4), cal("b", 4, 4)];
    let t = predict("tensor", &nodes, LAN, 1);
    // 576 f64 partials: 4608 bytes, 60 times a token.
    let one = terms::allreduce_seconds(2, 4608.0, LAN, 1.0);
    assert!((t.stages[0].decode_allreduce - 60.0 * one).abs() < 1e-12);
    let p = predict("pipeline", &nodes, LAN, 1);
    assert_eq!(p.stages.len(), 2);
    assert!((p.stages[0].decode_hop - terms::hop_seconds(2304.0, LAN)).abs() < 1e-12);
    assert_eq!(p.stages[1].decode_hop, 0.0);
    let sum: f64 = p.stages.iter().map(|s| s.decode()).sum::<f64>() + p.coordinator;
    assert!((p.decode_tok_s - 1.0 / sum).abs() < 1e-9 * p.decode_tok_s);
}

#[test]
fn two_machines_beat_one_on_a_fast_link_and_lose_on_a_slow_one() {
    let one = predict("single", &[cal("a", 4, 4)], LAN, 1).decode_tok_s;
    let fast = LinkCost {
        rtt: 5e-6,
        bandwidth: 10e9,
    };
    let two = [cal("a", 4, 4), cal("b", 4, 4)];
    assert!(predict("tensor", &two, fast, 1).decode_tok_s > one);
    let wifi = LinkCost {
        rtt: 4e-3,
        bandwidth: 50e6,
    };
    assert!(predict("tensor", &two, wifi, 1).decode_tok_s < one);
}

#[test]
fn nodes_sharing_one_machine_gain_nothing_from_tensor_parallelism() {
    // Two 2-thread nodes on one 2-core host: each gets half its compute.
    let crowded = [cal("a", 2, 2), cal("a", 2, 2)];
    let apart = [cal("a", 2, 2), cal("b", 2, 2)];
    let c = predict("tensor", &crowded, LAN, 1);
    let a = predict("tensor", &apart, LAN, 1);
    assert!(c.stages[0].decode_compute > 1.9 * a.stages[0].decode_compute);
}

#[test]
fn sequences_in_flight_fill_a_pipeline() {
    let nodes = [cal("a", 4, 4), cal("b", 4, 4)];
    let one = predict("pipeline", &nodes, LAN, 1).decode_tok_s;
    let four = predict("pipeline", &nodes, LAN, 4).decode_tok_s;
    assert!(four > 1.5 * one, "{one} {four}");
}

#[test]
fn inputs_that_do_not_match_the_plan_are_refused() {
    let model = smollm2_summary();
    let p = plan(
        &model,
        &budgets(2),
        &LayoutRequest::Tensor,
        KvSpec::new(512, KvType::F16),
    )
    .unwrap();
    let err = predict_speed(
        &model,
        &p,
        &SpeedInputs {
            nodes: &[cal("a", 2, 2)],
            links: &[],
            wire: WireDtype::F64,
            workload: Workload::default(),
        },
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("2 nodes in the plan, 1 calibrated"),
        "{err}"
    );
}

#[test]
fn exchanges_among_nodes_crowding_one_machine_stretch_with_their_cores() {
    // Three one-thread nodes on a 2-core host: each has 2/3 of a core, and
    // on a link of 20 us each way all of an all-reduce is the processes'
    // part, which takes 3/2 as long as between machines of their own.
    let crowded = [cal("a", 2, 1), cal("a", 2, 1), cal("a", 2, 1)];
    let apart = [cal("a", 2, 1), cal("b", 2, 1), cal("c", 2, 1)];
    let near = LinkCost {
        rtt: 40e-6,
        bandwidth: 1e12,
    };
    let c = predict("tensor", &crowded, near, 1);
    let a = predict("tensor", &apart, near, 1);
    let ratio = c.stages[0].decode_allreduce / a.stages[0].decode_allreduce;
    // (Within the few nanoseconds the bytes take, which do not stretch.)
    assert!((ratio - 1.5).abs() < 1e-3, "{ratio}");
}
