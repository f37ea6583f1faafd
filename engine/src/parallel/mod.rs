//! Collectives over peer connections: the all-reduce that follows every
//! row-parallel projection in a tensor group, and the hidden-state hand-off
//! between pipeline stages.
//!
//! The all-reduce is a direct exchange: every member sends its partial sums
//! to every other member and adds all partials **in rank order**, so every
//! member ends with bit-identical activations.

mod links;

pub use links::{f32_bytes, CommStats, PeerLinks};
