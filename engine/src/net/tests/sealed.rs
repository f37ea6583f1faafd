//! Sealed links over real sockets, with a relay in the middle that can
//! read, alter, replay, reorder, drop or forge the client's frames: what
//! someone on the path could do.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::json;

use super::{raw_pair, PATIENCE};
use crate::net::frame::{FrameKind, HEADER_LEN, TAG_LEN};
use crate::net::{
    client_handshake_with, server_handshake, ClientHello, Connection, Frame, FrameError,
    LinkSecurity, NetError, TensorDtype, TensorHeader,
};

const TOKEN: &[u8] = b"0123456789abcdef-shared-token";
/// The handshake's client frames (Hello, Proof); sealing starts after.
const HANDSHAKE_FRAMES: usize = 2;

fn welcome(_: &ClientHello) -> Result<serde_json::Value, String> {
    Ok(json!({}))
}

/// Decides what the server gets for the client's frame number `i`
/// (counting from the Hello): nothing, the frame, an altered copy, two...
type Meddler = Box<dyn FnMut(usize, Vec<u8>) -> Vec<Vec<u8>> + Send>;

/// Reads one whole frame (header and payload) off a raw socket.
fn read_frame(from: &mut TcpStream) -> Option<Vec<u8>> {
    let mut frame = vec![0u8; HEADER_LEN];
    from.read_exact(&mut frame).ok()?;
    let len = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]) as usize;
    frame.resize(HEADER_LEN + len, 0);
    from.read_exact(&mut frame[HEADER_LEN..]).ok()?;
    Some(frame)
}

/// A client and a server connection whose traffic crosses a relay; every
/// byte the client sent is kept in the returned buffer as it was on the
/// wire.
fn relayed(mut meddle: Meddler) -> (Connection, Connection, Arc<Mutex<Vec<u8>>>) {
    let (client, mut relay_c) = raw_pair();
    let (mut relay_s, server) = raw_pair();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (mut back_from, mut back_to) = (relay_s.try_clone().unwrap(), relay_c.try_clone().unwrap());
    thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
        let _ = back_to.shutdown(Shutdown::Write);
    });
    let log = seen.clone();
    thread::spawn(move || {
        let mut i = 0;
        while let Some(frame) = read_frame(&mut relay_c) {
            log.lock().unwrap().extend_from_slice(&frame);
            for out in meddle(i, frame) {
                if relay_s.write_all(&out).is_err() {
                    return;
                }
            }
            i += 1;
        }
        let _ = relay_s.shutdown(Shutdown::Write);
    });
    (
        Connection::from_stream(client, "node1").unwrap(),
        Connection::from_stream(server, "coordinator").unwrap(),
        seen,
    )
}

/// Both handshakes, the server's in a thread; returns both sides.
fn handshaken(
    meddle: Meddler,
    security: LinkSecurity,
) -> (Connection, Connection, Arc<Mutex<Vec<u8>>>) {
    let (mut client, mut server, seen) = relayed(meddle);
    let srv = thread::spawn(move || {
        server_handshake(&mut server, TOKEN, "node1", PATIENCE, welcome).unwrap();
        server
    });
    client_handshake_with(&mut client, TOKEN, "coordinator", PATIENCE, security).unwrap();
    (client, srv.join().unwrap(), seen)
}

