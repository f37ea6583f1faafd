//! Emulated links over real sockets: latency and bandwidth are lower bounds
//! (sleeping makes them deterministic), frames keep their order under
//! jitter, and dead peers, full queues and closes still surface.

use std::time::{Duration, Instant};

use super::{pair, PATIENCE};
use crate::net::link::Shaper;
use crate::net::transport::{TcpConfig, TcpTransport};
use crate::net::{LinkProfile, NetError, TensorDtype, TensorHeader};

fn profile(spec: &str) -> LinkProfile {
    spec.parse().unwrap()
}

fn bytes_header(n: usize, tag: u32) -> TensorHeader {
    TensorHeader::new(TensorDtype::Bytes, &[n as u64], tag).unwrap()
}

#[test]
fn a_frame_arrives_no_sooner_than_the_latency() {
    let (mut a, mut b) = pair();
    a.emulate(Some(&profile("latency=30ms"))).unwrap();
    assert_eq!(a.emulation().map(|p| p.name.as_str()), Some("custom"));
    let started = Instant::now();
    for i in 0..5u32 {
        a.send_tensor(&bytes_header(16, i), &[i as u8; 16]).unwrap();
    }
    let mut buf = Vec::new();
    for i in 0..5u32 {
        let h = b.recv_tensor_into(PATIENCE, &mut buf).unwrap();
        assert_eq!(h.tag(), i);
        assert_eq!(buf, vec![i as u8; 16]);
    }
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[test]
fn back_to_back_frames_share_one_latency() {
    // Due times are computed, not slept: two frames queued together are due
    // within their serialization of each other, not a latency apart.
    let (raw, _keep) = super::raw_pair();
    let sink = Box::new(TcpTransport::new(raw, TcpConfig::default()).unwrap());
    let mut shaper = Shaper::start(profile("latency=1s,bandwidth=8mbit"), sink, "test").unwrap();
    let frame = [0u8; 1000]; // 1 ms at 8 Mbit/s
    let parts = [std::io::IoSlice::new(&frame)];
    let first = Instant::now();
    shaper.send(&parts, PATIENCE).unwrap();
    shaper.send(&parts, PATIENCE).unwrap();
    let (d1, d2) = shaper.due_times_for_tests();
    assert!(d1 >= first + Duration::from_secs(1));
    let gap = d2.saturating_duration_since(d1);
    assert!(gap >= Duration::from_millis(1), "{gap:?}");
    assert!(gap < Duration::from_millis(500), "{gap:?}");
}

#[test]
fn a_transfer_takes_at_least_bytes_over_bandwidth() {
    let (mut a, mut b) = pair();
    a.emulate(Some(&profile("bandwidth=80mbit"))).unwrap();
    let data = vec![7u8; 1_000_000]; // 8 Mbit: 100 ms at 80 Mbit/s
    let started = Instant::now();
    a.send_tensor(&bytes_header(data.len(), 1), &data).unwrap();
    let mut buf = Vec::new();
    b.recv_tensor_into(PATIENCE, &mut buf).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(buf, data);
}

#[test]
fn jitter_never_reorders_or_loses_frames() {
    let (mut a, mut b) = pair();
    a.emulate(Some(&profile("latency=1ms,jitter=1ms,bandwidth=1gbit")))
        .unwrap();
    let receiver = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut tags = Vec::new();
        for _ in 0..300 {
            let h = b.recv_tensor_into(PATIENCE, &mut buf).unwrap();
            assert_eq!(buf.len(), 64 + h.tag() as usize % 7);
            assert!(buf.iter().all(|&x| x == h.tag() as u8));
            tags.push(h.tag());
        }
        tags
    });
    for i in 0..300u32 {
        let n = 64 + i as usize % 7;
        a.send_tensor(&bytes_header(n, i), &vec![i as u8; n])
            .unwrap();
    }
    let tags = receiver.join().unwrap();
    assert_eq!(tags, (0..300).collect::<Vec<u32>>());
}

#[test]
fn switching_emulation_off_keeps_the_order() {
    let (mut a, mut b) = pair();
    a.emulate(Some(&profile("latency=20ms"))).unwrap();
    a.send_tensor(&bytes_header(4, 1), &[1; 4]).unwrap();
    a.emulate(None).unwrap();
    assert!(a.emulation().is_none());
    a.send_tensor(&bytes_header(4, 2), &[2; 4]).unwrap();
    let mut buf = Vec::new();
    assert_eq!(b.recv_tensor_into(PATIENCE, &mut buf).unwrap().tag(), 1);
    assert_eq!(b.recv_tensor_into(PATIENCE, &mut buf).unwrap().tag(), 2);
}

#[test]
fn close_write_delivers_what_is_queued_then_ends_the_stream() {
    let (mut a, mut b) = pair();
    a.emulate(Some(&profile("latency=20ms"))).unwrap();
    for i in 0..3u32 {
        a.send_tensor(&bytes_header(8, i), &[0; 8]).unwrap();
    }
    a.close_write().unwrap();
    let mut buf = Vec::new();
    for i in 0..3u32 {
        assert_eq!(b.recv_tensor_into(PATIENCE, &mut buf).unwrap().tag(), i);
    }
    let end = b.recv_tensor_into(PATIENCE, &mut buf).unwrap_err();
    assert!(matches!(end, NetError::Closed { .. }), "{end}");
}

#[test]
fn a_dead_peer_is_still_detected() {
    let (mut a, b) = pair();
    a.emulate(Some(&profile("latency=1ms"))).unwrap();
    drop(b);
    // The first writes after the peer's close can still succeed (the
    // kernel learns of it from the reply); a later send must fail.
    let mut failure = None;
    for i in 0..200u32 {
        if let Err(e) = a.send_tensor(&bytes_header(1024, i), &[0; 1024]) {
            failure = Some(e);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let e = failure.expect("a send to a dead peer fails within 200 tries");
    assert!(
        matches!(e, NetError::Closed { .. } | NetError::Io { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("node1"), "names the peer: {e}");
}

#[test]
fn a_peer_that_stops_reading_times_out() {
    let (mut a, _b) = pair();
    a.set_write_timeout(Duration::from_millis(200)).unwrap();
    a.emulate(Some(&profile("latency=1ms"))).unwrap();
    let chunk = vec![0u8; 4 << 20];
    let mut failure = None;
    for i in 0..40u32 {
        if let Err(e) = a.send_tensor(&bytes_header(chunk.len(), i), &chunk) {
            failure = Some(e);
            break;
        }
    }
    let e = failure.expect("sends to a peer that never reads fail within 160 MiB");
    assert!(matches!(e, NetError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("not reading"), "{e}");
    // The connection now refuses further sends instead of misframing.
    let again = a.send_tensor(&bytes_header(1, 0), &[0]).unwrap_err();
    assert!(matches!(again, NetError::Broken { .. }), "{again}");
}
