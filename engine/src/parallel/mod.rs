//! Collectives over peer connections: the all-reduce that follows every
//! row-parallel projection in a tensor group, and the hidden-state hand-off
//! between pipeline stages, each at the session's wire precision.
//!
//! The all-reduce is a direct exchange: every member sends its partial sums
//! to every other member (one frame per peer per collective) and adds all
//! partials **in rank order**, so every member ends with bit-identical
//! activations.
//!
//! Peers are [`crate::net::Connection`]s, so the collectives run over
//! whatever transport those were made on (TCP today) and any link emulation
//! set on them; nothing here touches a socket.

mod links;
pub mod step_deadline;
mod wire;

#[cfg(test)]
mod tests;

pub use links::{f32_bytes, CommStats, PeerLinks};
pub use wire::{decode_partials, encode_partials, WireDtype};
