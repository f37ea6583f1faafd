//! What a link to emulate looks like: one-way latency, jitter and
//! bandwidth, written `latency=200us,bandwidth=10gbit,jitter=20us` or
//! named (`tb5`, `10gbe`, `1gbe`, `wifi`), optionally with overrides
//! (`wifi,latency=5ms`). Sources for the named figures are in
//! docs/LINKS.md.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A link as netem would model it: a frame of n bytes occupies the link
/// for n*8/bandwidth, then arrives `latency` (plus or minus up to
/// `jitter`) later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkProfile {
    /// The named profile it started from, or "custom".
    pub name: String,
    /// One-way delay added to every frame.
    pub latency: Duration,
    /// Each frame's delay varies uniformly within `latency ± jitter`.
    pub jitter: Duration,
    /// Bits per second; 0 means no limit beyond the real link's.
    pub bandwidth_bps: u64,
}

/// A named profile: its spec and one line on what it stands for.
pub struct NamedProfile {
    pub name: &'static str,
    pub spec: &'static str,
    pub about: &'static str,
}

/// The named profiles. Figures and their sources: docs/LINKS.md.
pub const PROFILES: &[NamedProfile] = &[
    NamedProfile {
        name: "tb5",
        spec: "latency=150us,jitter=20us,bandwidth=80gbit",
        about: "Thunderbolt 5 cable between two machines, TCP over the Thunderbolt bridge",
    },
    NamedProfile {
        name: "10gbe",
        spec: "latency=25us,jitter=5us,bandwidth=9400mbit",
        about: "10 Gigabit Ethernet through one switch",
    },
    NamedProfile {
        name: "1gbe",
        spec: "latency=60us,jitter=10us,bandwidth=940mbit",
        about: "Gigabit Ethernet through one switch",
    },
    NamedProfile {
        name: "wifi",
        spec: "latency=2ms,jitter=1ms,bandwidth=400mbit",
        about: "two laptops on one Wi-Fi 6 access point (each frame crosses the air twice)",
    },
];

/// Why a link spec was refused; every variant names the offending piece.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkSpecError {
    #[error("an empty link spec: give a profile ({}) or key=value pairs, e.g. latency=200us,bandwidth=10gbit", names())]
    Empty,
    #[error("unknown link profile '{0}' (profiles: {known}; or key=value pairs: latency, jitter, bandwidth)", known = names())]
    UnknownProfile(String),
    #[error("'{item}': a profile name may only come first; later items are key=value")]
    MisplacedName { item: String },
    #[error("'{key}': unknown key, expected latency, jitter or bandwidth")]
    UnknownKey { key: String },
    #[error("'{key}' is given twice")]
    Repeated { key: String },
    #[error("{key}={value}: {problem}")]
    BadValue {
        key: String,
        value: String,
        problem: String,
    },
}

fn names() -> String {
    PROFILES
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl LinkProfile {
    /// Parses a spec; `off` and `none` mean "no emulation" (`Ok(None)`).
    pub fn parse_or_off(spec: &str) -> Result<Option<Self>, LinkSpecError> {
        match spec.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(None),
            _ => spec.parse().map(Some),
        }
    }

    /// The named profile `name`, if there is one.
    pub fn named(name: &str) -> Option<Self> {
        let p = PROFILES
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))?;
        let mut profile = Self::unlimited(p.name);
        // The built-in specs are constants checked by a test.
        apply_pairs(&mut profile, p.spec).ok()?;
        Some(profile)
    }

    fn unlimited(name: &str) -> Self {
        Self {
            name: name.to_string(),
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            bandwidth_bps: 0,
        }
    }

    /// How long `bytes` occupy the link (zero when unlimited).
    pub fn serialization(&self, bytes: usize) -> Duration {
        if self.bandwidth_bps == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(bytes as f64 * 8.0 / self.bandwidth_bps as f64)
    }

    /// e.g. `wifi (latency 2 ms ± 1 ms, 400 Mbit/s)`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("latency {}", show_duration(self.latency))];
        if !self.jitter.is_zero() {
            parts[0].push_str(&format!(" ± {}", show_duration(self.jitter)));
        }
        parts.push(if self.bandwidth_bps == 0 {
            "unlimited bandwidth".to_string()
        } else {
            show_rate(self.bandwidth_bps)
        });
        format!("{} ({})", self.name, parts.join(", "))
    }
}

