//! The serving loop, one turn at a time. Each turn admits waiting jobs
//! into free sequence slots, runs one step of every sequence in flight
//! together (a prompt batch for those still prefilling, the sampled token
//! for the others), hands each client its new text, and retires the
//! sequences that stopped. Sequences join and leave between steps; none
//! waits for another to end.
//!
//! Everything a turn needs between turns lives in [`Serving`], which owns
//! it, so the orchestrator is free between turns: the workbench runs
//! `:stats`, `:trace` or `:shard` there while the server keeps its clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::queue::JobEnd;
use super::slots::{FreeSlots, Slot};
use super::{EventSink, ServeEvent, ServeFailure, ServeJob, ServePrompt, ServeQueue};
use crate::model::generate::{
    GenerateOptions, GenerationStats, SeqStep, SequenceBackend, StopReason,
};
use crate::model::local_sequences::{ParkedCaches, MAX_LOCAL_SEQUENCES};
use crate::model::sequence::SequenceRun;
use crate::orchestrator::{KvRoom, OpenModel, Orchestrator, OrchestratorError};

/// How long an idle scheduler sleeps before looking at the queue again
/// (a pushed job wakes it at once; this only bounds noticing a close).
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// The most sequences one server generates at once (sequence 0 is the
/// workbench's own).
pub const MAX_PARALLEL: usize = MAX_LOCAL_SEQUENCES as usize - 1;

/// Why [`Orchestrator::serve`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeEnd {
    /// The queue was closed and everything in flight finished.
    Closed,
    /// A step (or resetting a sequence) failed with this message; the jobs
    /// in flight were failed with it.
    StepFailed(String),
}

/// What one [`Orchestrator::serve_turn`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// Nothing to run: the queue stayed empty for the wait.
    Idle,
    /// Sequences in flight took a step.
    Stepped,
    /// The queue is closed and nothing is in flight.
    Closed,
    /// A step failed with this message; the sequences in flight were
    /// failed with it. Until the runner changes (a re-plan), later turns
    /// answer every job with it.
    StepFailed(String),
}

/// The server's side of serving, kept between turns: the queue, the
/// sequences in flight, the free slots and, for the in-process model, the
/// parked KV caches. It belongs to one runner: when the orchestrator loads
/// or re-shards, the next turn fails what was in flight and starts afresh.
pub struct Serving {
    queue: Arc<ServeQueue>,
    parallel: u32,
    active: Vec<Active>,
    free: FreeSlots,
    parked: ParkedCaches,
    /// The orchestrator's runner epoch the slots and caches belong to.
    epoch: Option<u64>,
    /// Set when a step failed: jobs get this until the runner changes.
    broken: Option<String>,
    /// KV positions the sequences in flight may fill together, from the
    /// runner's memory (`None`: unknown, no limit).
    kv_room: Option<KvRoom>,
    /// At most this many, whatever memory allows.
    kv_cap: Option<usize>,
}

/// A sequence in flight and the client it answers.
struct Active {
    slot: Slot,
    run: SequenceRun,
    opts: GenerateOptions,
    sink: EventSink,
    started: Instant,
    reused: usize,
    /// KV positions it may fill: prompt plus `max_tokens`, up to the context.
    reserve: usize,
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

impl Serving {
    /// Serving `queue`'s jobs, at most `parallel` sequences at once, each
    /// with its own KV cache.
    pub fn new(queue: Arc<ServeQueue>, parallel: usize) -> Self {
        let parallel = parallel.clamp(1, MAX_PARALLEL) as u32;
        Self {
            queue,
            parallel,
            active: Vec::new(),
            free: FreeSlots::new(parallel),
            parked: ParkedCaches::default(),
            epoch: None,
            broken: None,
            kv_room: None,
            kv_cap: None,
        }
    }

    /// Admits requests only while their KV positions together stay within
    /// `positions`, even where memory holds more.
    pub fn cap_kv_positions(mut self, positions: usize) -> Self {
        self.kv_cap = Some(positions);
        self
    }

