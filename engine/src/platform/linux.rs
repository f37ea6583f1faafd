//! Linux: /proc for memory and the host name, `taskset` for pinning.

use std::ffi::OsStr;
use std::process::Command;

pub(super) fn current_rss_bytes() -> Option<u64> {
    status_field("VmRSS:")
}

pub(super) fn peak_rss_bytes() -> Option<u64> {
    status_field("VmHWM:")
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kib_field(&status, name)
}

fn parse_kib_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `MemTotal` and `MemAvailable` from /proc/meminfo.
pub(super) fn system_memory_bytes() -> Option<(u64, u64)> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some((
        parse_kib_field(&info, "MemTotal:")?,
        parse_kib_field(&info, "MemAvailable:")?,
    ))
}

pub(super) fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string())
}

/// `taskset -c first-last exe` (util-linux).
pub(super) fn pinned_command(exe: &OsStr, first: usize, last: usize) -> Result<Command, String> {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(format!("{first}-{last}")).arg(exe);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kib_lines() {
        let s = "Name:\tx\nVmHWM:\t  1234 kB\nVmRSS:\t 99 kB\n";
        assert_eq!(parse_kib_field(s, "VmHWM:"), Some(1234 * 1024));
        assert_eq!(parse_kib_field(s, "VmRSS:"), Some(99 * 1024));
        assert_eq!(parse_kib_field(s, "VmSwap:"), None);
    }

    #[test]
    fn pins_with_taskset() {
        let c = pinned_command(OsStr::new("/bin/true"), 2, 3).unwrap();
        assert_eq!(c.get_program(), "taskset");
        let args: Vec<_> = c.get_args().collect();
        assert_eq!(args, ["-c", "2-3", "/bin/true"]);
    }
}
