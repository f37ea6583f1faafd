//! Generation on whatever runs the model now: one sequence (streamed,
//! cancellable, reusing the KV cache across chat turns) or many at once
//! (sequences in flight across the nodes). Every collected step is folded
//! into the [`Monitor`](super::Monitor) as it arrives.

use std::sync::atomic::AtomicBool;

use crate::cluster::coordinator::Cluster;
use crate::model::error::ModelError;
use crate::model::generate::{
    generate, generate_many, Backend, GenerateOptions, Generation, ManyGenerations, SeqStep,
    SequenceBackend,
};
use crate::model::loader::OpenedModel;
use crate::model::local_sequences::{LocalSequences, ParkedCaches};
use crate::model::transformer::Transformer;

use super::monitor::Monitor;
use super::nodes::NodeSet;
use super::{Orchestrator, OrchestratorError, Runner};

impl Orchestrator {
    /// Makes sure something runs the model: with no nodes, the whole model
    /// loads into this process on first use; with nodes, a layout must have
    /// been applied. `on_local_load` hears the model's name before a load here.
    pub fn ensure_runner(
        &mut self,
        on_local_load: &mut dyn FnMut(&str),
    ) -> Result<(), OrchestratorError> {
        let m = self.require_model()?;
        if !matches!(self.runner, Runner::Idle) {
            return Ok(());
        }
        if let Some(n) = &self.nodes {
            return Err(OrchestratorError::NotSharded {
                model: m.name.clone(),
                nodes: n.cluster.nodes().len(),
            });
        }
        self.shard(
            &crate::shard::plan::LayoutRequest::Single,
            &|_| {},
            on_local_load,
        )?;
        Ok(())
    }

    /// Generates a continuation of `ids` on sequence 0, streaming final text
    /// to `on_text`. Ids already in the KV cache are reused. On failure the
    /// cache state is unknown, so the cached prefix is forgotten.
    pub fn generate(
        &mut self,
        ids: &[u32],
        opts: &GenerateOptions,
        cancel: Option<&AtomicBool>,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, OrchestratorError> {
        let m = self.model.as_ref().ok_or(OrchestratorError::NoModel)?;
        let monitor = self.monitor.clone();
        let mut backend = sequence_backend(&mut self.runner, self.nodes.as_mut(), &monitor)?;
        monitor.generation_started();
        let result = generate(
            backend.as_mut(),
            &m.tokenizer,
            &mut self.cached,
            ids,
            opts,
            cancel,
            on_text,
        );
        drop(backend);
        match result {
            Ok(g) => {
                let s = &g.stats;
                let tokens = (s.prompt_tokens - s.reused_tokens
                    + s.generated_tokens.saturating_sub(1)) as u64;
                self.tokens_since_load += tokens;
                monitor.generation_finished(tokens, s.generated_tokens as u64);
                self.last = Some(s.clone());
                Ok(g)
            }
            Err(e) => {
                monitor.generation_finished(0, 0);
                self.cached.clear();
                Err(e.into())
            }
        }
    }

    /// Generates a continuation of every prompt at once, one sequence per
    /// prompt in flight across the nodes. Sequence 0's cache is reset first.
    pub fn generate_many(
        &mut self,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
        cancel: Option<&AtomicBool>,
    ) -> Result<ManyGenerations, OrchestratorError> {
        let m = self.model.as_ref().ok_or(OrchestratorError::NoModel)?;
        let monitor = self.monitor.clone();
        let (Runner::Cluster(_), Some(n)) = (&self.runner, self.nodes.as_mut()) else {
            return Err(OrchestratorError::NothingLoaded);
        };
        self.cached.clear();
        monitor.generation_started();
        let mut backend = Monitored {
            cluster: &mut n.cluster,
            monitor: &monitor,
        };
        let result = generate_many(&mut backend, &m.tokenizer, prompts, opts, cancel);
        match result {
            Ok(many) => {
                let tokens: u64 = many
                    .generations
                    .iter()
                    .map(|g| (g.stats.prompt_tokens + g.stats.generated_tokens) as u64)
                    .sum();
                let generated: u64 = many
                    .generations
                    .iter()
                    .map(|g| g.stats.generated_tokens as u64)
                    .sum();
                self.tokens_since_load += tokens;
                monitor.generation_finished(tokens, generated);
                if let Some(g) = many.generations.first() {
                    self.last = Some(g.stats.clone());
                }
                Ok(many)
            }
            Err(e) => {
                monitor.generation_finished(0, 0);
                Err(e.into())
            }
        }
    }

    /// Runs a short generation and forgets it, so the weights are paged in
    /// before anything is timed; the counters start clean afterwards.
    pub(super) fn warm_up(
        &mut self,
        ids: &[u32],
        opts: &GenerateOptions,
    ) -> Result<(), OrchestratorError> {
        let warm = GenerateOptions {
            max_tokens: 2,
            ..opts.clone()
        };
        self.generate(&ids[..8.min(ids.len())], &warm, None, &mut |_| {})?;
        match (&mut self.runner, self.nodes.as_mut()) {
            (Runner::Cluster(_), Some(n)) => {
                n.cluster.truncate_all(0)?;
                n.cluster.reset_metrics();
            }
            (Runner::InProcess(t), _) => t.truncate(0),
            _ => {}
        }
        self.after_load();
        Ok(())
    }

    /// Whether the open model can be planned and sharded (GGUF files).
    pub fn can_shard(&self) -> bool {
        self.model
            .as_ref()
            .is_some_and(|m| matches!(m.opened, OpenedModel::Gguf(_)))
    }
}

/// What runs sequence 0 now, with each cluster step reported to `monitor`.
pub(super) fn sequence_backend<'a>(
    runner: &'a mut Runner,
    nodes: Option<&'a mut NodeSet>,
    monitor: &'a Monitor,
) -> Result<Box<dyn Backend + 'a>, OrchestratorError> {
    Ok(match (runner, nodes) {
        (Runner::InProcess(t), _) => Box::new(InProcess(t.as_mut())),
        (Runner::Cluster(_), Some(n)) => Box::new(Monitored {
            cluster: &mut n.cluster,
            monitor,
        }),
        _ => return Err(OrchestratorError::NothingLoaded),
    })
}

