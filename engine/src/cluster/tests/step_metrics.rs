//! What nodes report with every step: here, the node process's resident
//! memory, on both the single-sequence and the batched step path.

use super::harness::{cluster_of, load, tiny_model, PROMPT};
use crate::metrics::memory::current_rss_bytes;
use crate::model::generate::SeqStep;
use crate::shard::plan::LayoutRequest;

#[test]
fn every_node_reports_its_resident_memory_with_each_step() {
    if current_rss_bytes().is_none() {
        // This platform cannot tell; nodes send 0 and nothing is testable.
        return;
    }
    let m = tiny_model();
    let (mut cluster, _nodes) = cluster_of(2);
    load(&mut cluster, &m, &LayoutRequest::Tensor);

    cluster.step(&PROMPT, 0).expect("step");
    for (i, step) in cluster.last_step.iter().enumerate() {
        let step = step.as_ref().expect("every node answered");
        assert!(step.resident_bytes > 0, "node {i} after a step");
    }

    cluster.last_step.iter_mut().for_each(|s| *s = None);
    let batch = [SeqStep {
        seq: 0,
        tokens: vec![7],
        pos: PROMPT.len(),
    }];
    cluster.step_many(&batch).expect("batched step");
    for (i, step) in cluster.last_step.iter().enumerate() {
        let step = step.as_ref().expect("every node answered");
        assert!(step.resident_bytes > 0, "node {i} after a batched step");
    }
}
