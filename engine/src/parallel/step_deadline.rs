//! How long one step may keep a node waiting on its previous stage, or the
//! coordinator waiting on its nodes.
//!
//! The step deadline (`--step-timeout`, `SHARDLAB_STEP_TIMEOUT`) is sized
//! for a decode step, a row per sequence. A prefill step carries up to
//! `PREFILL_BATCH` rows, and on a slow host a stage can spend minutes on
//! them: the 8b's first stage of 17 layers took over a minute on one
//! 512-row step of a 4080-token prompt on a 2-core guest, and the next
//! stage, waiting 60 s, gave up on it. So a step gets one deadline per
//! [`ROWS_PER_DEADLINE`] rows. A node that died or stopped is still named
//! by heartbeats within their silence (1.5 s by default), whatever the
//! step's size; the deadline is the backstop for a peer that answers
//! beats but never sends, and for clusters run with heartbeats off.

use std::time::Duration;

/// Rows a step may carry per step deadline: a stage must keep up at least
/// this many rows per deadline (16 rows a minute by default).
pub const ROWS_PER_DEADLINE: usize = 16;

/// The deadline of a step of `rows` rows, from the decode step's `base`.
pub fn for_rows(base: Duration, rows: usize) -> Duration {
    let deadlines = rows.div_ceil(ROWS_PER_DEADLINE).max(1);
    base.saturating_mul(u32::try_from(deadlines).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_gets_one_deadline_per_sixteen_rows_and_never_less_than_one() {
        let base = Duration::from_secs(60);
        assert_eq!(for_rows(base, 0), base);
        assert_eq!(for_rows(base, 1), base);
        assert_eq!(for_rows(base, 16), base);
        assert_eq!(for_rows(base, 17), base * 2);
        assert_eq!(for_rows(base, 512), base * 32);
        assert_eq!(for_rows(Duration::MAX, 512), Duration::MAX, "saturates");
    }
}
