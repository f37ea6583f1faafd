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
use super::sequence::SequenceRun;
use super::stop::StopMatcher;
use super::tokenizer::Tokenizer;
use super::transformer::Transformer;

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

fn rate(n: usize, secs: f64) -> f64 {
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
/// sequences at once (a pipeline keeps every stage busy that way).
pub trait SequenceBackend {
    /// Starts `tokens` of sequence `seq` at positions `pos..`.
    fn submit(&mut self, seq: u32, tokens: &[u32], pos: usize) -> Result<(), ModelError>;
    /// The oldest submitted step's sequence and last logits.
    fn collect(&mut self) -> Result<(u32, Vec<f32>), ModelError>;
    /// Forgets everything sequence `seq` holds.
    fn reset(&mut self, seq: u32) -> Result<(), ModelError>;
    /// The most positions one sequence may hold.
    fn context(&self) -> usize;
    /// Runs one step of each listed sequence (a sequence appears at most
    /// once) and returns each one's last logits, in the order given. This
    /// default submits the steps one after another and collects them; a
    /// backend that can run them as one batched forward pass overrides it.
    fn step_many(&mut self, steps: &[SeqStep]) -> Result<Vec<Vec<f32>>, ModelError> {
        for step in steps {
            self.submit(step.seq, &step.tokens, step.pos)?;
        }
        let mut logits: Vec<Option<Vec<f32>>> = vec![None; steps.len()];
        for _ in steps {
            let (seq, l) = self.collect()?;
            let slot = steps
                .iter()
                .position(|s| s.seq == seq)
                .and_then(|i| logits.get_mut(i))
                .ok_or_else(|| ModelError::Other(format!("logits for unknown sequence {seq}")))?;
            *slot = Some(l);
        }
        Ok(logits.into_iter().flatten().collect())
    }
}

/// One sequence's part of a step: `tokens` at positions `pos..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqStep {
    pub seq: u32,
    pub tokens: Vec<u32>,
    pub pos: usize,
}

/// What [`generate_many`] produced, with the figures of the run as a whole.
#[derive(Debug, Clone)]
pub struct ManyGenerations {
    /// One per prompt, in prompt order.
    pub generations: Vec<Generation>,
    pub wall_seconds: f64,
    /// Until every sequence had its first logits (all prompts prefilled).
    pub prefill_wall_seconds: f64,
    /// Tokens decoded after that point, across all sequences.
    pub steady_tokens: usize,
}

impl ManyGenerations {
    /// Aggregate decode rate once every sequence is decoding.
    pub fn decode_tokens_per_second(&self) -> f64 {
        rate(
            self.steady_tokens,
            self.wall_seconds - self.prefill_wall_seconds,
        )
    }
}

/// Generates a continuation of every prompt at once, sequence `i` for
/// prompt `i`: each sequence's next step is submitted as soon as its logits
/// arrive, so up to `prompts.len()` steps are in flight. Each sequence's
/// tokens are what [`generate`] gives for its prompt alone (same sampler
/// settings, seeded the same). The backend's sequences start empty.
pub fn generate_many(
    backend: &mut dyn SequenceBackend,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    cancel: Option<&AtomicBool>,
) -> Result<ManyGenerations, ModelError> {
    let mut runs = Vec::with_capacity(prompts.len());
    for (i, prompt) in prompts.iter().enumerate() {
        if prompt.is_empty() {
            return Err(ModelError::Other(format!(
                "prompt {i} is empty (no tokens)"
            )));
        }
        if prompt.len() >= backend.context() {
            return Err(ModelError::ContextFull {
                needed: prompt.len() + 1,
                context: backend.context(),
            });
        }
        runs.push(SequenceRun::new(prompt.clone(), tokenizer, opts)?);
    }
    let started = Instant::now();
    for seq in 0..runs.len() {
        backend.reset(seq as u32)?;
    }
    for (seq, run) in runs.iter_mut().enumerate() {
        submit_prompt_batch(backend, seq as u32, run)?;
    }
    let mut in_flight = runs.len();
    let mut prefilled = 0;
    let mut prefill_wall = 0.0;
    let mut steady = 0;
    while in_flight > 0 {
        let (seq, logits) = backend.collect()?;
        in_flight -= 1;
        let run = runs
            .get_mut(seq as usize)
            .ok_or_else(|| ModelError::Other(format!("logits for unknown sequence {seq}")))?;
        if run.prefilling() {
            submit_prompt_batch(backend, seq, run)?;
            in_flight += 1;
            continue;
        }
        if run.first.is_none() {
            run.first = Some(started.elapsed().as_secs_f64());
            prefilled += 1;
            if prefilled == prompts.len() {
                prefill_wall = started.elapsed().as_secs_f64();
            }
        } else if prefilled == prompts.len() {
            steady += 1;
        }
        if let Some(next) = run.advance(&logits, tokenizer, opts, backend.context(), cancel)? {
            let step = run.token_step(seq, next);
            backend.submit(seq, &step.tokens, step.pos)?;
            in_flight += 1;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let generations = runs
        .into_iter()
        .map(|mut run| {
            let stop = run.finish();
            let first = run.first.unwrap_or(0.0);
            Generation {
                stats: GenerationStats {
                    prompt_tokens: run.prompt.len(),
                    reused_tokens: 0,
                    generated_tokens: run.ids.len(),
                    prefill_seconds: first,
                    decode_seconds: wall - first,
                    time_to_first_token: first,
                    stop,
                },
                ids: run.ids,
                text: run.text,
            }
        })
        .collect();
    Ok(ManyGenerations {
        generations,
        wall_seconds: wall,
        prefill_wall_seconds: prefill_wall,
        steady_tokens: steady,
    })
}

/// Submits the next batch of `run`'s prompt as one step.
fn submit_prompt_batch(
    backend: &mut dyn SequenceBackend,
    seq: u32,
    run: &mut SequenceRun,
) -> Result<(), ModelError> {
    let step = run.next_prompt_step(seq);
    backend.submit(seq, &step.tokens, step.pos)?;
    Ok(())
}
