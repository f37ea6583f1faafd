//! `PeerLinks` between in-process peers on loopback: the all-reduce sums
//! in rank order at every wire precision, stage hand-offs arrive as sent,
//! and a peer that goes away is named in a typed error.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use super::wire::{decode_hidden, encode_hidden};
use super::{decode_partials, encode_partials, PeerLinks, WireDtype};
use crate::model::transformer::AllReduce;
use crate::net::{Connection, NetError};

/// Long enough never to fire on a loaded machine; short enough that a
/// hang becomes a failure.
const PATIENCE: Duration = Duration::from_secs(10);

/// Two connected ends on loopback: `a` names its peer `a_calls_b`, and
/// the other way round.
fn tcp_pair(a_calls_b: &str, b_calls_a: &str) -> (Connection, Connection) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (
        Connection::from_stream(client, a_calls_b).unwrap(),
        Connection::from_stream(server, b_calls_a).unwrap(),
    )
}

/// A tensor group of `n` ranks, every pair connected; rank `r` calls its
/// peers `node{j}`.
fn group(n: usize, wire: WireDtype) -> Vec<PeerLinks> {
    let mut conns: Vec<Vec<Option<(String, Connection)>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let pairs = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j)));
    for (i, j) in pairs {
        let (to_j, to_i) = tcp_pair(&format!("node{j}"), &format!("node{i}"));
        conns[i][j] = Some((format!("node{j}"), to_j));
        conns[j][i] = Some((format!("node{i}"), to_i));
    }
    conns
        .into_iter()
        .enumerate()
        .map(|(rank, peers)| PeerLinks::new(rank, peers, None, None, PATIENCE, wire))
        .collect()
}

/// Rank `r`'s partials: varied magnitudes and signs, and `len` not a
/// multiple of the Q8 block.
fn partials(rank: usize, len: usize) -> Vec<f64> {
    (0..len)
        .map(|i| {
            let x = (i as f64 * 0.37 + rank as f64 * 1.9).sin() * (1.0 + rank as f64);
            x + i as f64 * 1e-3
        })
        .collect()
}

/// What every member must end with: each rank's partials as the wire
/// carries them, added in rank order.
fn rank_order_sum(wire: WireDtype, inputs: &[Vec<f64>]) -> Vec<f64> {
    let mut sum = vec![0.0; inputs[0].len()];
    let mut bytes = Vec::new();
    let mut decoded = vec![0.0; sum.len()];
    for (rank, p) in inputs.iter().enumerate() {
        encode_partials(wire, p, &mut bytes);
        decode_partials(wire, &bytes, &mut decoded);
        if rank == 0 {
            sum.copy_from_slice(&decoded);
        } else {
            for (s, d) in sum.iter_mut().zip(&decoded) {
                *s += d;
            }
        }
    }
    sum
}

