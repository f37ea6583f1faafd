//! The generation loop: prefill, then sample / decode until EOS, a stop
//! string, the token budget, the context limit or a cancel request.
//!
//! It drives any [`Backend`]: the local [`Transformer`] here, a cluster of
//! nodes in the coordinator. Tokens already in the backend's KV cache are
//! reused when a new prompt starts with them (chat turns, repeated prompts).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::error::ModelError;
use super::sampling::{Sampler, SamplingParams};
use super::stop::StopMatcher;
use super::tokenizer::Tokenizer;
use super::transformer::Transformer;

pub use super::generate_many::{generate_many, ManyGenerations};

/// One model, wherever it runs: ids in at a position, last logits out.
pub trait Backend {
    /// Runs `tokens` at positions `pos..` and returns the logits of the last.
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, ModelError>;
    /// Drops cached positions from `pos` on.
    fn truncate(&mut self, pos: usize) -> Result<(), ModelError>;
    /// The most positions a sequence may hold.
    fn context(&self) -> usize;
}

impl Backend for Transformer {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, ModelError> {
        Transformer::forward(self, tokens, pos)
    }

    fn truncate(&mut self, pos: usize) -> Result<(), ModelError> {
        Transformer::truncate(self, pos);
        Ok(())
    }

    fn context(&self) -> usize {
        self.cache().context()
    }
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop_strings: Vec<String>,
    /// Stop at the tokenizer's end-of-sequence tokens.
    pub stop_at_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            sampling: SamplingParams::default(),
            stop_strings: Vec::new(),
            stop_at_eos: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StopReason {
    Eos,
    StopString,
    MaxTokens,
    ContextFull,
    Cancelled,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Prompt tokens found in the KV cache and not recomputed.
    pub reused_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    pub time_to_first_token: f64,
    pub stop: StopReason,
}

impl GenerationStats {
    pub fn prefill_tokens_per_second(&self) -> f64 {
        rate(
            self.prompt_tokens - self.reused_tokens,
            self.prefill_seconds,
        )
    }

    /// Decode rate over the tokens after the first (the first comes from prefill).
    pub fn decode_tokens_per_second(&self) -> f64 {
        rate(self.generated_tokens.saturating_sub(1), self.decode_seconds)
    }
}

pub(super) fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub ids: Vec<u32>,
    pub text: String,
    pub stats: GenerationStats,
}

/// Generates a continuation of `prompt`. `cached` lists the ids the backend's
/// KV cache holds and is kept in step with it. `on_text` receives text as it
/// becomes final (stop strings held back until decided).
pub fn generate(
    backend: &mut dyn Backend,
    tokenizer: &Tokenizer,
    cached: &mut Vec<u32>,
    prompt: &[u32],
    opts: &GenerateOptions,
    cancel: Option<&AtomicBool>,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation, ModelError> {
    if prompt.is_empty() {
        return Err(ModelError::Other("the prompt is empty (no tokens)".into()));
    }
    if prompt.len() >= backend.context() {
        return Err(ModelError::ContextFull {
            needed: prompt.len() + 1,
            context: backend.context(),
        });
    }
    let mut sampler =
        Sampler::new(opts.sampling.clone()).map_err(|e| ModelError::Other(e.to_string()))?;
    let mut stops = StopMatcher::new(opts.stop_strings.clone());
    let mut detok = tokenizer.stream();

    // Reuse the cached prefix, but always recompute at least the last token
    // so there are logits to sample from.
    let common = cached
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count();
    let reuse = common.min(prompt.len() - 1);
    backend.truncate(reuse)?;
    cached.truncate(reuse);

    let started = Instant::now();
    let result = backend.forward(&prompt[reuse..], reuse);
    let mut logits = match result {
        Ok(l) => l,
        Err(e) => {
            // The backend may hold part of the prompt; forget all of it.
            cached.clear();
            let _ = backend.truncate(0);
            return Err(e);
        }
    };
    cached.extend_from_slice(&prompt[reuse..]);
    let prefill_seconds = started.elapsed().as_secs_f64();

    let mut history: Vec<u32> = prompt.to_vec();
    let mut ids = Vec::new();
    let mut text = String::new();
    let mut ttft = 0.0;
    let decode_started = Instant::now();
    let mut emit = |piece: &str, text: &mut String| {
        if !piece.is_empty() {
            text.push_str(piece);
            on_text(piece);
        }
    };
    let stop = loop {
        if ids.len() >= opts.max_tokens {
            break StopReason::MaxTokens;
        }
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            break StopReason::Cancelled;
        }
        let next = sampler.sample(&logits, &history);
        if ids.is_empty() {
            ttft = started.elapsed().as_secs_f64();
        }
        if opts.stop_at_eos && tokenizer.eos_ids().contains(&next) {
            break StopReason::Eos;
        }
        ids.push(next);
        history.push(next);
        let piece = detok
            .push(tokenizer, next)
            .map_err(|e| ModelError::Other(format!("detokenizing id {next}: {e}")))?
            .unwrap_or_default();
        let (ready, stopped) = stops.push(&piece);
        emit(&ready, &mut text);
        if stopped {
            break StopReason::StopString;
        }
        if ids.len() >= opts.max_tokens {
            break StopReason::MaxTokens;
        }
        let pos = cached.len();
        if pos + 1 >= backend.context() {
            break StopReason::ContextFull;
        }
        logits = match backend.forward(&[next], pos) {
            Ok(l) => l,
            Err(e) => {
                cached.clear();
                let _ = backend.truncate(0);
                return Err(e);
            }
        };
        cached.push(next);
    };
    if stop != StopReason::StopString {
        let rest = stops.finish();
        emit(&rest, &mut text);
    }
    Ok(Generation {
        stats: GenerationStats {
            prompt_tokens: prompt.len(),
            reused_tokens: reuse,
            generated_tokens: ids.len(),
            prefill_seconds,
            decode_seconds: decode_started.elapsed().as_secs_f64(),
            time_to_first_token: ttft,
            stop,
        },
        ids,
        text,
    })
}

/// A backend that can hold several sequences and run steps of different
/// sequences at once: batched into one forward pass, and several batches
/// in flight (a pipeline keeps every stage busy that way).
pub trait SequenceBackend {
    /// Starts one step of each listed sequence (a sequence appears at most
    /// once), run as one batched forward pass where the backend can.
    fn submit(&mut self, steps: &[SeqStep]) -> Result<(), ModelError>;
    /// The oldest submitted batch's results: each step's sequence and last
    /// logits, in the order the steps were given.
    fn collect(&mut self) -> Result<Vec<(u32, Vec<f32>)>, ModelError>;
    /// Forgets everything sequence `seq` holds.
    fn reset(&mut self, seq: u32) -> Result<(), ModelError>;
    /// The most positions one sequence may hold.
    fn context(&self) -> usize;
    /// How many batches in flight keep the whole backend busy: a pipeline's
    /// stage count, 1 for one process.
    fn lanes(&self) -> usize {
        1
    }
    /// Runs one batch and returns each step's last logits, in the order
    /// given.
    fn step_many(&mut self, steps: &[SeqStep]) -> Result<Vec<Vec<f32>>, ModelError> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(steps)?;
        Ok(self.collect()?.into_iter().map(|(_, l)| l).collect())
    }
}

/// One sequence's part of a step: `tokens` at positions `pos..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqStep {
    pub seq: u32,
    pub tokens: Vec<u32>,
    pub pos: usize,
}
