//! Generation on whatever runs the model now: one sequence (streamed,
//! cancellable, reusing the KV cache across chat turns) or many at once
//! (sequences in flight across the nodes). Every collected step is folded
//! into the [`Monitor`](super::Monitor) as it arrives.

use std::sync::atomic::AtomicBool;

use crate::model::error::ModelError;
use crate::model::generate::{
    generate, generate_many, Backend, GenerateOptions, Generation, ManyGenerations, SequenceBackend,
};
use crate::model::loader::OpenedModel;
use crate::model::local_sequences::{LocalSequences, ParkedCaches};
use crate::model::transformer::Transformer;
use crate::parallel::WireDtype;
use crate::shard::plan::KvSpec;

use super::cluster_run::ClusterRun;
use super::model::OpenModel;
use super::monitor::Monitor;
use super::nodes::NodeSet;
use super::recovery::{RecoveryState, Reload};
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
        let tokenizer = self.require_model()?.tokenizer.clone();
        let monitor = self.monitor.clone();
        let mut cached = std::mem::take(&mut self.cached);
        // Fails only when nothing is loaded, when no cache is held anyway.
        let mut backend = self.parts().sequence_backend()?;
        monitor.generation_started();
        let result = generate(
            backend.as_mut(),
            &tokenizer,
            &mut cached,
            ids,
            opts,
            cancel,
            on_text,
        );
        drop(backend);
        self.cached = cached;
        self.adopt_recovery();
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
                Err(self.step_error(e))
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
        if !self.is_sharded() {
            return Err(OrchestratorError::NothingLoaded);
        }
        let tokenizer = self.require_model()?.tokenizer.clone();
        let monitor = self.monitor.clone();
        self.cached.clear();
        let mut parked = ParkedCaches::default();
        let mut backend = self.parts().sequences_backend(&mut parked)?;
        monitor.generation_started();
        let result = generate_many(backend.as_mut(), &tokenizer, prompts, opts, cancel);
        drop(backend);
        self.adopt_recovery();
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
                Err(self.step_error(e))
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

/// Disjoint borrows of what a backend needs from the orchestrator, so a
/// generation can hold the backend and the tokenizer at once.
pub(super) struct Parts<'a> {
    runner: &'a mut Runner,
    nodes: Option<&'a mut NodeSet>,
    monitor: &'a Monitor,
    recovery: &'a mut RecoveryState,
    pub model: Option<&'a OpenModel>,
    kv: Option<KvSpec>,
    wire: WireDtype,
}

impl Orchestrator {
    pub(super) fn parts(&mut self) -> Parts<'_> {
        let kv = self.kv_spec().ok();
        Parts {
            runner: &mut self.runner,
            nodes: self.nodes.as_mut(),
            monitor: &self.monitor,
            recovery: &mut self.recovery,
            model: self.model.as_ref(),
            kv,
            wire: self.wire,
        }
    }
}

/// What runs the model now, borrowed for one generation.
enum Target<'a> {
    InProcess(&'a mut Transformer),
    Cluster(ClusterRun<'a>),
}

impl<'a> Parts<'a> {
    /// The in-process model, or the cluster as a backend that reports to
    /// the monitor, tracks what each sequence holds, and recovers when a
    /// node is lost.
    fn target(self) -> Result<Target<'a>, OrchestratorError> {
        match (self.runner, self.nodes) {
            (Runner::InProcess(t), _) => Ok(Target::InProcess(t.as_mut())),
            (Runner::Cluster(layout), Some(n)) => {
                let reload = match (self.model, self.kv) {
                    (Some(model), Some(kv)) => Some(Reload {
                        model,
                        kv,
                        wire: self.wire,
                        monitor: self.monitor,
                    }),
                    _ => None,
                };
                Ok(Target::Cluster(ClusterRun::new(
                    &mut n.cluster,
                    self.monitor,
                    self.recovery,
                    reload,
                    layout.clone(),
                )))
            }
            _ => Err(OrchestratorError::NothingLoaded),
        }
    }

    /// What runs sequence 0 now.
    pub fn sequence_backend(self) -> Result<Box<dyn Backend + 'a>, OrchestratorError> {
        Ok(match self.target()? {
            Target::InProcess(t) => Box::new(InProcess(t)),
            Target::Cluster(c) => Box::new(c),
        })
    }

    /// What runs several sequences now: the in-process model with one KV
    /// cache per sequence (`parked` holds the others), or the cluster.
    pub fn sequences_backend(
        self,
        parked: &'a mut ParkedCaches,
    ) -> Result<Box<dyn SequenceBackend + 'a>, OrchestratorError> {
        Ok(match self.target()? {
            Target::InProcess(t) => Box::new(LocalSequences::new(t, parked)),
            Target::Cluster(c) => Box::new(c),
        })
    }
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
