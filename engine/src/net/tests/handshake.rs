//! The handshake over real sockets, including peers that lie.

use std::io::Write;
use std::thread;
use std::time::Duration;

use serde_json::json;

use super::{pair, PATIENCE};
use crate::net::auth::{proof, Bytes32, Exchange, HandshakeMsg, Prover};
use crate::net::frame::{FrameHeader, FrameKind};
use crate::net::{
    client_handshake, refuse_client, server_handshake, ClientHello, Connection, Frame,
    LinkSecurity, NetError, TensorDtype, TensorHeader, Token, PROTOCOL_VERSION,
};

const TOKEN: &[u8] = b"0123456789abcdef-shared-token";

fn welcome(_: &ClientHello) -> Result<serde_json::Value, String> {
    Ok(json!({"cores": 16, "mem_bytes": 1u64 << 34}))
}

/// Runs `server` on the server side of a fresh pair in a thread; returns
/// the client side and the thread.
fn serve<R: Send + 'static>(
    server: impl FnOnce(&mut Connection) -> R + Send + 'static,
) -> (Connection, thread::JoinHandle<(R, Connection)>) {
    let (client, mut srv) = pair();
    let handle = thread::spawn(move || {
        let r = server(&mut srv);
        (r, srv)
    });
    (client, handle)
}

#[test]
fn handshake_succeeds_both_ways_and_the_connection_carries_on() {
    let (mut client, server) = serve(|conn| {
        let hello = server_handshake(conn, TOKEN, "node1", PATIENCE, welcome)?;
        // Full caps are back after the handshake: a tensor passes.
        let mut buf = Vec::new();
        let th = conn.recv_tensor_into(PATIENCE, &mut buf)?;
        conn.send_tensor(&th, &buf)?;
        Ok::<_, NetError>((hello, conn.peer().to_string()))
    });
    let welcome = client_handshake(&mut client, TOKEN, "coordinator", PATIENCE).unwrap();
    assert_eq!(welcome.server_name, "node1");
    assert_eq!(welcome.protocol, PROTOCOL_VERSION);
    assert_eq!(welcome.info["cores"], 16);
    let header = TensorHeader::new(TensorDtype::F32, &[1, 576], 3).unwrap();
    client.send_tensor(&header, &[7; 2304]).unwrap();
    let mut back = Vec::new();
    assert_eq!(
        client.recv_tensor_into(PATIENCE, &mut back).unwrap(),
        header
    );
    assert_eq!(back, vec![7; 2304]);
    let (result, _) = server.join().unwrap();
    let (hello, peer) = result.unwrap();
    assert_eq!(hello.client_name, "coordinator");
    assert!(peer.starts_with("coordinator (127.0.0.1:"), "{peer}");
}

#[test]
fn wrong_token_fails_on_both_sides_and_nothing_more_gets_through() {
    let (mut client, server) = serve(|conn| {
        let r = server_handshake(conn, b"the-real-token", "node1", PATIENCE, welcome);
        // The server has hung up its sending half: nothing more goes out.
        (r, conn.send_control(&json!({"late": true})).err())
    });
    let err = client_handshake(&mut client, b"a-wrong-token", "coordinator", PATIENCE).unwrap_err();
    match &err {
        NetError::Refused { reason, .. } => assert_eq!(reason, "wrong token"),
        other => panic!("expected Refused, got {other:?}"),
    }
    // The server half-closed after refusing: the client reads end-of-stream.
    let after = client.recv_frame(PATIENCE).unwrap_err();
    assert!(matches!(after, NetError::Closed { .. }), "{after:?}");
    let ((result, late), _) = server.join().unwrap();
    assert!(matches!(late, Some(NetError::Broken { .. })), "{late:?}");
    let server_err = result.unwrap_err();
    assert!(
        matches!(server_err, NetError::AuthFailed { .. }),
        "{server_err:?}"
    );
    assert!(
        server_err.to_string().contains("wrong token"),
        "{server_err}"
    );
    // The tokens appear in no message.
    for text in [err.to_string(), server_err.to_string(), format!("{err:?}")] {
        assert!(
            !text.contains("real-token") && !text.contains("wrong-token"),
            "{text}"
        );
    }
}

