//! Measurements of this process and this machine: memory now, memory and
//! loopback bandwidth probes, and the percentile every report uses.

pub mod bandwidth;
pub mod memory;
mod quantile;

pub use quantile::quantile;
