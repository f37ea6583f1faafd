//! Measurements of this process: memory now. Per-step spans and cluster
//! snapshots join this module with the cluster work.

pub mod bandwidth;
pub mod memory;
