//! The bounded queue between front ends and the scheduler, with the
//! counters `:stats` and `/metrics` show.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::{ServeEvent, ServeFailure, ServeJob};

/// Returned by [`ServeQueue::push`] when `capacity` jobs already wait.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{capacity} requests are already waiting; try again later")]
pub struct QueueFull {
    pub capacity: usize,
}

/// Requests waiting, running and finished, as one snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ServeCounts {
    pub queued: u64,
    pub in_flight: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
}

#[derive(Default)]
struct Counters {
    in_flight: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
}

struct State {
    jobs: VecDeque<ServeJob>,
    closed: bool,
}

pub struct ServeQueue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    counters: Counters,
}

impl ServeQueue {
    /// A queue that holds at most `capacity` waiting jobs.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
            counters: Counters::default(),
        }
    }

    /// Queues `job`, or says why not when the queue is full or closed (the
    /// job is then dropped without a word to its sink).
    pub fn push(&self, job: ServeJob) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        if state.jobs.len() >= self.capacity {
            return Err(PushError::Full(QueueFull {
                capacity: self.capacity,
            }));
        }
        state.jobs.push_back(job);
        self.ready.notify_one();
        Ok(())
    }

    /// Stops taking jobs; those still waiting are told the server is going
    /// away, and the scheduler returns once its sequences finish.
    pub fn close(&self) {
        let waiting: Vec<ServeJob> = {
            let mut state = self.lock();
            state.closed = true;
            state.jobs.drain(..).collect()
        };
        self.ready.notify_all();
        for mut job in waiting {
            (job.sink)(ServeEvent::Failed(ServeFailure::ShuttingDown));
        }
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub fn counts(&self) -> ServeCounts {
        let c = &self.counters;
        ServeCounts {
            queued: self.lock().jobs.len() as u64,
            in_flight: c.in_flight.load(Ordering::Relaxed),
            done: c.done.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            prompt_tokens: c.prompt_tokens.load(Ordering::Relaxed),
            generated_tokens: c.generated_tokens.load(Ordering::Relaxed),
        }
    }

    /// Puts back a job taken but not admitted yet (no KV room for it now):
    /// it goes first next time, whatever the capacity.
    pub(super) fn put_back(&self, job: ServeJob) {
        self.lock().jobs.push_front(job);
    }

    /// The next job without waiting.
    pub(super) fn try_take(&self) -> Option<ServeJob> {
        self.lock().jobs.pop_front()
    }

    /// The next job, waiting up to `wait`; `Err(())` once closed and empty.
    pub(super) fn take(&self, wait: Duration) -> Result<Option<ServeJob>, ()> {
        let mut state = self.lock();
        if state.jobs.is_empty() && !state.closed {
            state = self
                .ready
                .wait_timeout(state, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        match state.jobs.pop_front() {
            Some(job) => Ok(Some(job)),
            None if state.closed => Err(()),
            None => Ok(None),
        }
    }

    pub(super) fn set_in_flight(&self, n: usize) {
        self.counters.in_flight.store(n as u64, Ordering::Relaxed);
    }

    pub(super) fn count_tokens(&self, prompt: usize, generated: usize) {
        let c = &self.counters;
        c.prompt_tokens.fetch_add(prompt as u64, Ordering::Relaxed);
        c.generated_tokens
            .fetch_add(generated as u64, Ordering::Relaxed);
    }

    pub(super) fn count_end(&self, end: JobEnd) {
        let c = &self.counters;
        match end {
            JobEnd::Done => &c.done,
            JobEnd::Failed => &c.failed,
            JobEnd::Cancelled => &c.cancelled,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking sink cannot leave the queue half-changed: every
        // change above is one push or pop.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why [`ServeQueue::push`] refused a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Full(QueueFull),
    #[error("the server is shutting down")]
    Closed,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum JobEnd {
    Done,
    Failed,
    Cancelled,
}
