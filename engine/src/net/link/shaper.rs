//! The sending half of an emulated link: frames are stamped with the time
//! they would arrive over the emulated link and a delivery thread writes
//! each to the transport (its [`FrameSink`]) when it is due.
//!
//! Why a thread and not a sleep in the sender: two frames sent back to back
//! share one latency, as on a real wire (the second waits only for the
//! first's serialization), and the sender goes back to computing at once,
//! as it would with a real socket buffer. Frames leave in the order they
//! were sent (jitter never reorders them: a frame is never due before the
//! one in front of it) and the queue holds at most [`QUEUE_BYTES`], past
//! which a sender waits, as it would on a full socket buffer.
//!
//! A write that fails in the delivery thread (the peer died, stopped
//! reading past the write timeout) is kept and returned by the next send,
//! so a dead peer is still reported; receives are not touched, so their
//! deadlines and end-of-stream work as without emulation.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::profile::LinkProfile;
use crate::net::transport::{FrameSink, SendFail};

/// Bytes queued on one emulated link before a sender waits (a generous
/// socket send buffer). One frame larger than this still goes, alone.
pub const QUEUE_BYTES: usize = 16 << 20;

/// Longest a dropped shaper waits for its queue to drain before leaving the
/// delivery thread to finish on its own.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

struct Pending {
    due: Instant,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    queued_bytes: usize,
    /// No more frames are coming; deliver what is queued and stop.
    closing: bool,
    /// The delivery thread has stopped.
    finished: bool,
    /// Why a delivery failed; the link is unusable from then on.
    failed: Option<SendFail>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only counters behind;
        // carrying on with them is better than poisoning every send.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One direction of one emulated link.
pub struct Shaper {
    profile: LinkProfile,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// When the emulated link finishes serializing the frames queued so far.
    link_free: Instant,
    /// When the last queued frame is due (no later frame may be due earlier).
    last_due: Instant,
    rng: u64,
}

impl std::fmt::Debug for Shaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shaper")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl Shaper {
    /// Starts the delivery thread, which writes to `sink` (the transport's
    /// second sending handle, sharing its write timeout).
    pub fn start(
        profile: LinkProfile,
        sink: Box<dyn FrameSink>,
        peer: &str,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!(
                "link to {}",
                peer.chars().take(40).collect::<String>()
            ))
            .spawn(move || deliver(&for_thread, sink))?;
        let now = Instant::now();
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = clock ^ (Arc::as_ptr(&shared) as u64);
        Ok(Self {
            profile,
            shared,
            thread: Some(thread),
            link_free: now,
            last_due: now,
            rng: seed | 1,
        })
    }

    pub fn profile(&self) -> &LinkProfile {
        &self.profile
    }

    /// Queues one whole frame, made of `parts`. Waits at most `patience`
    /// for room in the queue. A failed earlier delivery is returned as
    /// [`SendFail::Earlier`].
    pub fn send(&mut self, parts: &[IoSlice<'_>], patience: Duration) -> Result<(), SendFail> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut bytes = Vec::with_capacity(total);
        for p in parts {
            bytes.extend_from_slice(p);
        }
        let shared = self.shared.clone();
        let mut st = shared.lock();
        let give_up = Instant::now() + patience;
        loop {
            if let Some(failed) = &st.failed {
                return Err(SendFail::Earlier(Box::new(failed.duplicate())));
            }
            if st.queued_bytes == 0 || st.queued_bytes + total <= QUEUE_BYTES {
                break;
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SendFail::Backlog {
                    queued: st.queued_bytes,
                });
            }
            st = shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let due = self.due_time(total);
        st.queued_bytes += total;
        st.queue.push_back(Pending { due, bytes });
        shared.changed.notify_all();
        Ok(())
    }

    /// When a frame of `total` bytes sent now arrives at the far end.
    fn due_time(&mut self, total: usize) -> Instant {
        let now = Instant::now();
        let start = self.link_free.max(now);
        self.link_free = start + self.profile.serialization(total);
        let due = (self.link_free + self.delay()).max(self.last_due);
        self.last_due = due;
        due
    }

    /// Latency plus a uniform draw in ±jitter (netem's default
    /// distribution), never below zero.
    fn delay(&mut self) -> Duration {
        let base = self.profile.latency;
        let j = self.profile.jitter;
        if j.is_zero() {
            return base;
        }
        // xorshift64: statistical quality is irrelevant here, cost is not.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let u = (self.rng >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let offset = j.as_secs_f64() * (2.0 * u - 1.0);
        Duration::from_secs_f64((base.as_secs_f64() + offset).max(0.0))
    }

    /// Due times of the first two queued frames.
    #[cfg(test)]
    pub(crate) fn due_times_for_tests(&self) -> (Instant, Instant) {
        let st = self.shared.lock();
        let due = |i: usize| st.queue.get(i).map_or(self.last_due, |p| p.due);
        (due(0), due(1))
    }

    /// Delivers everything queued, then stops the thread. Returns the
    /// delivery error, if one happened. Waits at most `limit`.
    pub fn drain(mut self, limit: Duration) -> Result<(), SendFail> {
        self.finish(limit)
    }

    fn finish(&mut self, limit: Duration) -> Result<(), SendFail> {
        let shared = self.shared.clone();
        let mut st = shared.lock();
        st.closing = true;
        shared.changed.notify_all();
        let give_up = Instant::now() + limit;
        while !st.finished {
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // The thread finishes (or fails its write) on its own.
                self.thread = None;
                return Err(SendFail::Backlog {
                    queued: st.queued_bytes,
                });
            }
            st = shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let failed = st.failed.take();
        drop(st);
        if let Some(t) = self.thread.take() {
            // It has set `finished` and is returning.
            let _ = t.join();
        }
        match failed {
            Some(fail) => Err(SendFail::Earlier(Box::new(fail))),
            None => Ok(()),
        }
    }
}

impl Drop for Shaper {
    /// Frames already sent still arrive: a process that sends its last
    /// message and exits must not lose it to the emulation.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.finish(DRAIN_LIMIT);
        }
    }
}

/// The delivery thread: writes each frame when it is due.
fn deliver(shared: &Shared, mut sink: Box<dyn FrameSink>) {
    let mut st = shared.lock();
    loop {
        let Some(front) = st.queue.front() else {
            if st.closing {
                break;
            }
            st = shared.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let wait = front.due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            // Only ever woken early; frames behind this one are due later.
            st = shared
                .changed
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        let Some(frame) = st.queue.pop_front() else {
            continue;
        };
        drop(st);
        let written = sink.write_frame(&mut [IoSlice::new(&frame.bytes)]);
        st = shared.lock();
        st.queued_bytes -= frame.bytes.len();
        if let Err(fail) = written {
            st.failed = Some(fail);
            st.queue.clear();
            st.queued_bytes = 0;
            break;
        }
        shared.changed.notify_all();
    }
    st.finished = true;
    shared.changed.notify_all();
}
