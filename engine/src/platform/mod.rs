//! What the engine asks of the operating system beyond std: this process's
//! resident memory, the machine's memory, its host name, and starting a
//! process pinned to cores. Linux answers from /proc and `taskset`
//! (`linux.rs`), macOS from Mach and sysctl (`macos.rs`); anywhere else the
//! figures are unknown (`None`) rather than guessed, and pinning is refused
//! with a reason.

use std::ffi::OsStr;
use std::process::Command;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod other;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
use other as os;

/// Current resident set size of this process in bytes.
pub fn current_rss_bytes() -> Option<u64> {
    os::current_rss_bytes()
}

/// Peak resident set size of this process in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    os::peak_rss_bytes()
}

/// The size of a memory page in bytes (4 KiB on x86-64 Linux, 16 KiB on
/// Apple Silicon).
#[cfg(unix)]
pub fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Total and available memory of the machine in bytes.
pub fn system_memory_bytes() -> Option<(u64, u64)> {
    os::system_memory_bytes()
}

/// This machine's host name.
pub fn hostname() -> Option<String> {
    os::hostname()
}

/// A command that runs `exe` on cores `first..=last` only, or why this
/// platform cannot pin.
pub fn pinned_command(exe: &OsStr, first: usize, last: usize) -> Result<Command, String> {
    os::pinned_command(exe, first, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_set() {
        let rss = current_rss_bytes().unwrap_or(0);
        assert!(rss > 0);
        assert!(peak_rss_bytes().unwrap_or(0) >= rss);
    }

    #[test]
    fn this_machine_has_memory_and_a_name() {
        let (total, available) = system_memory_bytes().expect("memory figures");
        assert!(total > 0 && available <= total, "{total} {available}");
        assert!(!hostname().expect("a host name").is_empty());
    }
}
