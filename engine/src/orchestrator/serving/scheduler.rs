//! The serving loop. Each turn admits waiting jobs into free sequence
//! slots, runs one step of every sequence in flight together (a prompt
//! batch for those still prefilling, the sampled token for the others),
//! hands each client its new text, and retires the sequences that stopped.
//! Sequences join and leave between steps; none waits for another to end.

use std::time::{Duration, Instant};

use super::queue::JobEnd;
use super::{EventSink, ServeEvent, ServeFailure, ServeJob, ServePrompt, ServeQueue};
use crate::model::generate::{GenerateOptions, GenerationStats, SeqStep, SequenceBackend};
use crate::model::local_sequences::MAX_LOCAL_SEQUENCES;
use crate::model::sequence::SequenceRun;
use crate::model::tokenizer::Tokenizer;
use crate::orchestrator::generation::sequences_backend;
use crate::orchestrator::{OpenModel, Orchestrator, OrchestratorError};

/// How long an idle scheduler sleeps before looking at the queue again
/// (a pushed job wakes it at once; this only bounds noticing a close).
const IDLE_WAIT: Duration = Duration::from_millis(200);

impl Orchestrator {
    /// Serves `queue`'s jobs until it is closed and the sequences in flight
    /// have finished, or until a step fails: then the sequences in flight
    /// have been failed, the jobs still queued wait, and the caller decides
    /// (re-plan on the survivors and serve again, say). At most `parallel`
    /// sequences run at once, each with its own KV cache.
    pub fn serve(
        &mut self,
        queue: &ServeQueue,
        parallel: usize,
    ) -> Result<ServeEnd, OrchestratorError> {
        let parallel = parallel.clamp(1, MAX_LOCAL_SEQUENCES as usize) as u32;
        // Sequence 0's cache is reused, so the chat-turn cache is stale after.
        self.cached.clear();
        let monitor = self.monitor.clone();
        let model = self.model.as_ref().ok_or(OrchestratorError::NoModel)?;
        let backend = sequences_backend(&mut self.runner, self.nodes.as_mut(), &monitor)?;
        let mut scheduler = Scheduler {
            context: backend.context(),
            backend,
            model,
            queue,
            active: Vec::new(),
            free: (0..parallel).rev().collect(),
            broken: None,
        };
        Ok(scheduler.run())
    }
}

/// Why [`Orchestrator::serve`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeEnd {
    /// The queue was closed and everything in flight finished.
    Closed,
    /// A step (or resetting a sequence) failed with this message; the jobs
    /// in flight were failed with it.
    StepFailed(String),
}

struct Scheduler<'a> {
    backend: Box<dyn SequenceBackend + 'a>,
    model: &'a OpenModel,
    queue: &'a ServeQueue,
    context: usize,
    active: Vec<Active<'a>>,
    /// Sequence ids not in use.
    free: Vec<u32>,
    /// Set when the backend failed: the loop ends after this turn.
    broken: Option<String>,
}

/// A sequence in flight and the client it answers.
struct Active<'a> {
    seq: u32,
    run: SequenceRun<'a>,
    opts: GenerateOptions,
    sink: EventSink,
    started: Instant,
    /// The token sampled last step, to run this step.
    pending: Option<u32>,
    /// Bytes of `run.text` already sent.
    sent: usize,
    /// Set once the sequence is over, with how it ended.
    end: Option<Ending>,
}

enum Ending {
    Finished,
    ClientGone,
    Failed(ServeFailure),
}

impl<'a> Scheduler<'a> {
    fn run(&mut self) -> ServeEnd {
        loop {
            if let Some(message) = self.broken.take() {
                self.queue.set_in_flight(0);
                return ServeEnd::StepFailed(message);
            }
            if self.active.is_empty() {
                match self.queue.take(IDLE_WAIT) {
                    Err(()) => return ServeEnd::Closed,
                    Ok(Some(job)) => self.admit(job),
                    Ok(None) => continue,
                }
            }
            while !self.free.is_empty() && self.broken.is_none() {
                match self.queue.try_take() {
                    Some(job) => self.admit(job),
                    None => break,
                }
            }
            self.queue.set_in_flight(self.active.len());
            if !self.active.is_empty() {
                self.step();
                self.retire_ended();
                self.queue.set_in_flight(self.active.len());
            }
        }
    }