    /// KV positions the requests in flight may fill together, and the node
    /// that limits it; `None` when unknown.
    pub fn kv_room(&self) -> Option<KvRoom> {
        let cap = |positions| KvRoom {
            positions,
            node: "the cap set for this server".into(),
        };
        match (&self.kv_room, self.kv_cap) {
            (Some(room), Some(c)) if c < room.positions => Some(cap(c)),
            (None, Some(c)) => Some(cap(c)),
            (room, _) => room.clone(),
        }
    }

    /// KV positions reserved by the requests in flight.
    pub fn kv_reserved(&self) -> usize {
        self.active.iter().map(|a| a.reserve).sum()
    }

    pub fn queue(&self) -> &Arc<ServeQueue> {
        &self.queue
    }

    /// Sequences generated at once.
    pub fn parallel(&self) -> usize {
        self.parallel as usize
    }

    /// Sequences in flight now.
    pub fn in_flight(&self) -> usize {
        self.active.len()
    }

    /// Why jobs are being failed, while a failed step waits for a re-plan.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Fails every sequence in flight and every waiting job with `why`
    /// (the server is stopping, or there is nothing to serve with).
    pub fn fail_all(&mut self, why: ServeFailure) {
        self.fail_all_in_flight(why.clone());
        while let Some(mut job) = self.queue.try_take() {
            self.refuse(&mut job.sink, why.clone());
        }
    }

    /// Starts afresh on the runner of `epoch`, whose KV memory holds
    /// `kv_room`: what was in flight belonged to the runner before it.
    fn renew(&mut self, epoch: u64, kv_room: Option<KvRoom>) {
        if self.epoch.is_some() {
            self.fail_all_in_flight(ServeFailure::Engine(
                "the model was re-planned while this request ran".into(),
            ));
        }
        self.free = FreeSlots::new(self.parallel);
        self.parked.clear();
        self.broken = None;
        self.epoch = Some(epoch);
        self.kv_room = kv_room;
    }

    fn fail_all_in_flight(&mut self, why: ServeFailure) {
        for a in &mut self.active {
            a.end = Some(Ending::Failed(why.clone()));
        }
        self.retire_ended();
    }

    fn refuse(&self, sink: &mut EventSink, failure: ServeFailure) {
        sink(ServeEvent::Failed(failure));
        self.queue.count_end(JobEnd::Failed);
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
            let generated = a.run.ids.len();
            self.queue.count_tokens(a.run.prompt.len(), generated);
            let end = match a.end.take() {
                Some(Ending::Finished) => {
                    let stats = stats_of(&a, generated);
                    if (a.sink)(ServeEvent::Done(stats)) {
                        JobEnd::Done
                    } else {
                        JobEnd::Cancelled
                    }
                }
                Some(Ending::ClientGone) => JobEnd::Cancelled,
                Some(Ending::Failed(failure)) => {
                    // The cache may hold part of a step that failed.
                    a.slot.holds.clear();
                    (a.sink)(ServeEvent::Failed(failure));
                    JobEnd::Failed
                }
                None => JobEnd::Failed,
            };
            self.queue.count_end(end);
            self.free.give_back(a.slot);
        }
        self.queue.set_in_flight(self.active.len());
    }
}

fn stats_of(a: &Active, generated: usize) -> GenerationStats {
    let wall = a.started.elapsed().as_secs_f64();
    let first = a.run.first.unwrap_or(wall);
    GenerationStats {
        prompt_tokens: a.run.prompt.len(),
        reused_tokens: a.reused,
        generated_tokens: generated,
        prefill_seconds: first,
        decode_seconds: wall - first,
        time_to_first_token: first,
        stop: a.run.stop.unwrap_or(StopReason::MaxTokens),
    }
}

