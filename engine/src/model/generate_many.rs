//! Several generations at once on a [`SequenceBackend`]: the sequences ride
//! in lanes, one lane per batch the backend keeps busy (a pipeline's stage
//! count). A lane's steps go as one batch, so each node reads its weights
//! once per lane's step, and the lanes follow one another through the
//! stages, so every stage has a batch to work on.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::error::ModelError;
use super::generate::{
    rate, GenerateOptions, Generation, GenerationStats, SeqStep, SequenceBackend,
};
use super::sequence::SequenceRun;
use super::tokenizer::Tokenizer;

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
    /// Batches that were kept in flight (the backend's lanes, at most one
    /// per prompt).
    pub lanes: usize,
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

/// One sequence of the run and what it waits for.
struct Member {
    run: SequenceRun,
    /// The token sampled from its last logits, to run in its lane's next batch.
    next: Option<u32>,
    /// Generation ended (a stop, the token limit, the context, a cancel).
    ended: bool,
}

impl Member {
    /// Its step in its lane's next batch, if it has one.
    fn step(&mut self, seq: u32) -> Option<SeqStep> {
        if self.ended {
            None
        } else if self.run.prefilling() {
            Some(self.run.next_prompt_step(seq))
        } else {
            self.next.take().map(|t| self.run.token_step(seq, t))
        }
    }
}

/// Generates a continuation of every prompt at once, sequence `i` for
/// prompt `i`. Sequence `i` rides in lane `i % lanes`; each lane's next
/// batch goes out as soon as its last one comes back, so up to `lanes`
/// batches are in flight. Each sequence's tokens are what
/// [`super::generate::generate`] gives for its prompt alone (same sampler
/// settings, seeded the same): a row's logits do not depend on the rows
/// beside it. The backend's sequences start empty.
pub fn generate_many(
    backend: &mut dyn SequenceBackend,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    cancel: Option<&AtomicBool>,
) -> Result<ManyGenerations, ModelError> {
    let mut members = Vec::with_capacity(prompts.len());
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
        members.push(Member {
            run: SequenceRun::new(prompt.clone(), tokenizer, opts)?,
            next: None,
            ended: false,
        });
    }
    let lanes = backend.lanes().clamp(1, prompts.len().max(1));
    let started = Instant::now();
    for seq in 0..members.len() {
        backend.reset(seq as u32)?;
    }
    // The lanes in flight, oldest batch first (the order they come back in).
    let mut order: VecDeque<usize> = VecDeque::new();
    for lane in 0..lanes {
        if submit_lane(backend, &mut members, lane, lanes)? {
            order.push_back(lane);
        }
    }
    let mut prefilled = 0;
    let mut prefill_wall = 0.0;
    let mut steady = 0;
    while let Some(lane) = order.pop_front() {
        for (seq, logits) in backend.collect()? {
            let m = members
                .get_mut(seq as usize)
                .ok_or_else(|| ModelError::Other(format!("logits for unknown sequence {seq}")))?;
            if m.run.prefilling() {
                continue;
            }
            if m.run.first.is_none() {
                m.run.first = Some(started.elapsed().as_secs_f64());
                prefilled += 1;
                if prefilled == prompts.len() {
                    prefill_wall = started.elapsed().as_secs_f64();
                }
            } else if prefilled == prompts.len() {
                steady += 1;
            }
            match m
                .run
                .advance(&logits, tokenizer, opts, backend.context(), cancel)?
            {
                Some(next) => m.next = Some(next),
                None => m.ended = true,
            }
        }
        if submit_lane(backend, &mut members, lane, lanes)? {
            order.push_back(lane);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let generations = members
        .into_iter()
        .map(|m| {
            let mut run = m.run;
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
        lanes,
    })
}

/// Submits the next step of every member of `lane` that has one, as one
/// batch; false when none has (the lane is done).
fn submit_lane(
    backend: &mut dyn SequenceBackend,
    members: &mut [Member],
    lane: usize,
    lanes: usize,
) -> Result<bool, ModelError> {
    let batch: Vec<SeqStep> = members
        .iter_mut()
        .enumerate()
        .skip(lane)
        .step_by(lanes)
        .filter_map(|(seq, m)| m.step(seq as u32))
        .collect();
    if batch.is_empty() {
        return Ok(false);
    }
    backend.submit(&batch)?;
    Ok(true)
}