    /// Tokenizes `job`'s prompt and gives it a sequence slot, or tells its
    /// client why not.
    fn admit(&mut self, mut job: ServeJob) {
        let ids = match self.encode(&job.prompt) {
            Ok(ids) => ids,
            Err(failure) => return self.refuse(&mut job.sink, failure),
        };
        let tokenizer: &'a Tokenizer = &self.model.tokenizer;
        let run = match SequenceRun::new(ids, tokenizer, &job.opts) {
            Ok(run) => run,
            Err(e) => return self.refuse(&mut job.sink, ServeFailure::BadPrompt(e.to_string())),
        };
        let Some(seq) = self.free.pop() else {
            // Only admitted while a slot is free.
            return self.refuse(
                &mut job.sink,
                ServeFailure::Engine("no free sequence".into()),
            );
        };
        if let Err(e) = self.backend.reset(seq) {
            self.free.push(seq);
            self.broken = Some(e.to_string());
            return self.refuse(&mut job.sink, ServeFailure::Engine(e.to_string()));
        }
        let prompt_tokens = run.prompt.len();
        if !(job.sink)(ServeEvent::Started { prompt_tokens }) {
            self.free.push(seq);
            self.queue.count_end(JobEnd::Cancelled);
            return;
        }
        self.active.push(Active {
            seq,
            run,
            opts: job.opts,
            sink: job.sink,
            started: Instant::now(),
            pending: None,
            sent: 0,
            end: None,
        });
    }

    fn encode(&self, prompt: &ServePrompt) -> Result<Vec<u32>, ServeFailure> {
        let text = match prompt {
            ServePrompt::Chat(messages) => self
                .model
                .render_chat(messages)
                .map_err(|e| ServeFailure::BadPrompt(e.to_string()))?,
            ServePrompt::Text(text) => text.clone(),
        };
        let ids = self
            .model
            .encode(&text)
            .map_err(|e| ServeFailure::BadPrompt(e.to_string()))?;
        if ids.is_empty() {
            return Err(ServeFailure::BadPrompt("the prompt has no tokens".into()));
        }
        if ids.len() >= self.context {
            return Err(ServeFailure::ContextLength {
                prompt: ids.len(),
                context: self.context,
            });
        }
        Ok(ids)
    }

    fn refuse(&self, sink: &mut EventSink, failure: ServeFailure) {
        sink(ServeEvent::Failed(failure));
        self.queue.count_end(JobEnd::Failed);
    }

    /// One step of every sequence in flight, then each one's new text.
    fn step(&mut self) {
        let steps: Vec<SeqStep> = self
            .active
            .iter_mut()
            .map(|a| match a.pending.take() {
                Some(token) => a.run.token_step(a.seq, token),
                None => a.run.next_prompt_step(a.seq),
            })
            .collect();
        let logits = match self.backend.step_many(&steps) {
            Ok(logits) => logits,
            Err(e) => {
                // A failed step leaves every sequence's cache in doubt.
                let failure = ServeFailure::Engine(e.to_string());
                for a in &mut self.active {
                    a.end = Some(Ending::Failed(failure.clone()));
                }
                self.broken = Some(e.to_string());
                return;
            }
        };
        let tokenizer: &'a Tokenizer = &self.model.tokenizer;
        for (a, logits) in self.active.iter_mut().zip(logits) {
            if a.run.prefilling() {
                continue;
            }
            if a.run.first.is_none() {
                a.run.first = Some(a.started.elapsed().as_secs_f64());
            }
            match a
                .run
                .advance(&logits, tokenizer, &a.opts, self.context, None)
            {
                Ok(Some(token)) => a.pending = Some(token),
                Ok(None) => {
                    a.run.finish();
                    a.end = Some(Ending::Finished);
                }
                Err(e) => a.end = Some(Ending::Failed(ServeFailure::Engine(e.to_string()))),
            }
            if a.run.text.len() > a.sent {
                let piece = a.run.text[a.sent..].to_string();
                a.sent = a.run.text.len();
                if !(a.sink)(ServeEvent::Text(piece)) {
                    a.end = Some(Ending::ClientGone);
                }
            }
        }
    }

    /// Tells each ended sequence's client how it ended and frees its slot.
    fn retire_ended(&mut self) {
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].end.is_none() {
                i += 1;
                continue;
            }
            let mut a = self.active.swap_remove(i);
            self.free.push(a.seq);
            let generated = a.run.ids.len();
            self.queue.count_tokens(a.run.prompt.len(), generated);
            match a.end.take() {
                Some(Ending::Finished) => {
                    let wall = a.started.elapsed().as_secs_f64();
                    let first = a.run.first.unwrap_or(wall);
                    let stats = GenerationStats {
                        prompt_tokens: a.run.prompt.len(),
                        reused_tokens: 0,
                        generated_tokens: generated,
                        prefill_seconds: first,
                        decode_seconds: wall - first,
                        time_to_first_token: first,
                        stop: a
                            .run
                            .stop
                            .unwrap_or(crate::model::generate::StopReason::MaxTokens),
                    };
                    let end = if (a.sink)(ServeEvent::Done(stats)) {
                        JobEnd::Done
                    } else {
                        JobEnd::Cancelled
                    };
                    self.queue.count_end(end);
                }
                Some(Ending::ClientGone) => self.queue.count_end(JobEnd::Cancelled),
                Some(Ending::Failed(failure)) => {
                    (a.sink)(ServeEvent::Failed(failure));
                    self.queue.count_end(JobEnd::Failed);
                }
                None => {}
            }
        }
    }
}
