//! A live node faced with bad clients: a wrong token, a protocol version
//! mismatch, garbage bytes, an oversized frame, a truncated frame, a silent
//! connection, a second coordinator. Each is refused with nothing but a
//! refusal sent either way, and the node still serves a whole session (load
//! and generate) afterwards.

mod common;
mod netlab;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use shardlab_engine::cluster::coordinator::{Cluster, LocalNodeOptions, LocalNodes};
use shardlab_engine::net::{Token, PROTOCOL_VERSION};

fn one_node(home: &std::path::Path) -> LocalNodes {
    LocalNodes::spawn(
        1,
        &LocalNodeOptions {
            exe: PathBuf::from(env!("CARGO_BIN_EXE_shardlab")),
            home: home.to_path_buf(),
            threads_per_node: 1,
            threads_each: Vec::new(),
            mem_limits: Vec::new(),
            pin_cores: false,
            extra_args: Vec::new(),
        },
    )
    .expect("node starts")
}

/// Sends raw bytes and reads until the node closes (or 9 s pass).
fn raw_exchange(addr: &str, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).expect("connects");
    // Longer than the node's 5 s handshake deadline.
    s.set_read_timeout(Some(Duration::from_secs(9)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

/// Connects as the right coordinator. The previous checker may still be
/// being released (its goodbye is asynchronous), so "busy" is retried, a
/// bounded number of times; anything else fails at once.
fn connect_when_free(nodes: &LocalNodes) -> Cluster {
    for _ in 0..50 {
        match Cluster::connect(&nodes.addrs, nodes.token.clone(), "checker") {
            Ok(c) => return c,
            Err(e) if e.to_string().contains("busy") => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("the right coordinator is refused: {e}"),
        }
    }
    panic!("the node stayed busy for 5 s");
}

fn still_serves(nodes: &LocalNodes) {
    let mut c = connect_when_free(nodes);
    c.refresh().expect("and gets answers");
    assert!(c.nodes()[0].rtt.is_some());
}

fn header(version: u16, kind: u8, len: u32) -> Vec<u8> {
    let mut h = b"SHLB".to_vec();
    h.extend_from_slice(&version.to_le_bytes());
    h.push(kind);
    h.push(0);
    h.extend_from_slice(&len.to_le_bytes());
    h
}

#[test]
fn bad_clients_are_refused_and_the_node_keeps_serving() {
    let home = tempfile::tempdir().expect("tempdir");
    let nodes = one_node(home.path());
    let addr = nodes.addrs[0].clone();

    // A wrong token.
    let err = Cluster::connect(&nodes.addrs, Token::generate(), "intruder")
        .err()
        .expect("a wrong token is refused");
    let msg = err.to_string();
    assert!(
        msg.contains("node0") && msg.contains("wrong token"),
        "{msg}"
    );
    still_serves(&nodes);

    // A newer protocol version: refused with a message naming both versions,
    // and nothing else (no node info, no shard data).
    let mut frame = header(PROTOCOL_VERSION + 1, 1, 2);
    frame.extend_from_slice(b"{}");
    let (reply, closed) = raw_exchange(&addr, &frame);
    assert!(closed, "the node hangs up on a version mismatch");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("protocol"), "{text}");
    assert!(reply.len() < 1024, "only a refusal: {text}");
    assert!(!text.contains("welcome"), "{text}");
    still_serves(&nodes);

    // Garbage.
    let (_, closed) = raw_exchange(&addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(closed, "garbage is dropped");
    still_serves(&nodes);

    // An oversized frame: a 1 GiB control message is refused from its header.
    let (_, closed) = raw_exchange(&addr, &header(PROTOCOL_VERSION, 1, 1 << 30));
    assert!(closed, "an oversized frame is dropped");
    still_serves(&nodes);

    // A truncated frame, then silence: the handshake deadline closes it.
    let (_, closed) = raw_exchange(&addr, &header(PROTOCOL_VERSION, 1, 100)[..7]);
    assert!(closed, "a stalled handshake is closed by the deadline");
    still_serves(&nodes);

    // Slowloris: connect and send nothing at all.
    let (reply, closed) = raw_exchange(&addr, b"");
    assert!(
        closed,
        "a silent connection is closed by the handshake deadline"
    );
    assert!(reply.is_empty(), "nothing is sent to a silent client");

    // No refused client got a shard onto the node.
    let cache = home.path().join("nodes").join("local-0");
    assert!(
        shardlab_engine::cluster::node::shard_cache::ShardCache::new(cache)
            .list()
            .is_empty(),
        "no shard data was received"
    );
    // Serving means a whole session: a model loaded and tokens generated.
    let m = common::smollm2();
    let mut c = connect_when_free(&nodes);
    common::load(
        &mut c,
        &m,
        &shardlab_engine::shard::plan::LayoutRequest::Single,
    );
    let got = netlab::model::generate(&mut c, &common::PROMPT, 4).expect("generates");
    assert_eq!(got.len(), 4);
    drop(c);

    // The refusals and the session never put the token in the node's log.
    let token = std::fs::read_to_string(&nodes.token_file).expect("token");
    let log = std::fs::read_to_string(nodes.log_path(0)).expect("log");
    assert!(log.contains("wrong token"), "the refusal is logged: {log}");
    assert!(!log.contains(token.trim()), "the node logged its token");
}

#[test]
fn a_second_coordinator_is_told_the_node_is_busy() {
    let home = tempfile::tempdir().expect("tempdir");
    let nodes = one_node(home.path());
    let first =
        Cluster::connect(&nodes.addrs, nodes.token.clone(), "first").expect("first gets in");
    let err = Cluster::connect(&nodes.addrs, nodes.token.clone(), "second")
        .err()
        .expect("second is turned away");
    let msg = err.to_string();
    assert!(
        msg.contains("busy, serving coordinator first") || msg.contains("busy, serving first"),
        "{msg}"
    );
    drop(first);
    // Once the first coordinator leaves, the node takes the next one.
    let mut waited = 0;
    loop {
        match Cluster::connect(&nodes.addrs, nodes.token.clone(), "third") {
            Ok(_) => break,
            Err(e) if waited < 50 => {
                assert!(e.to_string().contains("busy"), "{e}");
                std::thread::sleep(Duration::from_millis(100));
                waited += 1;
            }
            Err(e) => panic!("the node never freed up: {e}"),
        }
    }
}
