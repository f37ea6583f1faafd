//! `Connection` over real sockets: round trips, deadlines, closes, bad peers.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{pair, raw_pair, PATIENCE};
use crate::net::frame::{FrameHeader, FrameKind, HEADER_LEN};
use crate::net::{
    Connection, Frame, FrameError, NetError, TensorDtype, TensorHeader, PROTOCOL_VERSION,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    Step { pos: u32, tokens: Vec<u32> },
    Done,
}

fn f32_bytes(n: usize, seed: f32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (seed + i as f32).to_le_bytes())
        .collect()
}

#[test]
fn control_and_tensor_round_trip() {
    let (mut a, mut b) = pair();
    let data = f32_bytes(576, 0.5);
    let header = TensorHeader::new(TensorDtype::F32, &[1, 576], 7).unwrap();
    let echo = thread::spawn(move || {
        let msg: Msg = b.recv_control(PATIENCE).unwrap();
        b.send_control(&msg).unwrap();
        let mut buf = Vec::new();
        let th = b.recv_tensor_into(PATIENCE, &mut buf).unwrap();
        b.send_tensor(&th, &buf).unwrap();
    });
    let msg = Msg::Step {
        pos: 3,
        tokens: vec![1, 2, 49151],
    };
    a.send_control(&msg).unwrap();
    assert_eq!(a.recv_control::<Msg>(PATIENCE).unwrap(), msg);
    a.send_tensor(&header, &data).unwrap();
    match a.recv_frame(PATIENCE).unwrap() {
        Frame::Tensor { header: h, data: d } => {
            assert_eq!(h, header);
            assert_eq!(d, data);
        }
        other => panic!("expected a tensor, got {other:?}"),
    }
    echo.join().unwrap();
}

#[test]
fn recv_tensor_into_reuses_the_buffer() {
    let (mut a, mut b) = pair();
    let header = TensorHeader::new(TensorDtype::Bf16, &[4096], 1).unwrap();
    let sender = thread::spawn(move || {
        for i in 0..3u8 {
            b.send_tensor(&header, &vec![i; 8192]).unwrap();
        }
        // Keep the socket open until the receiver is done.
        let _: Msg = b.recv_control(PATIENCE).unwrap();
    });
    let mut out = Vec::new();
    a.recv_tensor_into(PATIENCE, &mut out).unwrap();
    let (ptr, cap) = (out.as_ptr(), out.capacity());
    for i in 1..3u8 {
        let th = a.recv_tensor_into(PATIENCE, &mut out).unwrap();
        assert_eq!(th.dims(), &[4096]);
        assert!(out.iter().all(|&x| x == i), "tensor {i} arrived intact");
        assert_eq!(
            (out.as_ptr(), out.capacity()),
            (ptr, cap),
            "no reallocation"
        );
    }
    a.send_control(&Msg::Done).unwrap();
    sender.join().unwrap();
}

#[test]
fn large_tensor_arrives_whole() {
    let (mut a, mut b) = pair();
    let data: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let expected = data.clone();
    let header = TensorHeader::new(TensorDtype::Bytes, &[data.len() as u64], 9).unwrap();
    let sender = thread::spawn(move || b.send_tensor(&header, &data).unwrap());
    let mut out = Vec::new();
    let th = a.recv_tensor_into(PATIENCE, &mut out).unwrap();
    assert_eq!(th.tag(), 9);
    assert!(out == expected);
    sender.join().unwrap();
}

#[test]
fn silent_peer_times_out_near_the_deadline_and_stays_usable() {
    let (mut a, mut b) = pair();
    let deadline = Duration::from_millis(300);
    let start = Instant::now();
    let err = a.recv_control::<Msg>(deadline).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, NetError::Timeout { .. }), "{err:?}");
    assert!(!err.peer_closed(), "a silent peer did not close");
    assert!(took >= deadline, "returned early: {took:?}");
    assert!(took < deadline + Duration::from_secs(1), "took {took:?}");
    assert!(err.to_string().contains("node1 (127.0.0.1:"), "{err}");
    // Nothing was half-read, so the connection is still good.
    b.send_control(&Msg::Done).unwrap();
    assert_eq!(a.recv_control::<Msg>(PATIENCE).unwrap(), Msg::Done);
}

