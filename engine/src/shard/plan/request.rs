//! What the user asked for: `single`, `tensor`, `pipeline` (optionally with
//! hand-given layer ranges) or `hybrid:TxP`. Parsing here keeps the spelling
//! identical in the shell, notebooks and transcripts.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::Serialize;

use super::error::PlanError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum LayoutRequest {
    /// One node runs the whole model.
    Single,
    /// Every node runs every layer on its share of heads, FFN and vocabulary.
    Tensor,
    /// Mixture-of-experts models: as tensor, but whole experts per node
    /// rather than a share of every expert's columns.
    Expert,
    /// Each node runs a range of layers: given by hand, or weighted by budget.
    Pipeline { layers: Option<Vec<Range<usize>>> },
    /// `pipeline` stages of `tensor` nodes each.
    Hybrid { tensor: usize, pipeline: usize },
}

const EXPECTED: &str =
    "expected single, tensor, expert, pipeline, pipeline:0..15,15..30 or hybrid:TxP";

impl FromStr for LayoutRequest {
    type Err = PlanError;

    fn from_str(input: &str) -> Result<Self, PlanError> {
        let bad = |problem: String| PlanError::BadRequest {
            input: input.to_string(),
            problem,
        };
        let text = input.trim().to_ascii_lowercase();
        let (kind, arg) = match text.split_once([':', ' ']) {
            Some((k, a)) => (k, Some(a.trim())),
            None => (text.as_str(), None),
        };
        match (kind, arg) {
            ("single", None) => Ok(Self::Single),
            ("tensor", None) => Ok(Self::Tensor),
            ("expert", None) => Ok(Self::Expert),
            ("pipeline", None) => Ok(Self::Pipeline { layers: None }),
            ("pipeline", Some(ranges)) => Ok(Self::Pipeline {
                layers: Some(parse_layers(ranges)?),
            }),
            ("hybrid", Some(shape)) => {
                let (t, p) = shape
                    .split_once('x')
                    .ok_or_else(|| bad(format!("'{shape}' is not a TxP shape such as 2x2")))?;
                let factor = |s: &str, what: &str| match s.trim().parse::<usize>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err(bad(format!(
                        "the {what} factor '{s}' must be a whole number of at least 1"
                    ))),
                };
                Ok(Self::Hybrid {
                    tensor: factor(t, "tensor")?,
                    pipeline: factor(p, "pipeline")?,
                })
            }
            ("hybrid", None) => Err(bad(
                "hybrid needs a shape: hybrid:TxP, e.g. hybrid:2x2 (2 tensor-parallel nodes per stage, 2 stages)".into(),
            )),
            ("single" | "tensor" | "expert", Some(extra)) => {
                Err(bad(format!("{kind} takes no argument, found '{extra}'")))
            }
            _ => Err(bad(format!("unknown layout '{kind}' ({EXPECTED})"))),
        }
    }
}

impl fmt::Display for LayoutRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single => f.write_str("single"),
            Self::Tensor => f.write_str("tensor"),
            Self::Expert => f.write_str("expert"),
            Self::Pipeline { layers: None } => f.write_str("pipeline"),
            Self::Pipeline {
                layers: Some(layers),
            } => write!(f, "pipeline:{}", format_layers(layers)),
            Self::Hybrid { tensor, pipeline } => write!(f, "hybrid:{tensor}x{pipeline}"),
        }
    }
}

/// `0..15,15..30` (also `0-15,15-30`): half-open layer ranges, one per node.
/// Only the syntax is checked here; [`super::pipeline::check_layers`] checks
/// them against the model and the nodes.
pub fn parse_layers(text: &str) -> Result<Vec<Range<usize>>, PlanError> {
    let bad = |problem: String| PlanError::BadLayers {
        given: text.to_string(),
        problem,
    };
    text.split(',')
        .map(|part| {
            let part = part.trim();
            let (a, b) = part
                .split_once("..")
                .or_else(|| part.split_once('-'))
                .ok_or_else(|| bad(format!("'{part}' is not a range like 0..15")))?;
            let num = |s: &str| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| bad(format!("'{s}' in '{part}' is not a layer number")))
            };
            Ok(num(a)?..num(b)?)
        })
        .collect()
}

pub fn format_layers(layers: &[Range<usize>]) -> String {
    layers
        .iter()
        .map(|r| format!("{}..{}", r.start, r.end))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_round_trips() {
        let cases = [
            ("single", LayoutRequest::Single),
            (" Tensor ", LayoutRequest::Tensor),
            ("expert", LayoutRequest::Expert),
            ("pipeline", LayoutRequest::Pipeline { layers: None }),
            (
                "pipeline:0..10,10-30",
                LayoutRequest::Pipeline {
                    layers: Some(vec![0..10, 10..30]),
                },
            ),
            (
                "hybrid:2x3",
                LayoutRequest::Hybrid {
                    tensor: 2,
                    pipeline: 3,
                },
            ),
            (
                "hybrid 4X1",
                LayoutRequest::Hybrid {
                    tensor: 4,
                    pipeline: 1,
                },
            ),
        ];
        for (text, want) in cases {
            let got: LayoutRequest = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string().parse::<LayoutRequest>().unwrap(), want);
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let err = |s: &str| s.parse::<LayoutRequest>().unwrap_err().to_string();
        assert!(
            err("ring").contains("unknown layout 'ring'"),
            "{}",
            err("ring")
        );
        assert!(err("hybrid").contains("hybrid needs a shape"));
        assert!(err("hybrid:2by2").contains("not a TxP shape"));
        assert!(err("hybrid:0x2").contains("tensor factor '0'"));
        assert!(err("hybrid:2x").contains("pipeline factor ''"));
        assert!(err("tensor:3").contains("takes no argument"));
        assert!(err("pipeline:0..a").contains("'a' in '0..a' is not a layer number"));
        assert!(err("pipeline:7").contains("'7' is not a range"));
    }
}
