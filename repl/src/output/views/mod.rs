//! The engine's typed reports drawn as this crate's structured output
//! (tables and timelines), one file per report. Measured values are marked
//! as [`Varies`](super::Varies) so transcripts replay; addresses and paths
//! inside engine messages are masked with the session's [`Literals`].

mod bench;
mod discovery;
mod links;
mod nodes;
mod plan;
mod rank;
pub mod speed;
mod stats;
mod trace;

pub use bench::bench;
pub use discovery::discovery;
pub use links::links;
pub use nodes::nodes;
pub use plan::plan;
pub use rank::rank;
pub use stats::stats;
pub use trace::trace;

use super::Varies;

/// Text that varies between runs (node addresses, the model's path, the
/// shardlab home), to mask inside messages built by the engine.
pub type Literals = [(String, Varies)];

/// "0..6", or "-" for an empty range.
pub(crate) fn range(r: &std::ops::Range<usize>) -> String {
    if r.is_empty() {
        "-".into()
    } else {
        format!("{}..{}", r.start, r.end)
    }
}