#[test]
fn slowloris_cannot_stretch_a_receive_past_its_deadline() {
    let (client, mut server) = raw_pair();
    let mut conn = Connection::from_stream(client, "node1").unwrap();
    let mut frame = Vec::new();
    Frame::Control(vec![b' '; 1000]).encode(&mut frame).unwrap();
    // The header at once, then one byte every 50 ms: each read succeeds
    // long before its own timeout, only the whole-frame deadline can stop this.
    server.write_all(&frame[..HEADER_LEN]).unwrap();
    let dribbler = thread::spawn(move || {
        for &byte in &frame[HEADER_LEN..] {
            if server.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let deadline = Duration::from_millis(500);
    let start = Instant::now();
    let err = conn.recv_frame(deadline).unwrap_err();
    let took = start.elapsed();
    let NetError::Timeout { what, .. } = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert!(what.contains("of 1000 bytes received"), "{what}");
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(1),
        "{took:?}"
    );
    // Mid-frame: the stream is out of step, so further receives refuse.
    let again = conn.recv_frame(deadline).unwrap_err();
    assert!(matches!(again, NetError::Broken { .. }), "{again:?}");
    drop(conn);
    dribbler.join().unwrap();
}

#[test]
fn partial_header_timeout_reports_progress() {
    let (client, mut server) = raw_pair();
    let mut conn = Connection::from_stream(client, "node1").unwrap();
    server.write_all(b"SHLB\x01").unwrap();
    let err = conn
        .recv_control::<Msg>(Duration::from_millis(200))
        .unwrap_err();
    assert!(err.to_string().contains("5 of 12 header bytes"), "{err}");
    drop(server);
}

#[test]
fn peer_closing_mid_frame_is_closed_with_progress() {
    let (client, mut server) = raw_pair();
    let mut conn = Connection::from_stream(client, "node1").unwrap();
    let header = TensorHeader::new(TensorDtype::F32, &[100], 0).unwrap();
    let mut bytes = Vec::new();
    Frame::Tensor {
        header,
        data: vec![0; 400],
    }
    .encode(&mut bytes)
    .unwrap();
    server.write_all(&bytes[..HEADER_LEN + 16 + 50]).unwrap();
    drop(server);
    let mut out = Vec::new();
    let err = conn.recv_tensor_into(PATIENCE, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Closed {
                partial: Some((50, 400)),
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.starts_with("node1 (127.0.0.1:"), "{text}");
    assert!(
        text.contains("closed the connection in the middle of a frame"),
        "{text}"
    );
}

#[test]
fn peer_closing_between_frames_is_closed() {
    let (mut a, b) = pair();
    drop(b);
    let err = a.recv_frame(PATIENCE).unwrap_err();
    assert!(
        matches!(err, NetError::Closed { partial: None, .. }),
        "{err:?}"
    );
    assert!(err.to_string().ends_with("closed the connection"), "{err}");
    assert!(err.peer_closed(), "{err:?}");
}

#[test]
fn tensor_where_control_expected_names_both() {
    let (mut a, mut b) = pair();
    let header = TensorHeader::new(TensorDtype::F16, &[2, 8], 5).unwrap();
    b.send_tensor(&header, &[0; 32]).unwrap();
    let err = a.recv_control::<Msg>(PATIENCE).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, NetError::UnexpectedFrame { .. }), "{err:?}");
    assert!(text.contains("expected a control message"), "{text}");
    assert!(text.contains("tag 5, f16 [2, 8]"), "{text}");
    assert!(matches!(
        a.recv_frame(PATIENCE).unwrap_err(),
        NetError::Broken { .. }
    ));
}

#[test]
fn control_where_tensor_expected_is_quoted_and_survivable() {
    let (mut a, mut b) = pair();
    b.send_control(&Msg::Done).unwrap();
    let header = TensorHeader::new(TensorDtype::F32, &[2], 1).unwrap();
    b.send_tensor(&header, &[1; 8]).unwrap();
    let mut out = Vec::new();
    let err = a.recv_tensor_into(PATIENCE, &mut out).unwrap_err();
    assert!(
        err.to_string().contains("got a control message: \"Done\""),
        "{err}"
    );
    // That frame was read whole; the next one is still in step.
    assert_eq!(a.recv_tensor_into(PATIENCE, &mut out).unwrap(), header);
    assert_eq!(out, vec![1; 8]);
}

#[test]
fn garbage_from_a_peer_is_a_frame_error() {
    let (client, mut server) = raw_pair();
    let mut conn = Connection::from_stream(client, "node1").unwrap();
    server.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let err = conn.recv_frame(PATIENCE).unwrap_err();
    assert!(
        matches!(
            &err,
            NetError::Frame {
                source: FrameError::BadMagic { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("node1 (127.0.0.1:"), "{err}");
}

#[test]
fn oversized_claim_is_refused_from_the_header_alone() {
    let (client, mut server) = raw_pair();
    let mut conn = Connection::from_stream(client, "node1").unwrap();
    let header = FrameHeader {
        kind: FrameKind::Tensor,
        len: u32::MAX,
        sealed: false,
    };
    server.write_all(&header.encode()).unwrap();
    // The payload never comes; the error must not wait for it.
    let start = Instant::now();
    let err = conn.recv_frame(PATIENCE).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(
            &err,
            NetError::Frame {
                source: FrameError::TooLarge { .. },
                ..
            }
        ),
        "{err:?}"
    );
    drop(server);
}

#[test]
fn wrong_version_frame_is_a_version_mismatch() {
    let (client, mut server) = raw_pair();
    let mut conn = Connection::from_stream(client, "node1").unwrap();
    let mut bytes = FrameHeader {
        kind: FrameKind::Control,
        len: 2,
        sealed: false,
    }
    .encode();
    bytes[4..6].copy_from_slice(&7u16.to_le_bytes());
    server.write_all(&bytes).unwrap();
    let err = conn.recv_frame(PATIENCE).unwrap_err();
    assert!(
        matches!(
            err,
            NetError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: 7,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn bad_json_is_a_bad_message() {
    let (mut a, mut b) = pair();
    b.send_frame(&Frame::Control(b"{not json".to_vec()))
        .unwrap();
    let err = a.recv_control::<Msg>(PATIENCE).unwrap_err();
    assert!(matches!(err, NetError::BadMessage { .. }), "{err:?}");
    assert!(err.to_string().starts_with("node1 (127.0.0.1:"), "{err}");
}

#[test]
fn sending_a_mismatched_tensor_is_refused_locally() {
    let (mut a, _b) = pair();
    let header = TensorHeader::new(TensorDtype::F32, &[3], 0).unwrap();
    let err = a.send_tensor(&header, &[0; 11]).unwrap_err();
    assert!(matches!(err, NetError::Encode { .. }), "{err:?}");
    assert!(err.to_string().contains("needs 12"), "{err}");
}

#[test]
fn connect_failure_names_the_peer() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Connection::connect(addr, "node3", Duration::from_secs(2)).unwrap_err();
    assert!(matches!(err, NetError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to node3 ({addr})")),
        "{err}"
    );
}

#[test]
fn connect_names_the_peer_with_its_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let conn = Connection::connect(addr, "node1", PATIENCE).unwrap();
    assert_eq!(conn.peer(), format!("node1 ({addr})"));
}
