//! `Connection` over transports other than a plain TCP stream: a test-only
//! Unix-socket transport (the seam), and the TCP dialer and listener.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use super::pipe::PipeTransport;
use super::PATIENCE;
use crate::net::frame::HEADER_LEN;
use crate::net::transport::{Listener, TcpConfig, TcpDialer, TcpTransportListener};
use crate::net::{Connection, Frame, LinkProfile, NetError, TensorDtype, TensorHeader};

fn pipe_pair() -> (Connection, Connection) {
    let (a, b) = PipeTransport::pair();
    (
        Connection::from_transport(Box::new(a), "node1").unwrap(),
        Connection::from_transport(Box::new(b), "coordinator").unwrap(),
    )
}

#[test]
fn control_and_tensors_cross_a_pipe_transport() {
    let (mut a, mut b) = pipe_pair();
    assert_eq!(a.transport_kind(), "pipe");
    assert_eq!(a.peer(), "node1", "no address to show");
    assert_eq!(a.peer_addr(), None);
    let header = TensorHeader::new(TensorDtype::F32, &[2, 3], 4).unwrap();
    let data: Vec<u8> = (0..24).collect();
    let echo = thread::spawn(move || {
        let text: String = b.recv_control(PATIENCE).unwrap();
        b.send_control(&format!("{text}!")).unwrap();
        let mut buf = Vec::new();
        let th = b.recv_tensor_into(PATIENCE, &mut buf).unwrap();
        b.send_tensor(&th, &buf).unwrap();
    });
    a.send_control(&"hello").unwrap();
    assert_eq!(a.recv_control::<String>(PATIENCE).unwrap(), "hello!");
    a.send_tensor(&header, &data).unwrap();
    let mut back = Vec::new();
    assert_eq!(a.recv_tensor_into(PATIENCE, &mut back).unwrap(), header);
    assert_eq!(back, data);
    echo.join().unwrap();
}

#[test]
fn a_receive_over_a_pipe_transport_ends_at_its_deadline() {
    let (mut a, mut b) = pipe_pair();
    let deadline = Duration::from_millis(200);
    let start = Instant::now();
    let err = a.recv_control::<String>(deadline).unwrap_err();
    assert!(matches!(err, NetError::Timeout { .. }), "{err:?}");
    assert!(start.elapsed() >= deadline, "returned early");
    assert!(err.to_string().starts_with("node1: timed out"), "{err}");
    // A timeout between frames leaves the connection usable.
    b.send_control(&"late").unwrap();
    assert_eq!(a.recv_control::<String>(PATIENCE).unwrap(), "late");
}

#[test]
fn a_stalled_frame_over_a_pipe_transport_breaks_the_receiving_side() {
    let (ours, theirs) = PipeTransport::pair();
    let mut conn = Connection::from_transport(Box::new(ours), "node1").unwrap();
    let mut raw = theirs.into_stream();
    let mut frame = Vec::new();
    Frame::Control(vec![b' '; 100]).encode(&mut frame).unwrap();
    raw.write_all(&frame[..HEADER_LEN + 10]).unwrap();
    let err = conn.recv_frame(Duration::from_millis(200)).unwrap_err();
    let NetError::Timeout { what, .. } = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert!(what.contains("10 of 100 bytes received"), "{what}");
    let again = conn.recv_frame(PATIENCE).unwrap_err();
    assert!(matches!(again, NetError::Broken { .. }), "{again:?}");
}

#[test]
fn a_closed_pipe_transport_is_closed_naming_the_peer() {
    let (mut a, mut b) = pipe_pair();
    b.close_write().unwrap();
    let err = a.recv_frame(PATIENCE).unwrap_err();
    assert!(
        matches!(&err, NetError::Closed { peer, partial: None, .. } if peer == "node1"),
        "{err:?}"
    );
    // The other direction still works after a half-close.
    a.send_control(&"still here").unwrap();
    assert_eq!(b.recv_control::<String>(PATIENCE).unwrap(), "still here");
}

#[test]
fn link_emulation_works_over_any_transport() {
    let (mut a, mut b) = pipe_pair();
    let profile: LinkProfile = "latency=20ms".parse().unwrap();
    a.emulate(Some(&profile)).unwrap();
    assert!(a.emulation().is_some());
    let started = Instant::now();
    for i in 0..3u32 {
        let h = TensorHeader::new(TensorDtype::Bytes, &[4], i).unwrap();
        a.send_tensor(&h, &[i as u8; 4]).unwrap();
    }
    a.close_write().unwrap();
    let mut buf = Vec::new();
    for i in 0..3u32 {
        assert_eq!(b.recv_tensor_into(PATIENCE, &mut buf).unwrap().tag(), i);
        assert_eq!(buf, vec![i as u8; 4]);
    }
    assert!(started.elapsed() >= Duration::from_millis(20));
    let end = b.recv_frame(PATIENCE).unwrap_err();
    assert!(matches!(end, NetError::Closed { .. }), "{end}");
}

#[test]
fn the_tcp_dialer_and_listener_make_connections() {
    let listener = TcpTransportListener::bind("127.0.0.1:0", TcpConfig::default()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let transport = listener.accept().unwrap();
        let mut conn = Connection::from_transport(transport, "coordinator").unwrap();
        let n: u32 = conn.recv_control(PATIENCE).unwrap();
        conn.send_control(&(n + 1)).unwrap();
    });
    let mut conn = Connection::dial(&TcpDialer::default(), addr, "node2", PATIENCE).unwrap();
    assert_eq!(conn.transport_kind(), "tcp");
    assert_eq!(conn.peer(), format!("node2 ({addr})"));
    conn.send_control(&41u32).unwrap();
    assert_eq!(conn.recv_control::<u32>(PATIENCE).unwrap(), 42);
    server.join().unwrap();
}

#[test]
fn a_tcp_receive_keeps_its_deadline_after_a_longer_one() {
    // The socket's read timeout is kept between reads while it fits the
    // time left: a short deadline after a long one must still end on time,
    // not wait out the hour the first receive allowed.
    let listener = TcpTransportListener::bind("127.0.0.1:0", TcpConfig::default()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let transport = listener.accept().unwrap();
        let mut conn = Connection::from_transport(transport, "coordinator").unwrap();
        conn.send_control(&1u32).unwrap();
        // Silent until the client has timed out, then one more message.
        done_rx.recv().unwrap();
        conn.send_control(&2u32).unwrap();
    });
    let mut conn = Connection::dial(&TcpDialer::default(), addr, "node2", PATIENCE).unwrap();
    let hour = Duration::from_secs(3600);
    assert_eq!(conn.recv_control::<u32>(hour).unwrap(), 1);
    let deadline = Duration::from_millis(200);
    let start = Instant::now();
    let err = conn.recv_control::<u32>(deadline).unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(err, NetError::Timeout { .. }), "{err:?}");
    assert!(waited >= deadline, "returned early");
    assert!(waited < Duration::from_secs(60), "waited {waited:?}");
    done_tx.send(()).unwrap();
    assert_eq!(conn.recv_control::<u32>(hour).unwrap(), 2);
    server.join().unwrap();
}
