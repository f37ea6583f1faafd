//! Heartbeats over real sockets: a peer that echoes keeps its working
//! connection; one that falls silent has it cut, naming the peer, while a
//! receive is blocked on it.

use std::thread;
use std::time::Duration;

use super::{pair, PATIENCE};
use crate::net::heartbeat::{answer, watch, Beat};
use crate::net::NetError;

const SILENCE: Duration = Duration::from_millis(300);

#[test]
fn a_peer_that_answers_keeps_its_connection_and_its_answerer_ends_with_the_watch() {
    // The working connection: this side waits on `work`, the peer holds `far`.
    let (mut work, mut far) = pair();
    let (beats, peer_beats) = pair();
    let answering = thread::spawn(move || answer(peer_beats));
    let w = watch(beats, work.cutter().unwrap(), SILENCE).unwrap();

    // Ten silences' worth of beats go by, and the working connection is
    // still fine: a reply sent late arrives.
    let late = thread::spawn(move || {
        thread::sleep(SILENCE * 10);
        far.send_control(&Beat { n: 7 }).unwrap();
        far
    });
    assert_eq!(
        work.recv_control::<Beat>(PATIENCE).unwrap(),
        Beat { n: 7 },
        "an answering peer is never cut"
    );
    assert_eq!(w.verdict(), None);
    let _far = late.join().unwrap();

    // Dropping the watch closes the heartbeat connection: the peer's
    // answering thread ends.
    drop(w);
    answering.join().unwrap();
}

#[test]
fn a_silent_peer_is_cut_while_a_receive_waits_on_it() {
    let (mut work, _far) = pair();
    // The peer reads the beats and never echoes (stopped, or cut off).
    let (beats, mut peer_beats) = pair();
    let mute = thread::spawn(move || while peer_beats.recv_frame(PATIENCE).is_ok() {});
    let w = watch(beats, work.cutter().unwrap(), SILENCE).unwrap();

    let err = work
        .recv_control::<Beat>(PATIENCE)
        .expect_err("the silent peer is cut");
    match &err {
        NetError::Cut { peer, reason } => {
            assert!(peer.starts_with("node1"), "{err}");
            assert!(reason.contains("stopped answering heartbeats"), "{err}");
        }
        other => panic!("expected a cut, got {other}"),
    }
    assert!(w.verdict().is_some());
    // Later use says the same, rather than a bare "closed".
    let again = work.send_control(&Beat { n: 1 }).expect_err("cut");
    assert!(again.to_string().contains("heartbeats"), "{again}");
    drop(w);
    mute.join().unwrap();
}

#[test]
fn a_closed_heartbeat_connection_cuts_nothing() {
    // A peer whose process ended closes its working connection too, which
    // says so itself; the heartbeat does not speak for it.
    let (mut work, mut far) = pair();
    let (beats, peer_beats) = pair();
    drop(peer_beats);
    let w = watch(beats, work.cutter().unwrap(), SILENCE).unwrap();
    thread::sleep(SILENCE * 3);
    assert_eq!(w.verdict(), None);
    far.send_control(&Beat { n: 2 }).unwrap();
    assert_eq!(work.recv_control::<Beat>(PATIENCE).unwrap(), Beat { n: 2 });
}
