//! Pipeline parallelism: which half-open range of layers each stage runs,
//! either given by hand (`--layers 0..20,20..30`, checked here) or weighted
//! by the stages' memory budgets.

use std::ops::Range;

use super::apportion::{level_shares, ranges, round_shares};
use super::error::PlanError;
use super::request::format_layers;

/// What one stage costs per node, for weighting: a cost whatever its layers
/// and a cost per layer (bytes held, or work per token), and what its share
/// scales with (the budget of its smallest node, or its slowest node's
/// speed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageCost {
    pub fixed: f64,
    pub per_layer: f64,
    pub weight: f64,
}

/// Layer ranges so every stage reaches the same cost per weight (the fixed
/// costs counted): the same fraction of its budget, or the same time per
/// token. Rounded by largest remainder with at least one layer per stage.
/// The caller makes sure there are enough layers.
pub fn weighted_layers(stages: &[StageCost], n_layers: usize) -> Vec<Range<usize>> {
    let fixed: Vec<f64> = stages.iter().map(|s| s.fixed).collect();
    let weight: Vec<f64> = stages.iter().map(|s| s.weight).collect();
    let cost = stages.iter().map(|s| s.per_layer).fold(0.0, f64::max);
    let ideal = level_shares(&fixed, &weight, cost, n_layers as f64);
    ranges(&round_shares(&ideal, n_layers, 1))
}

/// Hand-given ranges: one per stage, each non-empty, contiguous, together
/// covering `0..n_layers`.
pub fn check_layers(
    layers: &[Range<usize>],
    n_layers: usize,
    stages: usize,
) -> Result<(), PlanError> {
    let bad = |problem: String| PlanError::BadLayers {
        given: format_layers(layers),
        problem,
    };
    if layers.len() != stages {
        return Err(bad(format!(
            "{} ranges for {stages} pipeline stages: give one range per node",
            layers.len()
        )));
    }
    let mut at = 0;
    for (i, r) in layers.iter().enumerate() {
        if r.start != at {
            return Err(bad(if i == 0 {
                format!("the first range must start at layer 0, not {}", r.start)
            } else {
                format!(
                    "range {} starts at layer {} but the one before ends at {at}: ranges must be contiguous",
                    i + 1,
                    r.start
                )
            }));
        }
        if r.end <= r.start {
            return Err(bad(format!(
                "range {} ({}..{}) is empty: every stage needs at least one layer",
                i + 1,
                r.start,
                r.end
            )));
        }
        at = r.end;
    }
    if at != n_layers {
        return Err(bad(format!(
            "the ranges end at layer {at} but the model has {n_layers} layers"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(fixed: f64, budget: f64) -> StageCost {
        StageCost {
            fixed,
            per_layer: 1.0,
            weight: budget,
        }
    }

    #[test]
    fn layers_follow_budgets() {
        assert_eq!(
            weighted_layers(&[stage(0.0, 1.0), stage(0.0, 1.0)], 30),
            vec![0..15, 15..30]
        );
        assert_eq!(
            weighted_layers(&[stage(0.0, 2.0), stage(0.0, 1.0)], 30),
            vec![0..20, 20..30]
        );
        // A stage with a heavy fixed part (say the output head) takes fewer layers.
        assert_eq!(
            weighted_layers(&[stage(0.0, 1.0), stage(10.0, 1.0)], 30),
            vec![0..20, 20..30]
        );
        // Every stage gets a layer, even one with a tiny budget.
        assert_eq!(
            weighted_layers(&[stage(0.0, 1000.0), stage(0.0, 1.0)], 30),
            vec![0..29, 29..30]
        );
    }

    #[test]
    fn hand_layers_are_checked() {
        let err = |l: &[Range<usize>]| check_layers(l, 30, 2).unwrap_err().to_string();
        assert!(check_layers(&[0..10, 10..30], 30, 2).is_ok());
        assert!(err(std::slice::from_ref(&(0..30))).contains("1 ranges for 2 pipeline stages"));
        assert!(err(&[1..10, 10..30]).contains("must start at layer 0, not 1"));
        assert!(err(&[0..10, 12..30])
            .contains("range 2 starts at layer 12 but the one before ends at 10"));
        assert!(err(&[0..10, 8..30]).contains("must be contiguous"));
        assert!(err(&[0..0, 0..30]).contains("range 1 (0..0) is empty"));
        assert!(err(&[0..10, 10..28]).contains("end at layer 28 but the model has 30 layers"));
        assert!(err(&[0..10, 10..28]).starts_with("--layers 0..10,10..28: "));
    }
}