fn pass() -> Meddler {
    Box::new(|_, frame| vec![frame])
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const MARKER: &str = "a-marker-nobody-on-the-path-should-read";

fn send_marked(client: &mut Connection) {
    client.send_control(&json!({ "text": MARKER })).unwrap();
    let th = TensorHeader::new(TensorDtype::Bytes, &[MARKER.len() as u64], 7).unwrap();
    client.send_tensor(&th, MARKER.as_bytes()).unwrap();
}

#[test]
fn sealed_frames_arrive_whole_and_the_path_reads_nothing_of_them() {
    let (mut client, mut server, seen) = handshaken(pass(), LinkSecurity::Sealed);
    assert_eq!(client.security(), LinkSecurity::Sealed);
    assert_eq!(server.security(), LinkSecurity::Sealed);
    send_marked(&mut client);
    let msg: serde_json::Value = server.recv_control(PATIENCE).unwrap();
    assert_eq!(msg["text"], MARKER);
    let mut data = Vec::new();
    let th = server.recv_tensor_into(PATIENCE, &mut data).unwrap();
    assert_eq!((th.tag(), &data[..]), (7, MARKER.as_bytes()));
    // And back the other way, a large tensor.
    let big = TensorHeader::new(TensorDtype::F32, &[3, 100_000], 1).unwrap();
    let payload: Vec<u8> = (0..1_200_000u32).map(|i| (i % 251) as u8).collect();
    server.send_tensor(&big, &payload).unwrap();
    client.recv_tensor_into(PATIENCE, &mut data).unwrap();
    assert!(data == payload, "the large tensor arrived altered");
    assert!(!contains(&seen.lock().unwrap(), MARKER.as_bytes()));
}

#[test]
fn plaintext_when_asked_is_readable_on_the_path() {
    // The same exchange as above with --insecure-plaintext: the relay
    // reads the marker, so the test above could fail.
    let (mut client, mut server, seen) = handshaken(pass(), LinkSecurity::Plaintext);
    assert_eq!(server.security(), LinkSecurity::Plaintext);
    send_marked(&mut client);
    let msg: serde_json::Value = server.recv_control(PATIENCE).unwrap();
    assert_eq!(msg["text"], MARKER);
    assert!(contains(&seen.lock().unwrap(), MARKER.as_bytes()));
}

/// The server's view when the relay does `meddle` to the client's sealed
/// frames: the result of two receives.
fn server_sees(meddle: Meddler) -> Vec<Result<serde_json::Value, NetError>> {
    let (mut client, mut server, _) = handshaken(meddle, LinkSecurity::Sealed);
    for n in 0..3 {
        client.send_control(&json!({ "n": n })).unwrap();
    }
    (0..2).map(|_| server.recv_control(PATIENCE)).collect()
}

fn unauthentic(r: &Result<serde_json::Value, NetError>, want: u64) {
    match r {
        Err(e @ NetError::Unauthentic { peer, segment }) => {
            assert!(peer.starts_with("coordinator ("), "{e}");
            assert_eq!(*segment, want, "{e}");
            assert!(e.to_string().contains("failed authentication"), "{e}");
        }
        other => panic!("expected an unauthentic frame {want}, got {other:?}"),
    }
}

#[test]
fn a_flipped_bit_is_refused_naming_the_peer_and_the_link_stays_shut() {
    let got = server_sees(Box::new(|i, mut frame| {
        if i == HANDSHAKE_FRAMES {
            frame[HEADER_LEN + 2] ^= 0x01;
        }
        vec![frame]
    }));
    unauthentic(&got[0], 0);
    assert!(
        matches!(got[1], Err(NetError::Broken { .. })),
        "{:?}",
        got[1]
    );
}

#[test]
fn a_replayed_frame_is_refused() {
    let got = server_sees(Box::new(|i, frame| {
        if i == HANDSHAKE_FRAMES {
            vec![frame.clone(), frame]
        } else {
            vec![frame]
        }
    }));
    assert_eq!(got[0].as_ref().unwrap()["n"], 0);
    unauthentic(&got[1], 1);
}

#[test]
fn reordered_and_dropped_frames_are_refused() {
    let mut held = None;
    let got = server_sees(Box::new(move |i, frame| {
        if i == HANDSHAKE_FRAMES {
            held = Some(frame);
            vec![]
        } else if i == HANDSHAKE_FRAMES + 1 {
            vec![frame, held.take().unwrap()]
        } else {
            vec![frame]
        }
    }));
    unauthentic(&got[0], 0);
    let got = server_sees(Box::new(|i, frame| {
        if i == HANDSHAKE_FRAMES {
            vec![]
        } else {
            vec![frame]
        }
    }));
    unauthentic(&got[0], 0);
}

#[test]
fn an_altered_tensor_header_is_refused_though_it_travels_readable() {
    let (mut client, mut server, _) = handshaken(
        Box::new(|i, mut frame| {
            if i == HANDSHAKE_FRAMES {
                // The tensor's tag (bytes 4..8 of its header): 7 becomes 8.
                frame[HEADER_LEN + 4] = 8;
            }
            vec![frame]
        }),
        LinkSecurity::Sealed,
    );
    let th = TensorHeader::new(TensorDtype::F32, &[4], 7).unwrap();
    client.send_tensor(&th, &[1; 16]).unwrap();
    let mut out = Vec::new();
    let err = server.recv_tensor_into(PATIENCE, &mut out).unwrap_err();
    assert!(
        matches!(err, NetError::Unauthentic { segment: 0, .. }),
        "{err}"
    );
}

#[test]
fn a_plaintext_frame_forged_onto_a_sealed_link_is_refused() {
    let got = server_sees(Box::new(|i, frame| {
        if i == HANDSHAKE_FRAMES {
            vec![plain_control(br#"{"n":99}"#.to_vec())]
        } else {
            vec![frame]
        }
    }));
    match &got[0] {
        Err(NetError::Frame { source, .. }) => {
            assert_eq!(*source, FrameError::SealMismatch { sealed: false })
        }
        other => panic!("expected a seal mismatch, got {other:?}"),
    }
}

/// A plaintext control frame carrying `payload`.
fn plain_control(payload: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    Frame::Control(payload).encode(&mut out).unwrap();
    out
}

/// Runs a handshake whose Hello the relay rewrites with `rewrite`; returns
/// the client's error (the server's side fails too).
fn handshake_with_hello_rewritten(rewrite: fn(&mut serde_json::Value)) -> NetError {
    let (mut client, mut server, _) = relayed(Box::new(move |i, frame| {
        if i != 0 {
            return vec![frame];
        }
        let mut hello = serde_json::from_slice(&frame[HEADER_LEN..]).expect("the Hello is JSON");
        rewrite(&mut hello);
        vec![plain_control(serde_json::to_vec(&hello).unwrap())]
    }));
    let srv =
        thread::spawn(move || server_handshake(&mut server, TOKEN, "node1", PATIENCE, welcome));
    let err =
        client_handshake_with(&mut client, TOKEN, "c", PATIENCE, LinkSecurity::Sealed).unwrap_err();
    assert!(srv.join().unwrap().is_err());
    err
}

#[test]
fn a_downgrade_to_plaintext_on_the_path_fails_the_handshake() {
    let err = handshake_with_hello_rewritten(|hello| hello["security"] = json!("plaintext"));
    assert!(
        matches!(&err, NetError::Refused { reason, .. } if reason == "wrong token"),
        "{err}"
    );
}

/// What the server's next receive says once the client was dropped, the
/// relay doing `on_close` to its close frame.
fn after_drop(on_close: fn(Vec<u8>) -> Vec<Vec<u8>>) -> NetError {
    let meddle: Meddler = Box::new(move |_, frame| {
        if frame[6] == FrameKind::Close as u8 {
            on_close(frame)
        } else {
            vec![frame]
        }
    });
    let (client, mut server, _) = handshaken(meddle, LinkSecurity::Sealed);
    drop(client);
    server
        .recv_control::<serde_json::Value>(PATIENCE)
        .unwrap_err()
}

#[test]
fn a_close_frame_is_told_apart_from_a_cut() {
    // Dropped on purpose: the server reads the authenticated close frame.
    let err = after_drop(|frame| vec![frame]);
    assert!(
        matches!(
            err,
            NetError::Closed {
                cut_short: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().ends_with("closed the connection"), "{err}");
    // The relay swallows the close frame and ends the stream: cut short.
    let err = after_drop(|_| vec![]);
    assert!(
        matches!(
            err,
            NetError::Closed {
                cut_short: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("without a close frame"), "{err}");
    // A close frame with a forged tag is no close at all.
    let err = after_drop(|mut frame| {
        frame[HEADER_LEN + TAG_LEN - 1] ^= 0x80;
        vec![frame]
    });
    assert!(matches!(err, NetError::Unauthentic { .. }), "{err:?}");
}

#[test]
fn large_frames_cross_in_segments_and_a_flip_in_a_later_segment_is_refused() {
    use crate::net::seal::{sealed_len, SEGMENT};
    // A control message and a tensor several segments long, both ways.
    let (mut client, mut server, seen) = handshaken(pass(), LinkSecurity::Sealed);
    let long = "x".repeat(3 * SEGMENT + 11);
    client.send_control(&json!({ "long": long })).unwrap();
    let msg: serde_json::Value = server.recv_control(PATIENCE).unwrap();
    assert_eq!(msg["long"].as_str().map(str::len), Some(long.len()));
    let n = 2 * SEGMENT + 5;
    let th = TensorHeader::new(TensorDtype::Bytes, &[n as u64], 2).unwrap();
    let data: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
    client.send_tensor(&th, &data).unwrap();
    let mut out = Vec::new();
    server.recv_tensor_into(PATIENCE, &mut out).unwrap();
    assert!(out == data, "the segmented tensor arrived altered");
    // On the wire: the readable headers, then each segment with its tag.
    let wire = seen.lock().unwrap().len();
    let th_len = th.encoded_len();
    let json_len = serde_json::to_vec(&json!({ "long": long })).unwrap().len();
    let handshake_and_control = wire - (HEADER_LEN + th_len + sealed_len(n));
    assert!(handshake_and_control > HEADER_LEN + sealed_len(json_len));

    // A bit flipped 100 bytes from the end, in the second of the tensor's
    // three segments (the third holds 5 bytes and its tag), on a fresh
    // link: the first opens, the second is refused.
    let (mut client, mut server, _) = handshaken(
        Box::new(|i, mut frame| {
            if i == HANDSHAKE_FRAMES {
                let at = frame.len() - 100;
                frame[at] ^= 0x04;
            }
            vec![frame]
        }),
        LinkSecurity::Sealed,
    );
    client.send_tensor(&th, &data).unwrap();
    let err = server.recv_tensor_into(PATIENCE, &mut out).unwrap_err();
    assert!(
        matches!(err, NetError::Unauthentic { segment: 1, .. }),
        "{err}"
    );
}

#[test]
fn a_key_share_swapped_on_the_path_fails_the_handshake() {
    // Someone on the path without the token puts their own X25519 share in
    // the Hello, to learn the link's keys: the proofs cover the shares.
    let err = handshake_with_hello_rewritten(|hello| {
        let theirs = crate::net::key_share::KeyShare::new().public;
        hello["client_share"] = serde_json::to_value(theirs).unwrap();
    });
    assert!(
        matches!(&err, NetError::Refused { reason, .. } if reason == "wrong token"),
        "{err}"
    );
}
