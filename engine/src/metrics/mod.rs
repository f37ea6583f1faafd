//! Measurements of this process and this machine: memory now, memory and
//! loopback bandwidth probes, the quality of a run against a reference
//! run, and the percentile every report uses.

pub mod bandwidth;
pub mod memory;
pub mod quality;
mod quantile;

pub use quantile::quantile;
