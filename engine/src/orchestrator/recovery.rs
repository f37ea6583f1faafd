//! Recovery after a node dies mid-generation: re-plan on the survivors,
//! reload (each survivor serves its new slices from its shard cache where
//! it has them), rebuild every sequence's KV cache by replaying the tokens
//! it held, and let the step that failed run again. The generation that was
//! running goes on; at temperature 0 on the exact wire its text is the
//! uninterrupted run's, because every layout gives one process's tokens and
//! a cache rebuilt by replay holds the same bits as one built step by step
//! (`cluster/tests/replay.rs`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::cluster::coordinator::{Cluster, ClusterError, LoadProgress, LoadSummary, ModelToLoad};
use crate::cluster::messages::{LocalModel, Phase};
use crate::model::generate::SeqStep;
use crate::model::loader::OpenedModel;
use crate::model::weights::GgufSource;
use crate::parallel::WireDtype;
use crate::shard::plan::{check_fits, plan, suggest, KvSpec, LayoutRequest, Plan, PlanError};

use super::model::OpenModel;
use super::monitor::Monitor;
use super::OrchestratorError;

/// What one recovery did, for the one line a person sees.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// The nodes that left ("node1 (127.0.0.1:7071)").
    pub lost: Vec<String>,
    /// What the cluster was doing when they left.
    pub phase: Phase,
    /// The layout now in place, over `nodes`.
    pub layout: LayoutRequest,
    pub nodes: Vec<String>,
    /// Sequences whose KV caches were rebuilt, and the tokens replayed.
    pub sequences: usize,
    pub replayed_tokens: usize,
    /// From the failure being seen to the caches rebuilt.
    pub seconds: f64,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recovered: {} left during {}; now {} over {} ({}), {} tokens replayed, in {:.2} s",
            self.lost.join(", "),
            self.phase,
            self.layout,
            plural(self.nodes.len(), "node"),
            self.nodes.join(", "),
            self.replayed_tokens,
            self.seconds
        )
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The token ids each sequence's KV cache holds on the nodes, kept in step
/// with every successful step: what a recovery replays.
#[derive(Debug, Clone, Default)]
pub(super) struct HeldTokens {
    seqs: BTreeMap<u32, Vec<u32>>,
}

impl HeldTokens {
    /// `tokens` ran at positions `pos..` of sequence `seq`.
    pub fn ran(&mut self, seq: u32, tokens: &[u32], pos: usize) {
        let held = self.seqs.entry(seq).or_default();
        held.truncate(pos);
        held.extend_from_slice(tokens);
    }

    /// Sequence `seq` now holds only positions `..pos`.
    pub fn truncate(&mut self, seq: u32, pos: usize) {
        if let Some(held) = self.seqs.get_mut(&seq) {
            held.truncate(pos);
        }
    }

    pub fn clear(&mut self) {
        self.seqs.clear();
    }

    /// Sequences holding at least one token.
    pub fn sequences(&self) -> usize {
        self.iter().count()
    }

    fn iter(&self) -> impl Iterator<Item = (u32, &[u32])> {
        self.seqs
            .iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(&s, t)| (s, t.as_slice()))
    }
}

/// Why a recovery could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{cause}; could not recover on the survivors: {why}")]
pub struct RecoveryFailed {
    pub cause: ClusterError,
    /// The nodes dropped before it gave up.
    pub lost: Vec<String>,
    pub why: Box<OrchestratorError>,
}

/// Called with each recovery as it happens (`run` prints it to stderr).
pub type RecoveryHook = Box<dyn FnMut(&Recovery) + Send>;

/// The orchestrator's recovery setting and what recoveries left behind.
#[derive(Default)]
pub(super) struct RecoveryState {
    /// `--no-recover` / `:set recover off` turn it off.
    pub enabled: bool,
    /// What every sequence's cache holds on the nodes.
    pub held: HeldTokens,
    /// Recoveries not yet taken by a front end.
    pub log: Vec<Recovery>,
    /// The layout a recovery put in place, until the orchestrator adopts it.
    pub new_layout: Option<LayoutRequest>,
    /// Why the last recovery failed, until the orchestrator reports it.
    pub failed: Option<RecoveryFailed>,
    pub hook: Option<RecoveryHook>,
    /// Local nodes to kill part way through the next generation.
    pub planned_kills: Vec<PlannedKill>,
}

/// `:kill NODE after N`: local node `index` dies once `after_steps` more
/// steps have run.
#[derive(Debug, Clone, Copy)]
pub(super) struct PlannedKill {
    pub index: usize,
    pub after_steps: usize,
}

impl RecoveryState {
    pub fn on() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }

    pub fn happened(&mut self, recovery: Recovery) {
        if let Some(hook) = self.hook.as_mut() {
            hook(&recovery);
        }
        self.new_layout = Some(recovery.layout.clone());
        self.log.push(recovery);
    }
}