impl std::str::FromStr for LinkProfile {
    type Err = LinkSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(LinkSpecError::Empty);
        }
        let (first, rest) = spec.split_once(',').unwrap_or((spec, ""));
        let first = first.trim();
        if first.contains('=') {
            let mut p = Self::unlimited("custom");
            apply_pairs(&mut p, spec)?;
            return Ok(p);
        }
        let mut p =
            Self::named(first).ok_or_else(|| LinkSpecError::UnknownProfile(first.to_string()))?;
        if !rest.trim().is_empty() {
            // Overrides start from the profile's figures but may repeat its keys.
            let mut custom = p.clone();
            apply_pairs(&mut custom, rest)?;
            custom.name = format!("{}*", p.name);
            p = custom;
        }
        Ok(p)
    }
}

/// Applies `key=value,...` to `p`; a key may appear once per call.
fn apply_pairs(p: &mut LinkProfile, pairs: &str) -> Result<(), LinkSpecError> {
    let mut seen: Vec<&str> = Vec::new();
    for item in pairs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(if LinkProfile::named(item).is_some() {
                LinkSpecError::MisplacedName {
                    item: item.to_string(),
                }
            } else {
                LinkSpecError::UnknownKey {
                    key: item.to_string(),
                }
            });
        };
        let (key, value) = (key.trim(), value.trim());
        let canonical = match key.to_ascii_lowercase().as_str() {
            "latency" | "delay" => "latency",
            "jitter" => "jitter",
            "bandwidth" | "rate" => "bandwidth",
            _ => {
                return Err(LinkSpecError::UnknownKey {
                    key: key.to_string(),
                })
            }
        };
        if seen.contains(&canonical) {
            return Err(LinkSpecError::Repeated {
                key: canonical.to_string(),
            });
        }
        seen.push(canonical);
        let bad = |problem: String| LinkSpecError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            problem,
        };
        match canonical {
            "latency" => p.latency = parse_duration(value).map_err(bad)?,
            "jitter" => p.jitter = parse_duration(value).map_err(bad)?,
            _ => p.bandwidth_bps = parse_rate(value).map_err(bad)?,
        }
    }
    Ok(())
}

/// Splits `12.5ms` into (12.5, "ms").
fn split_number(value: &str) -> Result<(f64, String), String> {
    let at = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (num, unit) = value.split_at(at);
    if num.is_empty() {
        return Err("missing value, expected a number and a unit".to_string());
    }
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{num}' is not a number"))?;
    Ok((n, unit.trim().to_ascii_lowercase()))
}

const DURATION_UNITS: &str = "ns/us/ms/s";
const RATE_UNITS: &str = "bit/kbit/mbit/gbit";

fn parse_duration(value: &str) -> Result<Duration, String> {
    let (n, unit) = split_number(value)?;
    let scale = match unit.as_str() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "" => return Err(format!("missing unit, expected {DURATION_UNITS}")),
        other => return Err(format!("unknown unit '{other}', expected {DURATION_UNITS}")),
    };
    let secs = n * scale;
    if secs > 60.0 {
        return Err("over a minute is not a link".to_string());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_rate(value: &str) -> Result<u64, String> {
    let (n, unit) = split_number(value)?;
    let scale = match unit.as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "" => return Err(format!("missing unit, expected {RATE_UNITS}")),
        other => return Err(format!("unknown unit '{other}', expected {RATE_UNITS}")),
    };
    let bps = (n * scale).round();
    if bps < 1000.0 {
        return Err("under 1 kbit/s is too slow to emulate".to_string());
    }
    if bps > 1e13 {
        return Err("over 10 Tbit/s is faster than any link here".to_string());
    }
    Ok(bps as u64)
}

fn show_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{} ms", trim(us / 1000.0))
    } else {
        format!("{} µs", trim(us))
    }
}

