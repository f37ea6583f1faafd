//! Text with its measured parts marked, so each renderer can decide whether
//! to print a value or the placeholder that stands for it.

use std::fmt;

use serde::Serialize;

/// What kind of varying value a fragment is; its placeholder is `{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Varies {
    Int,
    Float,
    /// A duration, with its unit: "85 ms", "1.20 s".
    Time,
    /// A size with its unit: "12.5 MiB".
    Bytes,
    /// A rate: "41.2 tok/s", "120 MB/s".
    Rate,
    /// host:port.
    Addr,
    Path,
    /// A drawn timeline.
    Bars,
    /// Anything else that differs between runs.
    Any,
}

impl Varies {
    pub const ALL: [Varies; 9] = [
        Varies::Int,
        Varies::Float,
        Varies::Time,
        Varies::Bytes,
        Varies::Rate,
        Varies::Addr,
        Varies::Path,
        Varies::Bars,
        Varies::Any,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Varies::Int => "int",
            Varies::Float => "float",
            Varies::Time => "time",
            Varies::Bytes => "bytes",
            Varies::Rate => "rate",
            Varies::Addr => "addr",
            Varies::Path => "path",
            Varies::Bars => "bars",
            Varies::Any => "any",
        }
    }

    /// `{time}`.
    pub fn placeholder(self) -> String {
        format!("{{{}}}", self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Fragment {
    Fixed(String),
    Varies(Varies, String),
}

/// A line (or a few) of text made of fixed and varying fragments.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rich(pub Vec<Fragment>);

impl Rich {
    pub fn new() -> Self {
        Rich(Vec::new())
    }

    /// A single measured value.
    pub fn varies(kind: Varies, text: impl Into<String>) -> Self {
        Rich(vec![Fragment::Varies(kind, text.into())])
    }

    pub fn push(mut self, text: impl Into<String>) -> Self {
        self.0.push(Fragment::Fixed(text.into()));
        self
    }

    pub fn push_varies(mut self, kind: Varies, text: impl Into<String>) -> Self {
        self.0.push(Fragment::Varies(kind, text.into()));
        self
    }

    pub fn append(mut self, other: Rich) -> Self {
        self.0.extend(other.0);
        self
    }

    /// `text` with every occurrence of each `(literal, kind)` marked as
    /// varying: node addresses inside an engine error message, for example.
    pub fn masking(text: &str, literals: &[(String, Varies)]) -> Self {
        let mut out = Vec::new();
        let mut rest = text;
        loop {
            let next = literals
                .iter()
                .filter(|(lit, _)| !lit.is_empty())
                .filter_map(|(lit, kind)| rest.find(lit.as_str()).map(|at| (at, lit, *kind)))
                // The earliest match; the longest literal when two start together.
                .min_by_key(|(at, lit, _)| (*at, usize::MAX - lit.len()));
            match next {
                Some((at, lit, kind)) => {
                    if at > 0 {
                        out.push(Fragment::Fixed(rest[..at].to_string()));
                    }
                    out.push(Fragment::Varies(kind, lit.clone()));
                    rest = &rest[at + lit.len()..];
                }
                None => {
                    if !rest.is_empty() {
                        out.push(Fragment::Fixed(rest.to_string()));
                    }
                    return Rich(out);
                }
            }
        }
    }

    /// The text with real values (`masked` false) or placeholders.
    pub fn render(&self, masked: bool) -> String {
        self.0
            .iter()
            .map(|f| match f {
                Fragment::Fixed(s) => s.clone(),
                Fragment::Varies(k, s) => {
                    if masked {
                        k.placeholder()
                    } else {
                        s.clone()
                    }
                }
            })
            .collect()
    }
}

impl fmt::Display for Rich {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl From<&str> for Rich {
    fn from(s: &str) -> Self {
        Rich(vec![Fragment::Fixed(s.to_string())])
    }
}

impl From<String> for Rich {
    fn from(s: String) -> Self {
        Rich(vec![Fragment::Fixed(s)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_marks_every_occurrence_and_keeps_the_rest() {
        let lits = vec![
            ("127.0.0.1:4001".to_string(), Varies::Addr),
            ("127.0.0.1:40011".to_string(), Varies::Addr),
        ];
        let r = Rich::masking(
            "node0 (127.0.0.1:40011) and node1 (127.0.0.1:4001) failed",
            &lits,
        );
        assert_eq!(
            r.render(true),
            "node0 ({addr}) and node1 ({addr}) failed",
            "the longer literal wins where both match"
        );
        assert_eq!(
            r.render(false),
            "node0 (127.0.0.1:40011) and node1 (127.0.0.1:4001) failed"
        );
        assert_eq!(Rich::masking("plain", &lits).render(true), "plain");
    }

    #[test]
    fn placeholders_are_braced_names() {
        let r = Rich::from("took ").push_varies(Varies::Time, "12 ms");
        assert_eq!(r.render(true), "took {time}");
        assert_eq!(r.to_string(), "took 12 ms");
    }
}
