//! Platforms without an implementation: figures unknown, no pinning.

use std::ffi::OsStr;
use std::process::Command;

pub(super) fn current_rss_bytes() -> Option<u64> {
    None
}

pub(super) fn peak_rss_bytes() -> Option<u64> {
    None
}

pub(super) fn system_memory_bytes() -> Option<(u64, u64)> {
    None
}

pub(super) fn hostname() -> Option<String> {
    None
}

pub(super) fn pinned_command(_exe: &OsStr, _first: usize, _last: usize) -> Result<Command, String> {
    Err("core pinning is not implemented on this platform; run without pinning".into())
}
