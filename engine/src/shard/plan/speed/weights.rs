//! How much work each node should get when nodes differ: a weight per node
//! from its calibration, used to split heads, FFN columns, vocabulary rows
//! and pipeline layers in proportion to speed rather than by count.

use super::terms::host_shares;
use crate::calibration::Calibration;

/// Nodes within this fraction of the fastest count as equally fast, so the
/// noise of a short calibration does not move a split between two runs.
const SAME_SPEED: f64 = 0.85;
/// Weights are rounded to this step, for the same reason.
const STEP: f64 = 0.05;

/// One weight per node, the fastest 1.0: the median over weight types of
/// the rate it streams weights at for one token (the slower of its kernel
/// and its memory), each node sharing its machine with the others. `None`
/// (a node not calibrated) counts as the fastest.
pub fn split_weights(nodes: &[Option<Calibration>]) -> Vec<f64> {
    let known: Vec<(usize, Calibration)> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.clone().map(|c| (i, c)))
        .collect();
    let cals: Vec<Calibration> = known.iter().map(|(_, c)| c.clone()).collect();
    let all: Vec<usize> = (0..cals.len()).collect();
    let mut rate = vec![f64::NAN; nodes.len()];
    for (k, share) in host_shares(&cals, &all) {
        let c = &cals[k];
        let mut rates: Vec<f64> = c
            .kernels
            .iter()
            .map(|r| (r.decode * share.compute).min(share.bandwidth))
            .collect();
        rates.sort_by(f64::total_cmp);
        rate[known[k].0] = rates.get(rates.len() / 2).copied().unwrap_or(f64::NAN);
    }
    let fastest = rate
        .iter()
        .copied()
        .filter(|r| r.is_finite())
        .fold(0.0, f64::max);
    if fastest <= 0.0 {
        return vec![1.0; nodes.len()];
    }
    let relative: Vec<f64> = rate
        .iter()
        .map(|&r| if r.is_finite() { r / fastest } else { 1.0 })
        .collect();
    if relative.iter().all(|&r| r >= SAME_SPEED) {
        return vec![1.0; nodes.len()];
    }
    relative
        .iter()
        .map(|&r| ((r / STEP).round() * STEP).clamp(STEP, 1.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::KernelRate;
    use crate::model::gguf::GgmlType;

    fn cal(host: &str, cores: usize, threads: usize, rate: f64) -> Calibration {
        Calibration {
            host: host.into(),
            cores,
            threads,
            bandwidth: 100e9,
            host_bandwidth: 100e9,
            call_overhead: 0.0,
            kernels: vec![KernelRate {
                dtype: GgmlType::Q4_0,
                decode: rate,
                prefill: rate * 10.0,
                streamed: rate,
                row_overhead: 0.0,
            }],
            seconds: 0.0,
        }
    }

    #[test]
    fn a_slower_node_gets_a_smaller_weight_and_near_equals_count_as_equal() {
        let w = split_weights(&[Some(cal("a", 8, 4, 10e9)), Some(cal("b", 8, 4, 5e9))]);
        assert_eq!(w, vec![1.0, 0.5]);
        // 10% apart: the noise of a calibration, not a difference.
        let w = split_weights(&[Some(cal("a", 8, 4, 10e9)), Some(cal("b", 8, 4, 9e9))]);
        assert_eq!(w, vec![1.0, 1.0]);
        // Not calibrated: as fast as the fastest.
        let w = split_weights(&[None, Some(cal("b", 8, 4, 5e9))]);
        assert_eq!(w, vec![1.0, 1.0]);
    }

    #[test]
    fn nodes_crowding_one_machine_are_slower_than_one_alone() {
        // Two 2-thread nodes on a 2-core host against one alone on its own.
        let w = split_weights(&[
            Some(cal("a", 2, 2, 10e9)),
            Some(cal("a", 2, 2, 10e9)),
            Some(cal("b", 2, 2, 10e9)),
        ]);
        assert_eq!(w, vec![0.5, 0.5, 1.0]);
    }
}