/// Runs one all-reduce on every member of `links` at once; returns each
/// member's result, by rank.
fn all_reduce_everywhere(links: Vec<PeerLinks>, inputs: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let handles: Vec<_> = links
        .into_iter()
        .zip(inputs.iter().cloned())
        .map(|(mut l, mut p)| {
            thread::spawn(move || {
                l.all_reduce_partials(&mut p).unwrap();
                p
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn bits(x: &[f64]) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn all_reduce_sums_in_rank_order_at_every_wire_precision() {
    for wire in WireDtype::ALL {
        for n in [2, 3, 4] {
            let inputs: Vec<Vec<f64>> = (0..n).map(|r| partials(r, 77)).collect();
            let expected = rank_order_sum(wire, &inputs);
            let results = all_reduce_everywhere(group(n, wire), &inputs);
            for (rank, got) in results.iter().enumerate() {
                assert_eq!(
                    bits(got),
                    bits(&expected),
                    "rank {rank} of {n} at {wire} differs from the rank-order sum"
                );
            }
        }
    }
}

#[test]
fn the_order_of_addition_is_the_rank_order() {
    // (1e16 + 1) - 1e16 is 0 in f64, while 1e16 - 1e16 + 1 is 1: only a
    // rank-order sum gives 0 here, on every member.
    let inputs = vec![vec![1e16], vec![1.0], vec![-1e16]];
    let results = all_reduce_everywhere(group(3, WireDtype::F64), &inputs);
    for got in results {
        assert_eq!(got, vec![0.0]);
    }
}

#[test]
fn large_partials_go_pairwise_and_still_sum_in_rank_order() {
    // 48k f64 values: 384 KiB, above the size sent to everyone at once.
    let inputs: Vec<Vec<f64>> = (0..3).map(|r| partials(r, 48 * 1024)).collect();
    let expected = rank_order_sum(WireDtype::F64, &inputs);
    let results = all_reduce_everywhere(group(3, WireDtype::F64), &inputs);
    for got in results {
        assert_eq!(bits(&got), bits(&expected));
    }
}

#[test]
fn the_all_reduce_hook_counts_traffic_per_peer() {
    let mut links = group(2, WireDtype::F32);
    let mut second = links.pop().unwrap();
    let mut first = links.pop().unwrap();
    let peer = thread::spawn(move || {
        let mut p = vec![2.0; 10];
        second.all_reduce(&mut p).unwrap();
        p
    });
    first.begin_step();
    let mut p = vec![1.0; 10];
    first.all_reduce(&mut p).unwrap();
    assert_eq!(p, vec![3.0; 10]);
    assert_eq!(peer.join().unwrap(), vec![3.0; 10]);
    assert_eq!(first.stats.traffic.len(), 1);
    assert_eq!(first.stats.traffic[0].peer, "node1");
    assert_eq!(first.stats.traffic[0].bytes_sent, 40);
    assert_eq!(first.stats.step_received, 40);
}

#[test]
fn a_group_of_one_has_nothing_to_exchange() {
    let mut alone = PeerLinks::new(0, vec![None], None, None, PATIENCE, WireDtype::F64);
    let mut p = vec![1.5, -2.0];
    alone.all_reduce_partials(&mut p).unwrap();
    assert_eq!(p, vec![1.5, -2.0]);
}

#[test]
fn a_peer_that_left_is_named_in_a_typed_error() {
    let mut links = group(2, WireDtype::F64);
    drop(links.pop());
    let mut first = links.pop().unwrap();
    let err = first.all_reduce_partials(&mut [1.0; 8]).unwrap_err();
    assert!(matches!(err, NetError::Closed { .. }), "{err:?}");
    assert!(err.peer().starts_with("node1 (127.0.0.1:"), "{err}");
}

/// Stage 0 (`node0`) hands off to stage 1 (`node1`).
fn pipeline(wire: WireDtype) -> (PeerLinks, PeerLinks) {
    let (to_next, to_prev) = tcp_pair("node1", "node0");
    let first = PeerLinks::new(
        0,
        vec![None],
        None,
        Some(("node1".into(), to_next)),
        PATIENCE,
        wire,
    );
    let second = PeerLinks::new(
        0,
        vec![None],
        Some(("node0".into(), to_prev)),
        None,
        PATIENCE,
        wire,
    );
    (first, second)
}

#[test]
fn hidden_states_hand_off_at_every_wire_precision() {
    let (tokens, hidden) = (3, 40);
    let x: Vec<f32> = (0..tokens * hidden)
        .map(|i| (i as f32 * 0.11).cos() * 3.0)
        .collect();
    for wire in WireDtype::ALL {
        let (mut first, mut second) = pipeline(wire);
        first.send_hidden(&x, 7).unwrap();
        let mut got = Vec::new();
        second.recv_hidden(&mut got, tokens, hidden, 7).unwrap();
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        encode_hidden(wire, &x, &mut bytes);
        decode_hidden(wire, &bytes, x.len(), &mut expected);
        assert_eq!(got, expected, "hand-off at {wire}");
        if matches!(wire, WireDtype::F64 | WireDtype::F32) {
            assert_eq!(got, x, "exact at {wire}");
        }
        assert_eq!(second.stats.traffic[0].peer, "node0");
        assert_eq!(
            second.stats.traffic[0].bytes_received,
            wire.hidden_bytes(x.len()) as u64
        );
    }
}

#[test]
fn a_hand_off_of_another_sequence_is_refused() {
    let (mut first, mut second) = pipeline(WireDtype::F32);
    first.send_hidden(&[1.0; 8], 3).unwrap();
    let err = second.recv_hidden(&mut Vec::new(), 1, 8, 4).unwrap_err();
    assert!(matches!(err, NetError::UnexpectedFrame { .. }), "{err:?}");
    assert!(err.to_string().contains("sequence 4"), "{err}");
    assert_eq!(err.peer(), "node0");
}

#[test]
fn a_previous_stage_that_left_is_named_in_a_typed_error() {
    let (first, mut second) = pipeline(WireDtype::F64);
    drop(first);
    let err = second.recv_hidden(&mut Vec::new(), 1, 8, 0).unwrap_err();
    assert!(matches!(err, NetError::Closed { .. }), "{err:?}");
    assert!(err.peer().starts_with("node0 (127.0.0.1:"), "{err}");
}
