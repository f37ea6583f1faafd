//! How far one run's next-token distributions are from a reference run's
//! on the same text: perplexity of each, the KL divergence between them,
//! and how often their top tokens agree (llama.cpp's `llama-perplexity
//! --kl-divergence` reports the same figures).

use serde::Serialize;

use super::quantile;

/// Scored tokens so far.
#[derive(Debug, Default)]
pub struct QualityTally {
    /// Negative log-likelihood of each target, under the run and the reference.
    nll: Vec<f64>,
    reference_nll: Vec<f64>,
    /// KL(reference || run) per token, in nats.
    kl: Vec<f64>,
    same_top: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QualitySummary {
    pub tokens: usize,
    pub perplexity: f64,
    pub reference_perplexity: f64,
    pub mean_kl: f64,
    pub p99_kl: f64,
    pub max_kl: f64,
    /// Share of tokens whose most likely next token is the same, 0..=1.
    pub same_top: f64,
}

/// `ln softmax(logits)` in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    let log_sum = sum.ln() + max;
    logits.iter().map(|&x| x as f64 - log_sum).collect()
}

fn argmax(x: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best
}

impl QualityTally {
    /// Adds one position: the reference's log-probabilities (from
    /// [`log_softmax`]), the run's logits, and the token that came next.
    pub fn add(&mut self, reference: &[f64], logits: &[f32], target: u32) {
        let run = log_softmax(logits);
        let t = target as usize;
        self.nll.push(-run[t]);
        self.reference_nll.push(-reference[t]);
        let kl: f64 = reference
            .iter()
            .zip(&run)
            .map(|(r, q)| r.exp() * (r - q))
            .sum();
        // Rounding can leave a hair below zero for identical distributions.
        self.kl.push(kl.max(0.0));
        if argmax(reference) == argmax(&run) {
            self.same_top += 1;
        }
    }

    pub fn summary(&self) -> QualitySummary {
        let n = self.nll.len().max(1) as f64;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / n;
        QualitySummary {
            tokens: self.nll.len(),
            perplexity: mean(&self.nll).exp(),
            reference_perplexity: mean(&self.reference_nll).exp(),
            mean_kl: mean(&self.kl),
            p99_kl: quantile(&self.kl, 0.99).unwrap_or(0.0),
            max_kl: self.kl.iter().cloned().fold(0.0, f64::max),
            same_top: self.same_top as f64 / n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_runs_have_no_divergence_and_equal_perplexity() {
        let logits = [1.0f32, 2.0, 0.5, -1.0];
        let reference = log_softmax(&logits);
        let mut t = QualityTally::default();
        t.add(&reference, &logits, 1);
        t.add(&reference, &logits, 3);
        let s = t.summary();
        assert_eq!(s.tokens, 2);
        assert_eq!(s.mean_kl, 0.0);
        assert_eq!(s.perplexity, s.reference_perplexity);
        assert_eq!(s.same_top, 1.0);
        // Perplexity is exp of the mean negative log-likelihood.
        let want = ((-reference[1] - reference[3]) / 2.0).exp();
        assert!((s.perplexity - want).abs() < 1e-12);
    }

    #[test]
    fn a_shifted_distribution_diverges_and_can_change_the_top_token() {
        let reference = log_softmax(&[3.0, 1.0, 0.0]);
        let mut t = QualityTally::default();
        t.add(&reference, &[1.0, 3.0, 0.0], 0);
        let s = t.summary();
        assert!(s.mean_kl > 0.5, "{s:?}");
        assert_eq!(s.same_top, 0.0);
        assert!(s.perplexity > s.reference_perplexity);
    }
}
