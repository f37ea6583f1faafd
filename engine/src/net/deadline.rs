//! The span of one receive (or of a whole handshake).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    start: Instant,
    end: Instant,
}

impl Deadline {
    pub(crate) fn after(budget: Duration) -> Self {
        let start = Instant::now();
        // An absurd budget (Duration::MAX) means "a very long time", not a panic.
        let end = start
            .checked_add(budget)
            .or_else(|| start.checked_add(Duration::from_secs(100 * 365 * 86_400)))
            .unwrap_or(start);
        Deadline { start, end }
    }

    /// The instant by which the receive must be done.
    pub(crate) fn end(&self) -> Instant {
        self.end
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}
