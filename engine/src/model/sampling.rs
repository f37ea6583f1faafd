//! Turning one step's logits into one token id.
//!
//! Owns [`SamplingParams`] (what the user asked for) and [`Sampler`] (a seeded
//! RNG plus scratch buffers). The filter chain follows llama.cpp's default
//! order: repetition penalty → top-k → top-p → min-p → temperature → softmax →
//! draw. Top-p is judged on the untempered distribution, as llama.cpp does, so
//! temperature only reshapes what the filters kept.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A parameter outside the range the sampler can honour.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SamplingError {
    #[error("sampling parameter {name} = {value} is invalid: expected {expected}")]
    InvalidParam {
        name: &'static str,
        value: f32,
        expected: &'static str,
    },
}

/// How to pick the next token.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature; `0` means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` turns the filter off.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p`; `1` is off.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the best one; `0` is off.
    pub min_p: f32,
    /// Penalty for tokens seen in the last `repeat_last_n` tokens; `1` is off.
    pub repetition_penalty: f32,
    /// How many trailing history tokens the penalty looks at; `0` is off.
    pub repeat_last_n: usize,
    /// Seed of the draw RNG: the same seed and inputs give the same tokens.
    pub seed: u64,
}

/// A fixed default seed, so that two runs with default settings agree; pass
/// another seed to get a different stream.
pub const DEFAULT_SEED: u64 = 0x5EED_5A4D;

impl Default for SamplingParams {
    /// llama.cpp's defaults (`common_params_sampling`): temperature 0.8,
    /// top-k 40, top-p 0.95, min-p 0.05, no repetition penalty, a 64-token
    /// penalty window. The seed is fixed rather than random (see [`DEFAULT_SEED`]).
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            repeat_last_n: 64,
            seed: DEFAULT_SEED,
        }
    }
}

impl SamplingParams {
    /// Argmax decoding with every filter off: the reference for correctness tests.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplingParams::default()
        }
    }

    /// Greedy decoding skips the RNG entirely, so it is reproducible without a seed.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Rejects values that would make the chain meaningless (NaN, a negative
    /// temperature, a top-p that keeps nothing).
    pub fn validate(&self) -> Result<(), SamplingError> {
        let check = |name, value: f32, ok: bool, expected| {
            if value.is_finite() && ok {
                Ok(())
            } else {
                Err(SamplingError::InvalidParam {
                    name,
                    value,
                    expected,
                })
            }
        };
        check(
            "temperature",
            self.temperature,
            self.temperature >= 0.0,
            "a finite value >= 0",
        )?;
        check(
            "top_p",
            self.top_p,
            self.top_p > 0.0 && self.top_p <= 1.0,
            "a value in (0, 1]",
        )?;
        check(
            "min_p",
            self.min_p,
            (0.0..=1.0).contains(&self.min_p),
            "a value in [0, 1]",
        )?;
        check(
            "repetition_penalty",
            self.repetition_penalty,
            self.repetition_penalty > 0.0,
            "a finite value > 0",
        )
    }
}

/// One surviving token while the filters run.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    id: u32,
    logit: f32,
}

