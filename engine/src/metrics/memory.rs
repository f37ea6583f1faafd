//! Resident memory of this process and memory of the machine, as the
//! platform reports them ([`crate::platform`]); unknown figures are `None`
//! rather than guessed.

pub use crate::platform::{current_rss_bytes, peak_rss_bytes, system_memory_bytes};
