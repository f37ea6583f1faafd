//! Resident memory of this process, from /proc (Linux). Elsewhere the
//! figures are reported as unknown rather than guessed.

/// Current resident set size in bytes (`VmRSS`).
pub fn current_rss_bytes() -> Option<u64> {
    status_field("VmRSS:")
}

/// Peak resident set size in bytes (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
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

/// Total and available memory of the machine in bytes (`/proc/meminfo`).
pub fn system_memory_bytes() -> Option<(u64, u64)> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some((
        parse_kib_field(&info, "MemTotal:")?,
        parse_kib_field(&info, "MemAvailable:")?,
    ))
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
    fn this_process_has_a_resident_set() {
        let rss = current_rss_bytes().unwrap_or(0);
        assert!(rss > 0);
        assert!(peak_rss_bytes().unwrap_or(0) >= rss);
    }
}
