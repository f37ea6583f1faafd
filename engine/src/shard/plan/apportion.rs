//! Dividing a whole number of units (layers, heads, FFN blocks, vocabulary
//! rows) among nodes: an ideal real-valued share per node, then
//! largest-remainder rounding so the integer shares sum exactly to the total.

use std::ops::Range;

/// Real shares `x` with `sum(x) = total` that minimise the largest
/// `(fixed[i] + x[i] * cost) / weight[i]`: every node ends at the same level
/// except those whose fixed cost alone is above it, which get nothing.
/// Weights of zero get nothing; if every weight is zero all count equally.
pub fn level_shares(fixed: &[f64], weight: &[f64], cost: f64, total: f64) -> Vec<f64> {
    let n = fixed.len();
    let mut w: Vec<f64> = weight.iter().map(|&w| w.max(0.0)).collect();
    if w.iter().all(|&w| w == 0.0) {
        w = vec![1.0; n];
    }
    if cost <= 0.0 {
        let sum: f64 = w.iter().sum();
        return w.iter().map(|&wi| total * wi / sum).collect();
    }
    let mut active: Vec<bool> = w.iter().map(|&wi| wi > 0.0).collect();
    loop {
        let (mut fsum, mut wsum) = (0.0, 0.0);
        for i in (0..n).filter(|&i| active[i]) {
            fsum += fixed[i];
            wsum += w[i];
        }
        let level = (total * cost + fsum) / wsum;
        let x: Vec<f64> = (0..n)
            .map(|i| {
                if active[i] {
                    (level * w[i] - fixed[i]) / cost
                } else {
                    0.0
                }
            })
            .collect();
        let negative: Vec<usize> = (0..n).filter(|&i| active[i] && x[i] < 0.0).collect();
        if negative.is_empty() {
            return x;
        }
        // Dropping a node raises the level, so this ends after at most n rounds
        // with at least one node active (the shares of the active sum to total).
        for i in negative {
            active[i] = false;
        }
    }
}

/// Integer shares summing to `total`, each the floor or ceiling of its
/// ideal (largest remainders round up, ties to the lower index), then raised
/// to `min` where `total` allows, taking from the node with the most units.
pub fn round_shares(ideal: &[f64], total: usize, min: usize) -> Vec<usize> {
    let n = ideal.len();
    if n == 0 {
        return Vec::new();
    }
    let mut out: Vec<usize> = ideal.iter().map(|&x| x.max(0.0).floor() as usize).collect();
    let frac = |i: usize| ideal[i] - ideal[i].floor();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| frac(b).total_cmp(&frac(a)).then(a.cmp(&b)));
    let mut sum: usize = out.iter().sum();
    // Rounding error can leave the floors a unit off either way.
    let mut k = 0;
    while sum < total {
        out[order[k % n]] += 1;
        sum += 1;
        k += 1;
    }
    let mut k = n;
    while sum > total {
        k = if k == 0 { n - 1 } else { k - 1 };
        if out[order[k]] > 0 {
            out[order[k]] -= 1;
            sum -= 1;
        }
    }
    if total >= min * n {
        while let Some(low) = (0..n).find(|&i| out[i] < min) {
            let rich = (0..n).max_by_key(|&i| (out[i], n - i)).unwrap_or(0);
            out[rich] -= 1;
            out[low] += 1;
        }
    }
    out
}

/// `total` split as evenly as possible: the first nodes get the extra unit.
pub fn even_shares(total: usize, n: usize) -> Vec<usize> {
    (0..n)
        .map(|i| total / n + usize::from(i < total % n))
        .collect()
}

/// Consecutive half-open ranges of the given sizes, starting at 0.
pub fn ranges(sizes: &[usize]) -> Vec<Range<usize>> {
    let mut start = 0;
    sizes
        .iter()
        .map(|&s| {
            let r = start..start + s;
            start += s;
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_shares_equalise_and_drop_heavy_nodes() {
        let x = level_shares(&[0.0, 2.0], &[1.0, 1.0], 1.0, 10.0);
        assert!(
            (x[0] - 6.0).abs() < 1e-9 && (x[1] - 4.0).abs() < 1e-9,
            "{x:?}"
        );
        // Node 1's fixed cost alone is above the level: it gets nothing.
        let x = level_shares(&[0.0, 50.0], &[1.0, 1.0], 1.0, 10.0);
        assert_eq!(x, vec![10.0, 0.0]);
        // Twice the weight, twice the share.
        let x = level_shares(&[0.0, 0.0], &[2.0, 1.0], 1.0, 30.0);
        assert!((x[0] - 20.0).abs() < 1e-9, "{x:?}");
        // All-zero weights count equally.
        let x = level_shares(&[0.0, 0.0], &[0.0, 0.0], 1.0, 8.0);
        assert!((x[0] - 4.0).abs() < 1e-9, "{x:?}");
    }

    #[test]
    fn round_shares_keep_the_total_and_the_minimum() {
        assert_eq!(round_shares(&[2.5, 2.5, 5.0], 10, 0), vec![3, 2, 5]);
        assert_eq!(round_shares(&[1.2, 1.7, 2.1], 5, 0), vec![1, 2, 2]);
        assert_eq!(round_shares(&[9.9, 0.1], 10, 1), vec![9, 1]);
        assert_eq!(round_shares(&[3.0, 0.0, 0.0], 3, 1), vec![1, 1, 1]);
        // Not enough units for the minimum: it is not enforced.
        assert_eq!(
            round_shares(&[2.0, 0.0, 0.0], 2, 1).iter().sum::<usize>(),
            2
        );
        assert_eq!(even_shares(9, 2), vec![5, 4]);
        assert_eq!(ranges(&[2, 0, 3]), vec![0..2, 2..2, 2..5]);
    }
}
