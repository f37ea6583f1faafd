//! A live node faced with bad clients: a wrong token, a protocol version
//! mismatch, garbage bytes, an oversized frame, a second coordinator. Each
//! is refused, and the node still serves the right coordinator afterwards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use shardlab_engine::cluster::coordinator::{Cluster, LocalNodeOptions, LocalNodes};
use shardlab_engine::net::Token;

fn one_node(home: &std::path::Path) -> LocalNodes {
    LocalNodes::spawn(
        1,
        &LocalNodeOptions {
            exe: PathBuf::from(env!("CARGO_BIN_EXE_shardlab")),
            home: home.to_path_buf(),
            threads_per_node: 1,
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

fn still_serves(nodes: &LocalNodes) {
    let mut c = Cluster::connect(&nodes.addrs, nodes.token.clone(), "checker")
        .expect("the right coordinator gets in");
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

    // A newer protocol version: refused with a message naming both versions.
    let mut frame = header(2, 1, 2);
    frame.extend_from_slice(b"{}");
    let (reply, closed) = raw_exchange(&addr, &frame);
    assert!(closed, "the node hangs up on a version mismatch");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("protocol"), "{text}");
    still_serves(&nodes);

    // Garbage.
    let (_, closed) = raw_exchange(&addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(closed, "garbage is dropped");
    still_serves(&nodes);

    // An oversized frame: a 1 GiB control message is refused from its header.
    let (_, closed) = raw_exchange(&addr, &header(1, 1, 1 << 30));
    assert!(closed, "an oversized frame is dropped");
    still_serves(&nodes);

    // A truncated frame, then silence: the handshake deadline closes it.
    let (_, closed) = raw_exchange(&addr, &header(1, 1, 100)[..7]);
    assert!(closed, "a stalled handshake is closed by the deadline");
    still_serves(&nodes);
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
