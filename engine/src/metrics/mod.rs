//! Measurements of this process and this machine: memory now, memory and
//! loopback bandwidth probes, the quality of a run against a reference
//! run, the percentile every report uses, and the all-reduce's exchange
//! told apart from the skew between peers.

pub mod bandwidth;
mod exchange;
pub mod memory;
pub mod quality;
mod quantile;

pub use exchange::{split_exchanges, ExchangeSplit};
pub use quantile::quantile;
