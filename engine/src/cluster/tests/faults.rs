//! A node cut off from the cluster: the step that needed it fails with a
//! [`ClusterError`] naming that node (not the survivor that lost its peer)
//! and the phase, and the error stays typed through the model's `Backend`.

use super::harness::{argmax, load, start_nodes, tiny_model, Relay, PROMPT};
use crate::cluster::coordinator::{Cluster, ClusterError};
use crate::cluster::messages::Phase;
use crate::model::error::ModelError;
use crate::model::generate::Backend;
use crate::shard::plan::LayoutRequest;

/// Loads tensor over two nodes, node1 behind a relay; cuts the relay just
/// before a step of `phase`; returns the error and node1's label.
fn cut_before(phase: Phase) -> (Cluster, ClusterError, String) {
    let m = tiny_model();
    let (nodes, token) = start_nodes(2);
    let relay = Relay::to(nodes[1].addr);
    let addrs = vec![nodes[0].addr.to_string(), relay.addr.to_string()];
    let mut cluster = Cluster::connect(&addrs, token, "test").expect("connects");
    load(&mut cluster, &m, &LayoutRequest::Tensor);
    let victim = cluster.nodes()[1].label();
    let result = match phase {
        Phase::Prefill => {
            relay.cut();
            cluster.step(&PROMPT, 0)
        }
        _ => {
            let logits = cluster.step(&PROMPT, 0).expect("prefill");
            relay.cut();
            cluster.step(&[argmax(&logits)], PROMPT.len())
        }
    };
    let Err(err) = result else {
        panic!("a step over a cut-off node succeeded");
    };
    (cluster, err, victim)
}

fn check_named(phase: Phase) {
    let (mut cluster, err, victim) = cut_before(phase);
    assert_eq!(err.node, victim, "{err}");
    assert_eq!(err.phase, phase, "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{victim} failed during {phase}: ")),
        "{err}"
    );
    assert!(!cluster.nodes()[1].is_alive(), "node1 is out");
    assert!(cluster.nodes()[0].is_alive(), "the survivor is not blamed");

    // Through the Backend the error is still the cluster's, node and phase
    // included, and reads the same.
    let backend_err = Backend::forward(&mut cluster, &[1], 0).expect_err("still broken");
    let ModelError::Cluster(inner) = &backend_err else {
        panic!("not a cluster error: {backend_err:?}");
    };
    assert_eq!(inner.node, victim);
    assert_eq!(backend_err.to_string(), inner.to_string());

    assert_eq!(cluster.remove_failed(), vec![victim]);
}

#[test]
fn a_node_cut_off_before_prefill_is_named_with_the_phase() {
    check_named(Phase::Prefill);
}

#[test]
fn a_node_cut_off_before_decode_is_named_with_the_phase() {
    check_named(Phase::Decode);
}
