//! One sequence being generated among others: its prompt, sampler, stop
//! strings and detokenizer, and how far it has gone. [`super::generate::generate_many`]
//! and the server's scheduler both drive sequences through this.

use std::sync::atomic::{AtomicBool, Ordering};

use super::error::ModelError;
use super::generate::{GenerateOptions, SeqStep, StopReason};
use super::sampling::Sampler;
use super::stop::StopMatcher;
use super::tokenizer::{TokenStream, Tokenizer};
use super::transformer::PREFILL_BATCH;

pub struct SequenceRun {
    pub prompt: Vec<u32>,
    sampler: Sampler,
    stops: StopMatcher,
    detok: TokenStream,
    /// Prompt and generated ids (what the repetition penalty looks at).
    history: Vec<u32>,
    /// Generated ids.
    pub ids: Vec<u32>,
    /// Generated text that is final (stop strings held back until decided).
    pub text: String,
    /// Position of the next token to run.
    pub pos: usize,
    /// Prompt tokens submitted so far: a long prompt goes in batches of
    /// [`PREFILL_BATCH`], one step each.
    pub submitted: usize,
    /// Seconds from the start to the first logits (the end of prefill).
    pub first: Option<f64>,
    pub stop: Option<StopReason>,
}

impl SequenceRun {
    pub fn new(
        prompt: Vec<u32>,
        tokenizer: &Tokenizer,
        opts: &GenerateOptions,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            sampler: Sampler::new(opts.sampling.clone())
                .map_err(|e| ModelError::Other(e.to_string()))?,
            stops: StopMatcher::new(opts.stop_strings.clone()),
            detok: tokenizer.stream(),
            history: prompt.clone(),
            ids: Vec::new(),
            text: String::new(),
            pos: prompt.len(),
            submitted: 0,
            first: None,
            stop: None,
            prompt,
        })
    }

    /// Counts the first `tokens` of the prompt as already in the sequence's
    /// KV cache (a prefix it shares with what the cache held), so prefill
    /// starts after them. At least the last prompt token is always run,
    /// for the logits of the first sampled token.
    pub fn reuse_prefix(&mut self, tokens: usize) -> usize {
        self.submitted = tokens.min(self.prompt.len().saturating_sub(1));
        self.submitted
    }

    /// Whether part of the prompt is still to be submitted.
    pub fn prefilling(&self) -> bool {
        self.submitted < self.prompt.len()
    }

    /// The next batch of the prompt, as sequence `seq`'s step; counts it submitted.
    pub fn next_prompt_step(&mut self, seq: u32) -> SeqStep {
        let end = (self.submitted + PREFILL_BATCH).min(self.prompt.len());
        let step = SeqStep {
            seq,
            tokens: self.prompt[self.submitted..end].to_vec(),
            pos: self.submitted,
        };
        self.submitted = end;
        step
    }

    /// Sampled `token` as sequence `seq`'s next step, at `pos`; moves `pos` on.
    pub fn token_step(&mut self, seq: u32, token: u32) -> SeqStep {
        let step = SeqStep {
            seq,
            tokens: vec![token],
            pos: self.pos,
        };
        self.pos += 1;
        step
    }

    /// Samples the next token from `logits`; `None` once the sequence
    /// stops (then `stop` says why). The caller runs the token as
    /// [`Self::token_step`].
    pub fn advance(
        &mut self,
        logits: &[f32],
        tokenizer: &Tokenizer,
        opts: &GenerateOptions,
        context: usize,
        cancel: Option<&AtomicBool>,
    ) -> Result<Option<u32>, ModelError> {
        if self.ids.len() >= opts.max_tokens {
            return Ok(self.stopped(StopReason::MaxTokens));
        }
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Ok(self.stopped(StopReason::Cancelled));
        }
        let next = self.sampler.sample(logits, &self.history);
        if opts.stop_at_eos && tokenizer.eos_ids().contains(&next) {
            return Ok(self.stopped(StopReason::Eos));
        }
        self.ids.push(next);
        self.history.push(next);
        let piece = self
            .detok
            .push(tokenizer, next)
            .map_err(|e| ModelError::Other(format!("detokenizing id {next}: {e}")))?
            .unwrap_or_default();
        let (ready, stopped) = self.stops.push(&piece);
        self.text.push_str(&ready);
        if stopped {
            return Ok(self.stopped(StopReason::StopString));
        }
        if self.ids.len() >= opts.max_tokens {
            return Ok(self.stopped(StopReason::MaxTokens));
        }
        if self.pos + 1 >= context {
            return Ok(self.stopped(StopReason::ContextFull));
        }
        Ok(Some(next))
    }

    /// Ends the sequence for `why`.
    pub fn cancel(&mut self, why: StopReason) {
        self.stop = Some(why);
    }

    /// The reason it stopped, with the text a pending stop-string match held
    /// back added to `text` unless a stop string matched.
    pub fn finish(&mut self) -> StopReason {
        let stop = self.stop.unwrap_or(StopReason::MaxTokens);
        if stop != StopReason::StopString {
            let rest = self.stops.finish();
            self.text.push_str(&rest);
        }
        stop
    }

    fn stopped(&mut self, why: StopReason) -> Option<u32> {
        self.stop = Some(why);
        None
    }
}
