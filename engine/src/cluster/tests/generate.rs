//! Generation over two in-process nodes: tensor and pipeline splits give
//! the one-process logits bit for bit (partials travel as f64), and a
//! second load of the same shards is served from the nodes' caches.

use super::harness::{cluster_of, greedy_logits, load, reference, tiny_model, TinyModel};
use crate::parallel::WireDtype;
use crate::shard::plan::LayoutRequest;

fn bits(steps: &[Vec<f32>]) -> Vec<Vec<u32>> {
    steps
        .iter()
        .map(|l| l.iter().map(|x| x.to_bits()).collect())
        .collect()
}

fn matches_one_process(m: &TinyModel, layout: LayoutRequest) {
    let mut one = reference(m);
    let expected = greedy_logits(|ids, pos| one.forward(ids, pos).expect("forward"));
    let (mut cluster, _nodes) = cluster_of(2);
    cluster.wire = WireDtype::F64;
    load(&mut cluster, m, &layout);
    let plan = &cluster.loaded().expect("loaded").plan;
    assert_eq!(plan.nodes.len(), 2, "{layout:?} uses both nodes");
    let got = greedy_logits(|ids, pos| cluster.step(ids, pos).expect("step"));
    assert_eq!(got.len(), expected.len());
    assert_eq!(bits(&got), bits(&expected), "{layout:?}");
}

#[test]
fn tensor_over_two_nodes_gives_the_one_process_logits() {
    matches_one_process(&tiny_model(), LayoutRequest::Tensor);
}

#[test]
fn pipeline_over_two_nodes_gives_the_one_process_logits() {
    let layout = LayoutRequest::Pipeline {
        layers: Some(vec![0..1, 1..2]),
    };
    matches_one_process(&tiny_model(), layout);
}

#[test]
fn a_second_load_is_served_from_the_shard_cache() {
    let m = tiny_model();
    let (mut cluster, _nodes) = cluster_of(2);
    let first = load(&mut cluster, &m, &LayoutRequest::Tensor);
    assert!(first.bytes_sent > 0);
    assert!(first
        .nodes
        .iter()
        .all(|(_, r)| !r.from_cache && r.received_bytes > 0));
    let first_logits = cluster.step(&[1, 2, 3], 0).expect("step");

    let second = load(&mut cluster, &m, &LayoutRequest::Tensor);
    assert_eq!(second.bytes_sent, 0, "nothing is streamed again");
    for (node, report) in &second.nodes {
        assert!(report.from_cache, "{node} loads from its cache");
        assert_eq!(report.received_bytes, 0, "{node}");
    }
    cluster.refresh().expect("refreshes");
    assert!(cluster
        .nodes()
        .iter()
        .all(|n| n.info.cached_shards.len() == 1));
    let again = cluster.step(&[1, 2, 3], 0).expect("step");
    assert_eq!(
        again.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        first_logits.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        "the cached shard computes the same"
    );
}