fn show_rate(bps: u64) -> String {
    let b = bps as f64;
    if b >= 1e9 {
        format!("{} Gbit/s", trim(b / 1e9))
    } else if b >= 1e6 {
        format!("{} Mbit/s", trim(b / 1e6))
    } else {
        format!("{} kbit/s", trim(b / 1e3))
    }
}

/// 2.50 -> "2.5", 2.00 -> "2".
fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<LinkProfile, String> {
        s.parse::<LinkProfile>().map_err(|e| e.to_string())
    }

    #[test]
    fn every_named_profile_parses() {
        for p in PROFILES {
            let got = LinkProfile::named(p.name).unwrap_or_else(|| panic!("{} parses", p.name));
            assert_eq!(got.name, p.name);
            assert!(got.bandwidth_bps > 0, "{}", p.name);
            assert!(!got.latency.is_zero(), "{}", p.name);
        }
        let wifi = parse("WiFi").unwrap();
        assert_eq!(wifi.latency, Duration::from_millis(2));
        assert_eq!(wifi.jitter, Duration::from_millis(1));
        assert_eq!(wifi.bandwidth_bps, 400_000_000);
        assert_eq!(wifi.describe(), "wifi (latency 2 ms ± 1 ms, 400 Mbit/s)");
    }

    #[test]
    fn key_value_specs_parse() {
        let p = parse("latency=200us,bandwidth=10gbit,jitter=1.5ms").unwrap();
        assert_eq!(p.name, "custom");
        assert_eq!(p.latency, Duration::from_micros(200));
        assert_eq!(p.jitter, Duration::from_micros(1500));
        assert_eq!(p.bandwidth_bps, 10_000_000_000);
        assert_eq!(p.describe(), "custom (latency 200 µs ± 1.5 ms, 10 Gbit/s)");
        let only = parse(" delay=2ms ").unwrap();
        assert_eq!(only.bandwidth_bps, 0);
        assert_eq!(
            only.describe(),
            "custom (latency 2 ms, unlimited bandwidth)"
        );
        let over = parse("1gbe,latency=5ms").unwrap();
        assert_eq!(over.name, "1gbe*");
        assert_eq!(over.latency, Duration::from_millis(5));
        assert_eq!(over.bandwidth_bps, 940_000_000);
        assert_eq!(LinkProfile::parse_or_off("off"), Ok(None));
        assert_eq!(LinkProfile::parse_or_off("None"), Ok(None));
    }

    #[test]
    fn bad_specs_name_the_bad_piece() {
        let cases = [
            (
                "bandwidth=10gbt",
                "bandwidth=10gbt: unknown unit 'gbt', expected bit/kbit/mbit/gbit",
            ),
            ("latency=5", "latency=5: missing unit, expected ns/us/ms/s"),
            ("latency=fast", "latency=fast: missing value"),
            (
                "latency=1.2.3ms",
                "latency=1.2.3ms: '1.2.3' is not a number",
            ),
            ("latency=2min", "latency=2min: unknown unit 'min'"),
            (
                "loss=1%",
                "'loss': unknown key, expected latency, jitter or bandwidth",
            ),
            ("latency=1ms,delay=2ms", "'latency' is given twice"),
            (
                "latency=1ms,wifi",
                "'wifi': a profile name may only come first",
            ),
            (
                "lan",
                "unknown link profile 'lan' (profiles: tb5, 10gbe, 1gbe, wifi",
            ),
            ("", "an empty link spec"),
            ("bandwidth=10bit", "bandwidth=10bit: under 1 kbit/s"),
            ("latency=90s", "latency=90s: over a minute"),
        ];
        for (spec, want) in cases {
            let got = parse(spec).unwrap_err();
            assert!(
                got.starts_with(want),
                "{spec}: got '{got}', want '{want}...'"
            );
        }
    }

    #[test]
    fn serialization_time_follows_the_bandwidth() {
        let p = parse("bandwidth=8mbit").unwrap();
        assert_eq!(p.serialization(1_000_000), Duration::from_secs(1));
        assert_eq!(
            parse("latency=1ms").unwrap().serialization(1 << 20),
            Duration::ZERO
        );
    }
}