/// What runs several sequences now: the in-process model with one KV cache
/// per sequence, or the cluster, each collected step reported to `monitor`.
pub(super) fn sequences_backend<'a>(
    runner: &'a mut Runner,
    parked: &'a mut ParkedCaches,
    nodes: Option<&'a mut NodeSet>,
    monitor: &'a Monitor,
) -> Result<Box<dyn SequenceBackend + 'a>, OrchestratorError> {
    Ok(match (runner, nodes) {
        (Runner::InProcess(t), _) => Box::new(LocalSequences::new(t.as_mut(), parked)),
        (Runner::Cluster(_), Some(n)) => Box::new(Monitored {
            cluster: &mut n.cluster,
            monitor,
        }),
        _ => return Err(OrchestratorError::NothingLoaded),
    })
}

/// The whole model in this process.
struct InProcess<'a>(&'a mut Transformer);

impl Backend for InProcess<'_> {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, ModelError> {
        Backend::forward(self.0, tokens, pos)
    }
    fn truncate(&mut self, pos: usize) -> Result<(), ModelError> {
        Backend::truncate(self.0, pos)
    }
    fn context(&self) -> usize {
        Backend::context(self.0)
    }
}

/// The cluster, with every collected step reported to the monitor.
struct Monitored<'a> {
    cluster: &'a mut Cluster,
    monitor: &'a Monitor,
}

impl Backend for Monitored<'_> {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, ModelError> {
        let logits = Backend::forward(self.cluster, tokens, pos)?;
        self.monitor.record_step(&self.cluster.last_step);
        Ok(logits)
    }
    fn truncate(&mut self, pos: usize) -> Result<(), ModelError> {
        Backend::truncate(self.cluster, pos)
    }
    fn context(&self) -> usize {
        Backend::context(self.cluster)
    }
}

impl SequenceBackend for Monitored<'_> {
    fn submit(&mut self, seq: u32, tokens: &[u32], pos: usize) -> Result<(), ModelError> {
        SequenceBackend::submit(self.cluster, seq, tokens, pos)
    }
    fn collect(&mut self) -> Result<(u32, Vec<f32>), ModelError> {
        let out = SequenceBackend::collect(self.cluster)?;
        self.monitor.record_step(&self.cluster.last_step);
        Ok(out)
    }
    fn reset(&mut self, seq: u32) -> Result<(), ModelError> {
        SequenceBackend::reset(self.cluster, seq)
    }
    /// One forward pass per step on each node; each step the nodes ran
    /// reaches the monitor.
    fn step_many(&mut self, steps: &[SeqStep]) -> Result<Vec<Vec<f32>>, ModelError> {
        let monitor = self.monitor;
        Ok(self
            .cluster
            .step_many_observed(steps, &mut |metrics| monitor.record_step(metrics))?)
    }
    fn context(&self) -> usize {
        SequenceBackend::context(self.cluster)
    }
}
