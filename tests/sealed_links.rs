//! Sealed links over real processes: a relay on the path between a
//! coordinator and a real node alters or replays one of the coordinator's
//! sealed frames. The node refuses it, naming the coordinator, tells the
//! coordinator why, and serves the next one.

mod common;
mod netlab;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use netlab::shell::wait_until;
use netlab::Nodes;
use shardlab_engine::cluster::coordinator::Cluster;

/// The handshake's client frames (Hello, Proof); sealing starts after.
const HANDSHAKE_FRAMES: usize = 2;
const HEADER_LEN: usize = 12;

/// Reads one whole frame (header and payload) off a raw socket.
fn read_frame(from: &mut TcpStream) -> Option<Vec<u8>> {
    let mut frame = vec![0u8; HEADER_LEN];
    from.read_exact(&mut frame).ok()?;
    let len = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]) as usize;
    frame.resize(HEADER_LEN + len, 0);
    from.read_exact(&mut frame[HEADER_LEN..]).ok()?;
    Some(frame)
}

/// Forwards `from` to `to` until either end closes.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// A relay to the node at `to`. On the first connection (the coordinator's
/// working one) each frame the coordinator sends goes through `meddle`
/// (frame number from the Hello, bytes) -> the frames to pass on; later
/// connections (the heartbeat) pass untouched.
fn meddling_relay(
    to: String,
    mut meddle: impl FnMut(usize, Vec<u8>) -> Vec<Vec<u8>> + Send + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let Ok((mut client, _)) = listener.accept() else {
            return;
        };
        let also = to.clone();
        std::thread::spawn(move || {
            for other in listener.incoming().take(4) {
                let (Ok(other), Ok(server)) = (other, TcpStream::connect(&also)) else {
                    return;
                };
                let (Ok(other_back), Ok(server_back)) = (other.try_clone(), server.try_clone())
                else {
                    return;
                };
                pump(server_back, other_back);
                pump(other, server);
            }
        });
        let Ok(mut server) = TcpStream::connect(&to) else {
            return;
        };
        if let (Ok(back), Ok(client_back)) = (server.try_clone(), client.try_clone()) {
            pump(back, client_back);
        }
        let mut i = 0;
        while let Some(frame) = read_frame(&mut client) {
            for out in meddle(i, frame) {
                if server.write_all(&out).is_err() {
                    return;
                }
            }
            i += 1;
        }
        let _ = server.shutdown(Shutdown::Write);
    });
    addr
}

/// Connects through a relay doing `meddle`, asks the node twice for its
/// info, and returns the first error, with the node's log once it has
/// written the refusal. Then checks the node serves an honest coordinator.
fn meddled_with(
    meddle: impl FnMut(usize, Vec<u8>) -> Vec<Vec<u8>> + Send + 'static,
) -> (String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = Nodes::start(dir.path(), 1, 10.0, None);
    let relay = meddling_relay(nodes.addrs()[0].clone(), meddle);
    let mut c = Cluster::connect(&[relay], nodes.token(), "meddled").expect("handshake passes");
    let err = c
        .refresh()
        .and_then(|()| c.refresh())
        .expect_err("a meddled frame is refused");
    drop(c);
    let log = wait_until(Duration::from_secs(10), || {
        let log = nodes.procs[0].log();
        log.contains("failed authentication").then_some(log)
    })
    .expect("the node logs the refusal");
    // The node goes on serving: an honest coordinator gets in and is answered.
    let mut honest = wait_until(Duration::from_secs(10), || {
        Cluster::connect(&nodes.addrs(), nodes.token(), "honest").ok()
    })
    .expect("the node frees up");
    honest
        .refresh()
        .expect("the node answers the next coordinator");
    (err.to_string(), log)
}

#[test]
fn a_tampered_frame_is_refused_naming_the_coordinator_and_the_node_serves_the_next() {
    let (err, log) = meddled_with(|i, mut frame| {
        if i == HANDSHAKE_FRAMES {
            let last = frame.len() - 1;
            frame[last] ^= 0x01;
        }
        vec![frame]
    });
    assert!(err.starts_with("node0 ("), "{err}");
    assert!(err.contains("coordinator meddled"), "{err}");
    assert!(
        err.contains("failed authentication at sealed segment 0"),
        "{err}"
    );
    // The node names the coordinator once, with its address once.
    let refusal = log
        .lines()
        .find(|l| l.contains("failed authentication"))
        .expect("the refusal is logged");
    assert!(
        refusal.starts_with("node0: coordinator meddled (127.0.0.1:"),
        "{log}"
    );
    assert_eq!(refusal.matches("(127.0.0.1:").count(), 1, "{refusal}");
    assert!(
        refusal.contains(") sent a frame that failed authentication at sealed segment 0"),
        "{refusal}"
    );
}

#[test]
fn a_replayed_frame_is_refused_naming_the_coordinator_and_the_node_serves_the_next() {
    // The first request arrives twice: answered once, the replay refused.
    let (err, log) = meddled_with(|i, frame| {
        if i == HANDSHAKE_FRAMES {
            vec![frame.clone(), frame]
        } else {
            vec![frame]
        }
    });
    assert!(err.starts_with("node0 ("), "{err}");
    assert!(
        err.contains("failed authentication at sealed segment 1"),
        "{err}"
    );
    assert!(
        log.contains("failed authentication at sealed segment 1"),
        "{log}"
    );
}
