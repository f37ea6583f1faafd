//! Connecting: the coordinator authenticates, learns each node's info, and
//! a wrong token is named with the node and the connect phase.

use super::harness::{cluster_of, start_node, start_nodes};
use crate::cluster::coordinator::Cluster;
use crate::cluster::messages::Phase;
use crate::net::{Token, PROTOCOL_VERSION};

#[test]
fn connecting_learns_every_nodes_info() {
    let (mut cluster, nodes) = cluster_of(2);
    let got = cluster.nodes();
    assert_eq!(got.len(), 2);
    for (i, (handle, node)) in got.iter().zip(&nodes).enumerate() {
        assert_eq!(handle.name, format!("node{i}"));
        assert_eq!(handle.addr, node.addr.to_string());
        assert_eq!(handle.info.name, format!("n{i}"));
        assert_eq!(handle.info.protocol, PROTOCOL_VERSION);
        assert_eq!(handle.info.threads, 1);
        assert!(handle.info.cached_shards.is_empty());
        assert!(handle.is_alive());
    }
    cluster.refresh().expect("pings every node");
    assert!(cluster.nodes().iter().all(|n| n.rtt.is_some()));
}

#[test]
fn a_wrong_token_is_named_with_the_node_and_the_connect_phase() {
    let node = start_node("n0", &Token::generate());
    let addr = node.addr.to_string();
    let Err(err) = Cluster::connect(std::slice::from_ref(&addr), Token::generate(), "test") else {
        panic!("connected with the wrong token");
    };
    assert_eq!(err.node, format!("node0 ({addr})"));
    assert_eq!(err.phase, Phase::Connect);
    assert!(err.to_string().contains("wrong token"), "{err}");
}

#[test]
fn a_second_coordinator_is_told_the_node_is_busy() {
    let (nodes, token) = start_nodes(1);
    let addrs = vec![nodes[0].addr.to_string()];
    let _first = Cluster::connect(&addrs, token.clone(), "first").expect("connects");
    let Err(err) = Cluster::connect(&addrs, token, "second") else {
        panic!("a second coordinator got in");
    };
    assert_eq!(err.phase, Phase::Connect);
    let message = err.to_string();
    assert!(message.contains("busy, serving first"), "{message}");
}