/// Draws tokens; keeps its buffers between calls so a step allocates nothing
/// once the first call has sized them to the vocabulary.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    candidates: Vec<Candidate>,
    recent: Vec<u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self, SamplingError> {
        params.validate()?;
        Ok(Sampler {
            rng: StdRng::seed_from_u64(params.seed),
            params,
            candidates: Vec::new(),
            recent: Vec::new(),
        })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks a token id from `logits` (one per vocabulary entry), penalising
    /// tokens in `history`. NaN logits count as `-inf`. When every logit is
    /// `-inf` the lowest id wins without touching the RNG (an empty slice
    /// gives 0). Otherwise a non-greedy call consumes exactly one RNG draw,
    /// so the stream stays aligned however many tokens the filters keep.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        self.load_candidates(logits);
        self.apply_repetition_penalty(history);
        let Some(best) = argmax(&self.candidates) else {
            return 0;
        };
        if self.params.is_greedy() || best.logit == f32::NEG_INFINITY {
            return best.id;
        }
        self.apply_top_k();
        self.apply_top_p();
        self.apply_min_p();
        self.draw()
    }

    fn load_candidates(&mut self, logits: &[f32]) {
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(i, &l)| Candidate {
                // Vocabularies are far below u32::MAX; ids are u32 everywhere.
                id: i as u32,
                logit: if l.is_nan() { f32::NEG_INFINITY } else { l },
            }));
    }

    /// Each distinct recent token is penalised once, however often it repeats
    /// (llama.cpp's `penalty_repeat`). Relies on candidates still being in id order.
    fn apply_repetition_penalty(&mut self, history: &[u32]) {
        let penalty = self.params.repetition_penalty;
        if penalty == 1.0 || self.params.repeat_last_n == 0 {
            return;
        }
        let start = history.len().saturating_sub(self.params.repeat_last_n);
        self.recent.clear();
        self.recent.extend_from_slice(&history[start..]);
        self.recent.sort_unstable();
        self.recent.dedup();
        for &id in &self.recent {
            if let Some(c) = self.candidates.get_mut(id as usize) {
                c.logit = if c.logit > 0.0 {
                    c.logit / penalty
                } else {
                    c.logit * penalty
                };
            }
        }
    }

    /// Partial selection: O(vocab) to find the k best, then only k are sorted.
    fn apply_top_k(&mut self) {
        let k = self.params.top_k;
        if k == 0 || k >= self.candidates.len() {
            return;
        }
        self.candidates.select_nth_unstable_by(k - 1, by_logit_desc);
        self.candidates.truncate(k);
    }

    fn apply_top_p(&mut self) {
        let top_p = self.params.top_p;
        if top_p >= 1.0 {
            return;
        }
        self.candidates.sort_unstable_by(by_logit_desc);
        let max = self.candidates.first().map_or(0.0, |c| c.logit);
        let total: f64 = self
            .candidates
            .iter()
            .map(|c| weight(c.logit, max, 1.0))
            .sum();
        let target = f64::from(top_p) * total;
        let mut acc = 0.0;
        let mut keep = self.candidates.len();
        for (i, c) in self.candidates.iter().enumerate() {
            acc += weight(c.logit, max, 1.0);
            if acc >= target {
                keep = i + 1;
                break;
            }
        }
        self.candidates.truncate(keep.max(1));
    }

    /// `p >= min_p * p_max` is `logit >= max + ln(min_p)`: no softmax needed.
    fn apply_min_p(&mut self) {
        let min_p = self.params.min_p;
        if min_p <= 0.0 {
            return;
        }
        let Some(best) = argmax(&self.candidates) else {
            return;
        };
        let threshold = best.logit + min_p.ln();
        self.candidates.retain(|c| c.logit >= threshold);
    }

    /// Temperature and softmax fused: weights are `exp((l - max) / T)`.
    fn draw(&mut self) -> u32 {
        let t = self.params.temperature;
        let max = argmax(&self.candidates).map_or(0.0, |c| c.logit);
        let total: f64 = self
            .candidates
            .iter()
            .map(|c| weight(c.logit, max, t))
            .sum();
        let u = self.rng.random::<f64>() * total;
        let mut acc = 0.0;
        let mut last_live = None;
        for c in &self.candidates {
            let w = weight(c.logit, max, t);
            if w > 0.0 {
                acc += w;
                last_live = Some(c.id);
                if u < acc {
                    return c.id;
                }
            }
        }
        // Only reachable through rounding at the top end of the sum.
        last_live.unwrap_or(0)
    }
}

