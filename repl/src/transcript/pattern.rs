//! Placeholders in expected output: `{time}`, `{bytes}`... each stands for
//! one value of its kind, so a line written by hand (or kept from an older
//! run) still matches when the measured values change.

use regex::Regex;

use crate::output::Varies;

/// What each placeholder accepts. A replayed session prints placeholders
/// itself where it knows a value varies, so each also accepts itself.
fn pattern(kind: Varies) -> &'static str {
    match kind {
        Varies::Int => r"-?[0-9]+",
        Varies::Float => r"-?[0-9]+(?:\.[0-9]+)?(?:%|x)?|-",
        // "85 ms", and percentile pairs "85 ms / 1.20 s".
        Varies::Time => r"[0-9.]+ ?(?:ns|µs|us|ms|s|min)(?: / [0-9.]+ ?(?:ns|µs|us|ms|s|min))?",
        Varies::Bytes => r"[0-9.]+ ?(?:B|KiB|MiB|GiB|TiB|kB|KB|MB|GB)",
        Varies::Rate => r"[0-9.]+ ?(?:tok/s|B/s|MB/s|GB/s|MiB/s)",
        Varies::Addr => r"[^\s()]+:[0-9]+",
        Varies::Path => r".+?",
        Varies::Bars | Varies::Any => r".*?",
    }
}

/// An expected line compiled for matching; `None` when it has no
/// placeholder and is compared as plain text.
pub struct LinePattern {
    text: String,
    regex: Option<Regex>,
}

impl LinePattern {
    pub fn new(expected: &str) -> Self {
        LinePattern {
            text: expected.to_string(),
            regex: compile(expected),
        }
    }

    pub fn matches(&self, actual: &str) -> bool {
        actual == self.text || self.regex.as_ref().is_some_and(|r| r.is_match(actual))
    }
}

fn compile(expected: &str) -> Option<Regex> {
    let mut re = String::from("^");
    let mut rest = expected;
    let mut any = false;
    while let Some(open) = rest.find('{') {
        let found = Varies::ALL
            .iter()
            .find(|k| rest[open..].starts_with(&k.placeholder()));
        match found {
            Some(k) => {
                re.push_str(&regex::escape(&rest[..open]));
                re.push_str(&format!(
                    "(?:{}|{})",
                    pattern(*k),
                    regex::escape(&k.placeholder())
                ));
                rest = &rest[open + k.placeholder().len()..];
                any = true;
            }
            None => {
                re.push_str(&regex::escape(&rest[..=open]));
                rest = &rest[open + 1..];
            }
        }
    }
    re.push_str(&regex::escape(rest));
    re.push('$');
    // The pattern is built from escaped text and fixed alternatives; should
    // it still fail to compile, the line is compared as plain text.
    any.then(|| Regex::new(&re).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_match_values_of_their_kind() {
        let p = LinePattern::new("[16 tokens · decode {rate} · TTFT {time} · max_tokens reached]");
        assert!(p.matches("[16 tokens · decode 41.2 tok/s · TTFT 85 ms · max_tokens reached]"));
        assert!(p.matches("[16 tokens · decode {rate} · TTFT {time} · max_tokens reached]"));
        assert!(!p.matches("[17 tokens · decode 41.2 tok/s · TTFT 85 ms · max_tokens reached]"));
        assert!(!p.matches("[16 tokens · decode fast · TTFT 85 ms · max_tokens reached]"));
        let b = LinePattern::new("node0 ({addr}) uses {bytes} of {int}");
        assert!(b.matches("node0 (127.0.0.1:39211) uses 12.5 MiB of 3"));
        assert!(!b.matches("node0 (127.0.0.1:39211) uses 12.5 of 3"));
    }

    #[test]
    fn lines_without_placeholders_compare_exactly() {
        let p = LinePattern::new("a {literal} brace and regex chars .*");
        assert!(p.matches("a {literal} brace and regex chars .*"));
        assert!(!p.matches("a {literal} brace and regex chars xx"));
    }
}
