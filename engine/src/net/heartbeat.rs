//! Liveness: a heartbeat on a connection of its own beside each working
//! connection (coordinator to node, node to peer).
//!
//! The working connections are blocking and owned by one thread at a
//! time, and a long prefill can keep a node from reading or writing them
//! for many seconds, so silence on them proves nothing. A second
//! connection to the same peer carries only [`Beat`]s: the watching side
//! sends one every `silence / 6`, and the peer's listener echoes it from a
//! thread of its own, which answers however busy the peer's compute is.
//! When no echo has come for `silence`, the peer is hung (stopped, or its
//! link cut): the watcher cuts the working connection through a
//! [`LinkCutter`], so whatever waits on it fails at once with
//! [`NetError::Cut`] naming the peer, instead of at the step deadline.
//!
//! A heartbeat connection that closes cuts nothing: a peer whose process
//! ended closes its working connection too, and that says so itself.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::transport::Cut;
use super::{Connection, NetError};

/// How long a peer may stay silent before it is named: under the 2 s a
/// person waits for, well over what a loaded 2-core host takes to wake a
/// sleeping thread.
pub const DEFAULT_SILENCE: Duration = Duration::from_millis(1500);

/// An answering side gives up on a heartbeat connection that has not
/// beaten for this long (its watcher is gone without closing it).
const ANSWER_IDLE: Duration = Duration::from_secs(120);

/// The one message on a heartbeat connection, both ways: the watcher sends
/// `n`, the peer echoes it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Beat {
    pub n: u64,
}

/// The time between beats for a given silence: six beats fit in it, so
/// one late echo alone never names a peer.
pub fn interval(silence: Duration) -> Duration {
    (silence / 6).max(Duration::from_millis(10))
}

/// Cuts one connection from another thread, leaving the reason its
/// failures will give.
#[derive(Clone)]
pub struct LinkCutter {
    cut: Arc<dyn Cut>,
    reason: Arc<OnceLock<String>>,
}

impl LinkCutter {
    pub(crate) fn new(cut: Box<dyn Cut>, reason: Arc<OnceLock<String>>) -> Self {
        LinkCutter {
            cut: Arc::from(cut),
            reason,
        }
    }

    /// Cuts the connection; the first reason given is the one reported.
    pub fn cut(&self, reason: impl Into<String>) {
        let _ = self.reason.set(reason.into());
        self.cut.cut();
    }

    /// Why the connection was cut, once it was.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }
}

/// A running watcher. Dropping it stops the beats and closes the heartbeat
/// connection (the peer's answering thread then ends too).
pub struct Watch {
    _stop: Sender<()>,
    beats: LinkCutter,
    target: LinkCutter,
}

impl Watch {
    /// Why the watched connection was cut, once it was.
    pub fn verdict(&self) -> Option<&str> {
        self.target.reason()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // Wakes a watcher waiting for an echo, so it lets go of the
        // watched socket now rather than after the silence.
        self.beats.cut("the watch ended");
    }
}

/// Watches the peer at the other end of `beats` (an authenticated
/// heartbeat connection) and cuts `target` when it falls silent for
/// `silence`.
pub fn watch(beats: Connection, target: LinkCutter, silence: Duration) -> Result<Watch, NetError> {
    let beats_cutter = beats.cutter()?;
    let peer = beats.peer().to_string();
    let (stop_tx, stop_rx) = channel();
    let watched = target.clone();
    std::thread::Builder::new()
        .name(format!("heartbeat {peer}"))
        .spawn(move || run_watch(beats, &watched, silence, &stop_rx))
        .map_err(|source| NetError::Io {
            peer,
            op: "start the heartbeat thread",
            source,
        })?;
    Ok(Watch {
        _stop: stop_tx,
        beats: beats_cutter,
        target,
    })
}

fn run_watch(mut beats: Connection, target: &LinkCutter, silence: Duration, stop: &Receiver<()>) {
    let every = interval(silence);
    let mut heard = Instant::now();
    for n in 1.. {
        if beats.send_control(&Beat { n }).is_err() {
            return;
        }
        loop {
            let left = (heard + silence).saturating_duration_since(Instant::now());
            match beats.recv_control::<Beat>(left) {
                Ok(echo) if echo.n == n => {
                    heard = Instant::now();
                    break;
                }
                // A late echo of an earlier beat: keep waiting for this one.
                Ok(_) => {}
                Err(NetError::Timeout { .. }) => {
                    target.cut(format!(
                        "stopped answering heartbeats (silent for {:.1} s)",
                        silence.as_secs_f64()
                    ));
                    return;
                }
                Err(_) => return,
            }
        }
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// Echoes every beat on `beats` until it closes or stays idle too long;
/// runs on its own thread, so a busy peer still answers.
pub fn answer(mut beats: Connection) {
    while let Ok(beat) = beats.recv_control::<Beat>(ANSWER_IDLE) {
        if beats.send_control(&beat).is_err() {
            return;
        }
    }
}