/// Descending logit, lowest id first among equals: a total order, so the
/// unstable sorts are still deterministic.
fn by_logit_desc(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// The best candidate, lowest id on ties.
fn argmax(candidates: &[Candidate]) -> Option<Candidate> {
    candidates
        .iter()
        .copied()
        .reduce(|best, c| match by_logit_desc(&c, &best) {
            std::cmp::Ordering::Less => c,
            _ => best,
        })
}

/// Unnormalised probability of `logit` given the maximum; `+inf` logits share
/// all the mass between them instead of producing NaN.
fn weight(logit: f32, max: f32, temperature: f32) -> f64 {
    if max == f32::INFINITY {
        return if logit == f32::INFINITY { 1.0 } else { 0.0 };
    }
    (f64::from(logit - max) / f64::from(temperature)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            repeat_last_n: 64,
            seed: 7,
        }
    }

    fn sampler(p: SamplingParams) -> Sampler {
        Sampler::new(p).unwrap()
    }

    /// A deterministic, bumpy 49,152-entry vocabulary.
    fn big_logits() -> Vec<f32> {
        (0..49_152u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 1000) as f32 / 100.0)
            .collect()
    }

    #[test]
    fn greedy_picks_argmax_lowest_index_on_ties() {
        let mut s = sampler(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.5], &[]), 1);
        assert_eq!(s.sample(&[0.1, 3.0, 3.0, 1.5], &[]), 1);
        assert_eq!(s.sample(&[-5.0, -2.0, -3.0], &[]), 1);
    }

    #[test]
    fn top_k_one_equals_greedy() {
        let logits = big_logits();
        let want = sampler(SamplingParams::greedy()).sample(&logits, &[]);
        let mut s = sampler(SamplingParams {
            top_k: 1,
            ..params(1.5)
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[]), want);
        }
    }

    #[test]
    fn tiny_top_p_equals_greedy() {
        let logits = big_logits();
        let want = sampler(SamplingParams::greedy()).sample(&logits, &[]);
        let mut s = sampler(SamplingParams {
            top_p: 1e-6,
            ..params(1.0)
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[]), want);
        }
    }

    #[test]
    fn top_k_keeps_exactly_the_k_best() {
        // Ids 10..13 hold the four highest logits of a 49,152 vocabulary.
        let mut logits = vec![0.0f32; 49_152];
        for (i, id) in (10..14).enumerate() {
            logits[id] = 5.0 - i as f32 * 0.1;
        }
        let mut s = sampler(SamplingParams {
            top_k: 4,
            ..params(100.0)
        });
        let mut seen = [false; 4];
        for _ in 0..400 {
            let id = s.sample(&logits, &[]) as usize;
            assert!((10..14).contains(&id), "drew {id} outside the top 4");
            seen[id - 10] = true;
        }
        assert_eq!(seen, [true; 4], "a high temperature should reach all four");
    }

    #[test]
    fn min_p_filters_unlikely_tokens() {
        // p ∝ [1, 0.5, 0.01]: min_p 0.1 drops id 2, min_p 0.6 also drops id 1.
        let logits = [0.0, 0.5f32.ln(), 0.01f32.ln()];
        let mut loose = sampler(params(1.0));
        let mut filtered = sampler(SamplingParams {
            min_p: 0.1,
            ..params(1.0)
        });
        let mut strict = sampler(SamplingParams {
            min_p: 0.6,
            ..params(1.0)
        });
        let mut loose_hit_2 = false;
        for _ in 0..2000 {
            loose_hit_2 |= loose.sample(&logits, &[]) == 2;
            assert_ne!(filtered.sample(&logits, &[]), 2);
            assert_eq!(strict.sample(&logits, &[]), 0);
        }
        assert!(
            loose_hit_2,
            "without min_p the 0.7% token should appear in 2000 draws"
        );
    }

    #[test]
    fn repetition_penalty_changes_the_choice() {
        let logits = [2.0, 1.5, -1.0];
        let mut plain = sampler(SamplingParams::greedy());
        assert_eq!(plain.sample(&logits, &[0, 0]), 0);
        let mut penalised = sampler(SamplingParams {
            repetition_penalty: 1.5,
            ..SamplingParams::greedy()
        });
        // 2.0 / 1.5 = 1.33 < 1.5: token 1 now wins.
        assert_eq!(penalised.sample(&logits, &[0, 2, 0]), 1);
        // Negative logits are multiplied: -2 * 1.5 = -3 loses to -2.5.
        assert_eq!(penalised.sample(&[-2.0, -2.5], &[0]), 1);
    }

    #[test]
    fn repetition_penalty_only_sees_the_window() {
        let logits = [2.0, 1.5, 1.0];
        let mut s = sampler(SamplingParams {
            repetition_penalty: 1.5,
            repeat_last_n: 2,
            ..SamplingParams::greedy()
        });
        assert_eq!(
            s.sample(&logits, &[0, 1, 1]),
            0,
            "token 0 is outside the window"
        );
        assert_eq!(s.sample(&logits, &[1, 2, 0]), 1);
        // Ids beyond the vocabulary are ignored, not a panic.
        assert_eq!(s.sample(&logits, &[99, 0]), 1);
    }

    #[test]
    fn same_seed_same_draws_different_seed_differs() {
        let flat = vec![0.0f32; 1000];
        let run = |seed| {
            let mut s = sampler(SamplingParams {
                seed,
                ..params(1.0)
            });
            (0..50).map(|_| s.sample(&flat, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn empirical_frequencies_match_softmax() {
        let probs = [0.2f32, 0.3, 0.5];
        let logits: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
        let mut s = sampler(params(1.0));
        let n = 20_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[s.sample(&logits, &[]) as usize] += 1;
        }
        for (i, p) in probs.iter().enumerate() {
            let freq = counts[i] as f32 / n as f32;
            // 4.5 standard deviations of a binomial at n = 20k is < 0.016.
            assert!((freq - p).abs() < 0.016, "token {i}: {freq} vs {p}");
        }
    }

    #[test]
    fn temperature_sharpens_the_distribution() {
        let logits = [0.0f32, 1.0];
        let count_ones = |t| {
            let mut s = sampler(params(t));
            (0..4000).filter(|_| s.sample(&logits, &[]) == 1).count()
        };
        let cold = count_ones(0.25); // p(1) = 0.98
        let hot = count_ones(4.0); // p(1) = 0.56
        assert!(cold > 3800, "cold: {cold}");
        assert!((2000..2600).contains(&hot), "hot: {hot}");
    }

    #[test]
    fn nan_logits_are_never_chosen_and_do_not_panic() {
        let logits = [f32::NAN, 1.0, f32::NAN, 0.5];
        assert_eq!(sampler(SamplingParams::greedy()).sample(&logits, &[]), 1);
        let mut s = sampler(SamplingParams::default());
        for _ in 0..200 {
            let id = s.sample(&logits, &[0]);
            assert!(id == 1 || id == 3, "drew NaN token {id}");
        }
        let all_nan = [f32::NAN; 4];
        assert_eq!(s.sample(&all_nan, &[]), 0);
        assert_eq!(s.sample(&[], &[]), 0);
    }

    #[test]
    fn infinite_logits_take_all_the_mass() {
        let logits = [0.0, f32::INFINITY, 3.0, f32::INFINITY];
        let mut s = sampler(SamplingParams {
            top_p: 0.5,
            min_p: 0.1,
            ..params(1.0)
        });
        for _ in 0..100 {
            let id = s.sample(&logits, &[]);
            assert!(id == 1 || id == 3, "drew finite token {id}");
        }
    }

    #[test]
    fn default_chain_stays_inside_top_k() {
        let logits = big_logits();
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        let cutoff = logits[order[39] as usize];
        let mut s = sampler(SamplingParams::default());
        for _ in 0..200 {
            let id = s.sample(&logits, &[]) as usize;
            assert!(logits[id] >= cutoff, "token {id} is not in the top 40");
        }
    }

    #[test]
    fn buffers_are_reused_across_calls() {
        let logits = big_logits();
        let mut s = sampler(SamplingParams::default());
        s.sample(&logits, &[1, 2, 3]);
        let cap = s.candidates.capacity();
        let ptr = s.candidates.as_ptr();
        for _ in 0..10 {
            s.sample(&logits, &[1, 2, 3]);
        }
        assert_eq!(s.candidates.capacity(), cap);
        assert_eq!(s.candidates.as_ptr(), ptr);
    }

    #[test]
    fn validate_rejects_bad_params() {
        assert!(SamplingParams::default().validate().is_ok());
        assert!(SamplingParams::greedy().validate().is_ok());
        let bad = [
            SamplingParams {
                temperature: -0.1,
                ..params(1.0)
            },
            SamplingParams {
                temperature: f32::NAN,
                ..params(1.0)
            },
            SamplingParams {
                top_p: 0.0,
                ..params(1.0)
            },
            SamplingParams {
                top_p: 1.5,
                ..params(1.0)
            },
            SamplingParams {
                min_p: -0.5,
                ..params(1.0)
            },
            SamplingParams {
                repetition_penalty: 0.0,
                ..params(1.0)
            },
        ];
        for p in bad {
            assert!(Sampler::new(p.clone()).is_err(), "accepted {p:?}");
        }
        let err = SamplingParams {
            top_p: 2.0,
            ..params(1.0)
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("top_p = 2"), "{err}");
    }

    #[test]
    fn greedy_detection() {
        assert!(SamplingParams::greedy().is_greedy());
        assert!(!SamplingParams::default().is_greedy());
    }
}