#[test]
fn version_mismatch_in_the_frame_header_is_refused_and_reported() {
    let (mut raw, srv) = super::raw_pair();
    let mut client = Connection::from_stream(raw.try_clone().unwrap(), "node1").unwrap();
    let server = thread::spawn(move || {
        let mut conn = Connection::from_stream(srv, "client").unwrap();
        (
            server_handshake(&mut conn, TOKEN, "node1", PATIENCE, welcome),
            conn,
        )
    });
    // A client from the future: its Hello travels in a newer protocol's frame.
    let future = PROTOCOL_VERSION + 1;
    let payload = serde_json::to_vec(&HandshakeMsg::Hello {
        protocol: future,
        client_nonce: Bytes32([1; 32]),
        client_share: Bytes32([6; 32]),
        client_name: "future".into(),
        security: LinkSecurity::Sealed,
    })
    .unwrap();
    let mut bytes = FrameHeader {
        kind: FrameKind::Control,
        len: payload.len() as u32,
        sealed: false,
    }
    .encode()
    .to_vec();
    bytes[4..6].copy_from_slice(&future.to_le_bytes());
    bytes.extend_from_slice(&payload);
    raw.write_all(&bytes).unwrap();
    let (result, _) = server.join().unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            NetError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs,
                ..
            } if theirs == future
        ),
        "{err:?}"
    );
    // The server still told the client why, in its own framing.
    match client.recv_control::<HandshakeMsg>(PATIENCE).unwrap() {
        HandshakeMsg::Refused { reason } => assert_eq!(
            reason,
            format!("node1 speaks wire protocol {PROTOCOL_VERSION}, the client speaks {future}")
        ),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn version_mismatch_in_the_hello_is_refused_before_token_work() {
    // The server holds an empty token: reaching token work would fail
    // differently, so VersionMismatch proves the order.
    let (mut client, server) =
        serve(|conn| server_handshake(conn, b"", "node1", PATIENCE, welcome));
    client
        .send_control(&HandshakeMsg::Hello {
            protocol: 9,
            client_nonce: Bytes32([0; 32]),
            client_share: Bytes32([6; 32]),
            client_name: "coordinator".into(),
            security: LinkSecurity::Sealed,
        })
        .unwrap();
    let (result, _) = server.join().unwrap();
    assert!(
        matches!(result, Err(NetError::VersionMismatch { theirs: 9, .. })),
        "{result:?}"
    );
    let reply: HandshakeMsg = client.recv_control(PATIENCE).unwrap();
    assert!(matches!(reply, HandshakeMsg::Refused { .. }), "{reply:?}");
}

#[test]
fn client_sees_a_server_of_another_version() {
    let (mut client, server) = serve(|conn| {
        let _: HandshakeMsg = conn.recv_control(PATIENCE).unwrap();
        conn.send_control(&HandshakeMsg::Challenge {
            protocol: PROTOCOL_VERSION + 1,
            server_nonce: Bytes32([2; 32]),
            server_share: Bytes32([7; 32]),
            server_name: "node1".into(),
        })
        .unwrap();
    });
    let err = client_handshake(&mut client, TOKEN, "coordinator", PATIENCE).unwrap_err();
    assert!(
        matches!(
            err,
            NetError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs,
                ..
            } if theirs == PROTOCOL_VERSION + 1
        ),
        "{err:?}"
    );
    let future = format!("speaks wire protocol {}", PROTOCOL_VERSION + 1);
    assert!(err.to_string().contains(&future), "{err}");
    server.join().unwrap();
}

#[test]
fn a_replayed_proof_fails_against_a_new_challenge() {
    // A legitimate exchange, recorded by an eavesdropper.
    let (mut first, server) =
        serve(|conn| server_handshake(conn, TOKEN, "node1", PATIENCE, welcome));
    let hello = HandshakeMsg::Hello {
        protocol: PROTOCOL_VERSION,
        client_nonce: Bytes32([5; 32]),
        client_share: Bytes32([6; 32]),
        client_name: "coordinator".into(),
        security: LinkSecurity::Sealed,
    };
    first.send_control(&hello).unwrap();
    let HandshakeMsg::Challenge {
        server_nonce,
        server_share,
        ..
    } = first.recv_control(PATIENCE).unwrap()
    else {
        panic!("expected a Challenge");
    };
    let exchange = Exchange {
        security: LinkSecurity::Sealed,
        client_nonce: Bytes32([5; 32]),
        server_nonce,
        client_share: Bytes32([6; 32]),
        server_share,
    };
    let recorded = HandshakeMsg::Proof {
        mac: proof(TOKEN, Prover::Client, &exchange, &first).unwrap(),
    };
    first.send_control(&recorded).unwrap();
    let reply: HandshakeMsg = first.recv_control(PATIENCE).unwrap();
    assert!(matches!(reply, HandshakeMsg::Welcome { .. }), "{reply:?}");
    assert!(server.join().unwrap().0.is_ok());

    // The eavesdropper replays Hello and Proof to a fresh server.
    let (mut replay, server) =
        serve(|conn| server_handshake(conn, TOKEN, "node1", PATIENCE, welcome));
    replay.send_control(&hello).unwrap();
    let HandshakeMsg::Challenge {
        server_nonce: fresh,
        ..
    } = replay.recv_control(PATIENCE).unwrap()
    else {
        panic!("expected a Challenge");
    };
    assert_ne!(fresh, server_nonce, "server nonces are fresh");
    replay.send_control(&recorded).unwrap();
    let reply: HandshakeMsg = replay.recv_control(PATIENCE).unwrap();
    assert!(
        matches!(&reply, HandshakeMsg::Refused { reason } if reason == "wrong token"),
        "{reply:?}"
    );
    let (result, _) = server.join().unwrap();
    assert!(
        matches!(result, Err(NetError::AuthFailed { .. })),
        "{result:?}"
    );
}