/// The layout to re-plan on `survivors` nodes after `before` lost some:
/// the same kind over all of them; hand-given pipeline ranges and a hybrid
/// grid no longer match the count, so those become an even pipeline and
/// tensor.
pub fn survivor_layout(before: &LayoutRequest, survivors: usize) -> LayoutRequest {
    match before {
        LayoutRequest::Single | LayoutRequest::Tensor | LayoutRequest::Expert => before.clone(),
        LayoutRequest::Pipeline { .. } => LayoutRequest::Pipeline { layers: None },
        LayoutRequest::Hybrid { pipeline, .. }
            if survivors.is_multiple_of(*pipeline) && survivors / pipeline >= 2 =>
        {
            LayoutRequest::Hybrid {
                tensor: survivors / pipeline,
                pipeline: *pipeline,
            }
        }
        LayoutRequest::Hybrid { .. } => LayoutRequest::Tensor,
    }
}

/// What a recovery needs besides the cluster.
pub(super) struct Reload<'a> {
    pub model: &'a OpenModel,
    pub kv: KvSpec,
    pub wire: WireDtype,
    pub monitor: &'a Monitor,
}

/// Drops the failed nodes (adding them to `lost`), plans `before`'s kind
/// over the survivors (or the layout the fit check suggests when that does
/// not fit), loads it and replays `held`. Returns the layout in place and
/// the tokens replayed.
pub(super) fn recover(
    cluster: &mut Cluster,
    before: &LayoutRequest,
    held: &HeldTokens,
    reload: &Reload<'_>,
    lost: &mut Vec<String>,
) -> Result<(LayoutRequest, usize), OrchestratorError> {
    lost.extend(cluster.remove_failed());
    if cluster.nodes().is_empty() {
        return Err(OrchestratorError::NoSurvivors);
    }
    let (layout, p) = survivor_plan(cluster, before, reload)?;
    cluster.unload();
    load_plan(cluster, reload.model, &p, reload.wire, &|_| {})?;
    reload.monitor.reset(cluster.nodes().len());
    reload
        .monitor
        .name_nodes(cluster.nodes().iter().map(|h| (h.name.clone(), h.label())));
    // Every held sequence in one batch, each at its own positions; the
    // coordinator cuts it into passes of at most PREFILL_BATCH rows.
    let replay: Vec<SeqStep> = held
        .iter()
        .map(|(seq, tokens)| SeqStep {
            seq,
            tokens: tokens.to_vec(),
            pos: 0,
        })
        .collect();
    cluster.step_many(&replay)?;
    let replayed = replay.iter().map(|s| s.tokens.len()).sum();
    Ok((layout, replayed))
}

fn survivor_plan(
    cluster: &Cluster,
    before: &LayoutRequest,
    reload: &Reload<'_>,
) -> Result<(LayoutRequest, Plan), OrchestratorError> {
    let summary = reload.model.summary()?;
    let budgets = cluster.budgets();
    let layout = survivor_layout(before, budgets.len());
    let p = plan(summary, &budgets, &layout, reload.kv)?;
    match check_fits(summary, &p, &budgets) {
        Ok(()) => Ok((layout, p)),
        Err(e @ PlanError::DoesNotFit { .. }) => match suggest(summary, &budgets, reload.kv) {
            Some((other, p)) => Ok((other, p)),
            None => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Streams each node its slices of `p` (each node takes what its shard
/// cache holds from there).
pub(super) fn load_plan(
    cluster: &mut Cluster,
    m: &OpenModel,
    p: &Plan,
    wire: WireDtype,
    progress: &(dyn Fn(LoadProgress) + Sync),
) -> Result<LoadSummary, OrchestratorError> {
    let (OpenedModel::Gguf(file), Some(summary)) = (&m.opened, &m.summary) else {
        return Err(OrchestratorError::NotGguf {
            model: m.name.clone(),
        });
    };
    let model = ModelToLoad {
        name: m.name.clone(),
        config: &summary.config,
        source: &GgufSource { file },
        file: Some(LocalModel::describe(&m.path, m.file_bytes)),
    };
    cluster.wire = wire;
    Ok(cluster.load(&model, p, progress)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survivors_keep_the_layout_kind_where_the_count_allows() {
        let t = LayoutRequest::Tensor;
        assert_eq!(survivor_layout(&t, 2), t);
        let hand = LayoutRequest::Pipeline {
            layers: Some(vec![0..10, 10..20, 20..30]),
        };
        assert_eq!(
            survivor_layout(&hand, 2),
            LayoutRequest::Pipeline { layers: None }
        );
        let grid = LayoutRequest::Hybrid {
            tensor: 3,
            pipeline: 2,
        };
        assert_eq!(
            survivor_layout(&grid, 4),
            LayoutRequest::Hybrid {
                tensor: 2,
                pipeline: 2
            }
        );
        assert_eq!(survivor_layout(&grid, 5), LayoutRequest::Tensor);
        assert_eq!(survivor_layout(&grid, 2), LayoutRequest::Tensor);
    }

    #[test]
    fn held_tokens_follow_steps_and_truncation() {
        let mut held = HeldTokens::default();
        held.ran(0, &[1, 2, 3], 0);
        held.ran(0, &[4], 3);
        held.ran(2, &[9, 9], 0);
        held.ran(0, &[7], 2);
        assert_eq!(
            held.iter().collect::<Vec<_>>(),
            [(0, &[1, 2, 7][..]), (2, &[9, 9][..])]
        );
        held.truncate(2, 0);
        assert_eq!(held.iter().count(), 1);
    }
}
