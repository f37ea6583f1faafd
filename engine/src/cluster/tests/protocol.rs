//! Messages that do not belong: a node answers an undecodable, unknown or
//! out-of-place message with a typed error reply (the phase as a `Phase`)
//! and keeps serving; a coordinator given an undecodable reply names the
//! node and the phase.

use std::net::TcpListener;
use std::time::Duration;

use super::harness::start_nodes;
use crate::cluster::coordinator::Cluster;
use crate::cluster::heartbeat::HEARTBEAT_CLIENT;
use crate::cluster::messages::{FromNode, NodeInfo, Phase, ToNode};
use crate::cluster::node::coordinator_client_name;
use crate::net::{auth, Connection, Frame, Token};

const DEADLINE: Duration = Duration::from_secs(10);

/// A connection to a fresh node, authenticated as its coordinator.
fn coordinator_connection() -> Connection {
    let (nodes, token) = start_nodes(1);
    let addr = nodes[0].addr;
    // The node thread outlives this; its cache directory may go.
    drop(nodes);
    let mut conn = Connection::connect(addr, "n0", DEADLINE).expect("connects");
    auth::client_handshake(
        &mut conn,
        token.as_bytes(),
        &coordinator_client_name("raw"),
        DEADLINE,
    )
    .expect("authenticates");
    conn
}

fn reply(conn: &mut Connection) -> FromNode {
    conn.recv_control(DEADLINE).expect("the node replies")
}

fn expect_error(reply: FromNode, phase: Phase, says: &str) {
    match reply {
        FromNode::Error {
            phase: p, message, ..
        } => {
            assert_eq!(p, phase, "{message}");
            assert!(message.contains(says), "{message}");
        }
        other => panic!("expected an error in {phase}, got {other:?}"),
    }
}

#[test]
fn undecodable_and_unknown_messages_get_a_control_error_and_the_node_goes_on() {
    let mut conn = coordinator_connection();
    for bytes in [&b"{\"Frobnicate\":{}}"[..], b"not json at all", b"{}"] {
        conn.send_frame(&Frame::Control(bytes.to_vec()))
            .expect("sends");
        let got = reply(&mut conn);
        expect_error(got, Phase::Control, "not a valid");
    }
    conn.send_control(&ToNode::Ping).expect("sends");
    assert!(matches!(reply(&mut conn), FromNode::Pong));
}

#[test]
fn out_of_place_messages_get_an_error_in_their_phase() {
    let mut conn = coordinator_connection();
    let cases = [
        (
            ToNode::Step {
                pos: 0,
                tokens: vec![1, 2],
                seq: 0,
            },
            Phase::Prefill,
            "no shard is loaded",
        ),
        (
            ToNode::Step {
                pos: 4,
                tokens: vec![1],
                seq: 0,
            },
            Phase::Decode,
            "no shard is loaded",
        ),
        (
            ToNode::LoadFinish,
            Phase::Load,
            "weights sent without a load request",
        ),
        (
            ToNode::Emit { bytes: 1 << 40 },
            Phase::LinkProbe,
            "probe limit",
        ),
    ];
    for (msg, phase, says) in cases {
        conn.send_control(&msg).expect("sends");
        expect_error(reply(&mut conn), phase, says);
    }
    conn.send_control(&ToNode::Ping).expect("sends");
    assert!(matches!(reply(&mut conn), FromNode::Pong));
}

#[test]
fn node_errors_travel_with_the_phase_words_nodes_always_sent() {
    for (phase, word) in [
        (Phase::Load, "load"),
        (Phase::Peers, "peers"),
        (Phase::Prefill, "prefill"),
        (Phase::Decode, "decode"),
        (Phase::Control, "control"),
        (Phase::Links, "links"),
        (Phase::LinkProbe, "link probe"),
    ] {
        let json = serde_json::to_string(&FromNode::error(phase, "m")).expect("encodes");
        assert_eq!(
            json,
            format!(
                "{{\"Error\":{{\"phase\":\"{word}\",\"message\":\"m\",\"peer_closed\":false}}}}"
            )
        );
        let back: FromNode = serde_json::from_str(&json).expect("decodes");
        assert!(matches!(back, FromNode::Error { phase: p, .. } if p == phase));
        // A node of an earlier build sends no `peer_closed`: its own failure.
        let older = format!("{{\"Error\":{{\"phase\":\"{word}\",\"message\":\"m\"}}}}");
        let back: FromNode = serde_json::from_str(&older).expect("decodes");
        assert!(matches!(
            back,
            FromNode::Error {
                peer_closed: false,
                ..
            }
        ));
    }
}

/// A node that authenticates properly, then answers everything with a
/// message no coordinator knows.
fn babbling_node(token: &Token) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("address").to_string();
    let token = token.clone();
    let info = NodeInfo {
        name: "babbler".into(),
        version: "0".into(),
        protocol: crate::net::PROTOCOL_VERSION,
        hostname: "here".into(),
        listen: addr.clone(),
        cores: 1,
        threads: 1,
        mem_total: 1 << 30,
        mem_free: 1 << 30,
        budget: 1 << 30,
        cached_shards: Vec::new(),
        local_models: Vec::new(),
        link: None,
    };
    std::thread::spawn(move || {
        // The coordinator's connection, then its heartbeat connection.
        for stream in listener.incoming().take(2) {
            let Ok(stream) = stream else { return };
            let (token, info) = (token.clone(), info.clone());
            std::thread::spawn(move || babble(stream, &token, &info));
        }
    });
    addr
}

/// One connection to the babbling node: heartbeats are echoed properly,
/// everything else is babbled at.
fn babble(stream: std::net::TcpStream, token: &Token, info: &NodeInfo) {
    let Ok(mut conn) = Connection::from_stream(stream, "coordinator") else {
        return;
    };
    let mut heartbeat = false;
    let welcome = serde_json::to_value(info).map_err(|e| e.to_string());
    let hello = auth::server_handshake(&mut conn, token.as_bytes(), "babbler", DEADLINE, |h| {
        heartbeat = h.client_name == HEARTBEAT_CLIENT;
        welcome
    });
    if hello.is_err() {
        return;
    }
    if heartbeat {
        return crate::net::heartbeat::answer(conn);
    }
    while conn.recv_frame(DEADLINE).is_ok() {
        if conn
            .send_frame(&Frame::Control(b"{\"Gossip\":42}".to_vec()))
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn an_undecodable_reply_is_named_with_the_node_and_phase() {
    let token = Token::generate();
    let addr = babbling_node(&token);
    let mut cluster =
        Cluster::connect(std::slice::from_ref(&addr), token, "test").expect("connects");
    assert_eq!(cluster.nodes()[0].info.name, "babbler");
    let err = cluster.refresh().expect_err("a babbled reply fails");
    assert_eq!(err.node, format!("node0 ({addr})"));
    assert_eq!(err.phase, Phase::Control);
    assert!(err.message.contains("not a valid"), "{err}");
}