impl Orchestrator {
    /// Serves `queue`'s jobs until it is closed and the sequences in flight
    /// have finished, or until a step fails: then the sequences in flight
    /// have been failed, the jobs still queued wait, and the caller decides
    /// (re-plan on the survivors and serve again, say). At most `parallel`
    /// sequences run at once, each with its own KV cache.
    pub fn serve(
        &mut self,
        queue: &Arc<ServeQueue>,
        parallel: usize,
    ) -> Result<ServeEnd, OrchestratorError> {
        let mut serving = Serving::new(queue.clone(), parallel);
        loop {
            match self.serve_turn(&mut serving, IDLE_WAIT)? {
                Turn::Closed => return Ok(ServeEnd::Closed),
                Turn::StepFailed(message) => return Ok(ServeEnd::StepFailed(message)),
                Turn::Idle | Turn::Stepped => {}
            }
        }
    }

    /// One turn of serving: admits what waits, runs one step of every
    /// sequence in flight, retires those that ended. With nothing in
    /// flight it waits up to `wait` for a job. Errors only when there is
    /// nothing to serve with (no model loaded).
    pub fn serve_turn(
        &mut self,
        serving: &mut Serving,
        wait: Duration,
    ) -> Result<Turn, OrchestratorError> {
        if serving.epoch != Some(self.runner_epoch) {
            serving.renew(self.runner_epoch, self.kv_room().ok());
        }
        if let Some(message) = serving.broken.clone() {
            return Ok(refuse_while_broken(serving, &message, wait));
        }
        // Lent to the backend for the turn, and handed back after it.
        let mut parked = std::mem::take(&mut serving.parked);
        let monitor = self.monitor.clone();
        let parts = self.parts();
        let model = parts.model.ok_or(OrchestratorError::NoModel)?;
        let mut tokens_run = 0;
        let turn = match parts.sequences_backend(&mut parked) {
            Ok(mut backend) => {
                let mut run = TurnRun {
                    context: backend.context(),
                    serving: &mut *serving,
                    model,
                    tokens_run: 0,
                    decoded: 0,
                };
                let turn = run.run(backend.as_mut(), wait);
                // Per-token figures (`:stats`) count served tokens too.
                tokens_run = run.tokens_run;
                monitor.count_tokens(run.tokens_run, run.decoded);
                Ok(turn)
            }
            Err(e) => Err(e),
        };
        serving.parked = parked;
        self.adopt_recovery();
        self.tokens_since_load += tokens_run;
        turn
    }
}

/// After a failed step: each job is answered with the failure until the
/// runner changes.
fn refuse_while_broken(serving: &mut Serving, message: &str, wait: Duration) -> Turn {
    match serving.queue.take(wait) {
        Err(()) => Turn::Closed,
        Ok(Some(mut job)) => {
            let why = ServeFailure::Engine(format!(
                "{message}; no request is served until the model is re-planned"
            ));
            serving.refuse(&mut job.sink, why);
            Turn::Idle
        }
        Ok(None) => Turn::Idle,
    }
}

/// One turn's view: the serving state and the model it runs on.
struct TurnRun<'t> {
    serving: &'t mut Serving,
    model: &'t OpenModel,
    context: usize,
    /// Tokens this turn ran through the model.
    tokens_run: u64,
    /// Of those, sampled tokens (not prompt).
    decoded: u64,
}