#[test]
fn a_server_that_does_not_know_the_token_is_rejected_by_the_client() {
    // An impostor that waves every client through and signs with its own key.
    let (mut client, server) = serve(|conn| {
        let _: HandshakeMsg = conn.recv_control(PATIENCE).unwrap();
        conn.send_control(&HandshakeMsg::Challenge {
            protocol: PROTOCOL_VERSION,
            server_nonce: Bytes32([3; 32]),
            server_share: Bytes32([7; 32]),
            server_name: "node1".into(),
        })
        .unwrap();
        let _: HandshakeMsg = conn.recv_control(PATIENCE).unwrap();
        conn.send_control(&HandshakeMsg::Welcome {
            mac: Bytes32([0xee; 32]),
            info: json!({}),
        })
        .unwrap();
    });
    let err = client_handshake(&mut client, TOKEN, "coordinator", PATIENCE).unwrap_err();
    assert!(matches!(err, NetError::AuthFailed { .. }), "{err:?}");
    assert!(
        err.to_string().contains("does not know the shared token"),
        "{err}"
    );
    server.join().unwrap();
}

#[test]
fn a_busy_node_refuses_after_auth_with_its_reason() {
    let (mut client, server) = serve(|conn| {
        server_handshake(conn, TOKEN, "node1", PATIENCE, |hello| {
            Err(format!(
                "busy, serving coordinator-a since 12:00 (not {})",
                hello.client_name
            ))
        })
    });
    let err = client_handshake(&mut client, TOKEN, "coordinator-b", PATIENCE).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} refused the connection: busy, serving coordinator-a since 12:00 \
             (not coordinator-b)",
            client.peer()
        )
    );
    let (result, _) = server.join().unwrap();
    assert!(
        matches!(result, Err(NetError::Declined { .. })),
        "{result:?}"
    );
}

#[test]
fn a_busy_node_can_refuse_before_auth() {
    let (mut client, server) =
        serve(|conn| refuse_client(conn, "busy, serving X since T", PATIENCE));
    let err = client_handshake(&mut client, TOKEN, "coordinator", PATIENCE).unwrap_err();
    assert!(
        matches!(&err, NetError::Refused { reason, .. } if reason == "busy, serving X since T"),
        "{err:?}"
    );
    let (result, _) = server.join().unwrap();
    assert_eq!(result.unwrap().client_name, "coordinator");
}

#[test]
fn a_silent_server_times_the_handshake_out() {
    let (mut client, server) = serve(|conn| {
        // Read the Hello, then say nothing until the client gives up.
        let _ = conn.recv_frame(PATIENCE);
        let _ = conn.recv_frame(PATIENCE);
    });
    let start = std::time::Instant::now();
    let err = client_handshake(
        &mut client,
        TOKEN,
        "coordinator",
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert!(matches!(err, NetError::Timeout { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(client);
    server.join().unwrap();
}

#[test]
fn unauthenticated_peers_get_small_caps() {
    let (mut client, server) =
        serve(|conn| server_handshake(conn, TOKEN, "node1", PATIENCE, welcome));
    // A 1 MiB "Hello" is refused from its header before any token work.
    // (The send may fail half-way once the server hangs up.)
    let _ = client.send_frame(&Frame::Control(vec![b' '; 1 << 20]));
    let (result, _) = server.join().unwrap();
    assert!(matches!(&result, Err(NetError::Frame { .. })), "{result:?}");
}

#[test]
fn token_type_feeds_the_handshake() {
    let token = Token::generate();
    let secret = String::from_utf8(token.as_bytes().to_vec()).unwrap();
    let server_token = token.clone();
    let (mut client, server) = serve(move |conn| {
        server_handshake(conn, server_token.as_bytes(), "node1", PATIENCE, welcome)
    });
    client_handshake(&mut client, token.as_bytes(), "coordinator", PATIENCE).unwrap();
    assert!(server.join().unwrap().0.is_ok());
    assert!(!format!("{token:?}").contains(&secret));
}