impl TurnRun<'_> {
    fn run(&mut self, backend: &mut dyn SequenceBackend, wait: Duration) -> Turn {
        if self.serving.active.is_empty() {
            match self.serving.queue.take(wait) {
                Err(()) => return Turn::Closed,
                // With nothing in flight, a job that fits the room at all fits now.
                Ok(Some(job)) => {
                    if let Some(job) = self.admit(job, backend) {
                        self.serving.queue.put_back(job);
                        return Turn::Idle;
                    }
                }
                Ok(None) => return Turn::Idle,
            }
        }
        while !self.serving.free.is_empty() && self.serving.broken.is_none() {
            let Some(job) = self.serving.queue.try_take() else {
                break;
            };
            if let Some(waits) = self.admit(job, backend) {
                // First in line still, once sequences in flight free KV room.
                self.serving.queue.put_back(waits);
                break;
            }
        }
        self.serving.queue.set_in_flight(self.serving.active.len());
        if !self.serving.active.is_empty() {
            self.step(backend);
            self.serving.retire_ended();
        }
        match &self.serving.broken {
            Some(message) => Turn::StepFailed(message.clone()),
            None => Turn::Stepped,
        }
    }

    /// Tokenizes `job`'s prompt and gives it a sequence slot (the one whose
    /// cache shares the longest prefix with it), or tells its client why
    /// not. Hands the job back when its KV positions do not fit beside
    /// those in flight yet.
    fn admit(&mut self, mut job: ServeJob, backend: &mut dyn SequenceBackend) -> Option<ServeJob> {
        let ids = match self.encode(&job.prompt) {
            Ok(ids) => ids,
            Err(failure) => {
                self.serving.refuse(&mut job.sink, failure);
                return None;
            }
        };
        let reserve = (ids.len() + job.opts.max_tokens).min(self.context);
        if let Some(room) = self.serving.kv_room() {
            if reserve > room.positions {
                let failure = ServeFailure::KvBudget {
                    needed: reserve,
                    room: room.positions,
                    node: room.node,
                };
                self.serving.refuse(&mut job.sink, failure);
                return None;
            }
            if self.serving.kv_reserved() + reserve > room.positions {
                return Some(job);
            }
        }
        self.start(job, ids, reserve, backend);
        None
    }

    fn start(
        &mut self,
        mut job: ServeJob,
        ids: Vec<u32>,
        reserve: usize,
        backend: &mut dyn SequenceBackend,
    ) {
        let mut run = match SequenceRun::new(ids, &self.model.tokenizer, &job.opts) {
            Ok(run) => run,
            Err(e) => {
                let failure = ServeFailure::BadPrompt(e.to_string());
                return self.serving.refuse(&mut job.sink, failure);
            }
        };
        let Some((mut slot, shared)) = self.serving.free.take_for(&run.prompt) else {
            // Only admitted while a slot is free.
            let failure = ServeFailure::Engine("no free sequence".into());
            return self.serving.refuse(&mut job.sink, failure);
        };
        let reused = run.reuse_prefix(shared);
        slot.holds.truncate(reused);
        if reused == 0 {
            if let Err(e) = backend.reset(slot.seq) {
                self.serving.free.give_back(slot);
                self.serving.broken = Some(e.to_string());
                return self
                    .serving
                    .refuse(&mut job.sink, ServeFailure::Engine(e.to_string()));
            }
        }
        let prompt_tokens = run.prompt.len();
        if !(job.sink)(ServeEvent::Started { prompt_tokens }) {
            self.serving.free.give_back(slot);
            self.serving.queue.count_end(JobEnd::Cancelled);
            return;
        }
        self.serving.active.push(Active {
            slot,
            run,
            opts: job.opts,
            sink: job.sink,
            started: Instant::now(),
            reused,
            reserve,
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

    /// One step of every sequence in flight, then each one's new text.
    fn step(&mut self, backend: &mut dyn SequenceBackend) {
        self.decoded += self
            .serving
            .active
            .iter()
            .filter(|a| a.pending.is_some())
            .count() as u64;
        let steps: Vec<SeqStep> = self
            .serving
            .active
            .iter_mut()
            .map(|a| match a.pending.take() {
                Some(token) => a.run.token_step(a.slot.seq, token),
                None => a.run.next_prompt_step(a.slot.seq),
            })
            .collect();
        let logits = match backend.step_many(&steps) {
            Ok(logits) => logits,
            Err(e) => {
                // A failed step leaves every sequence's cache in doubt.
                let failure = ServeFailure::Engine(e.to_string());
                for a in &mut self.serving.active {
                    a.end = Some(Ending::Failed(failure.clone()));
                }
                self.serving.broken = Some(e.to_string());
                return;
            }
        };
        self.tokens_run += steps.iter().map(|s| s.tokens.len() as u64).sum::<u64>();
        let tokenizer = &self.model.tokenizer;
        for ((a, logits), step) in self.serving.active.iter_mut().zip(logits).zip(steps) {
            a.slot.holds.extend_from_slice(&step.tokens);
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
}
