//! The orchestration core: everything a front end needs to drive a model
//! on one process or a cluster, written once. It owns the nodes (spawned
//! here or reached at addresses), the open model, plans and the fit check,
//! loading and re-sharding, generation (one or many sequences, streamed,
//! cancellable), and the typed reports front ends render: nodes, links,
//! plan, stats, trace and bench.
//!
//! `shardlab run`, `shardlab bench`, the shell's `Session`, the Jupyter
//! kernel (through the session) and the HTTP server are thin layers over
//! an [`Orchestrator`]. Each figure is computed in one place here; front
//! ends only turn reports into text, HTML, SVG or JSON.
//!
//! While a generation runs, [`Monitor`] (a cheap clone) reads the live
//! per-node step counters and the last step's timeline without touching
//! the connections the generation is using.
//!
//! One file per job: `nodes` (connect, links, kill), `model` (the open
//! model and prompt encoding), `layout` (plan, shard), `generation`,
//! `stats`, `trace`, `bench`, `monitor`, `report` (the typed results).

mod bench;
mod cluster_run;
mod discover;
mod error;
mod generation;
mod kv_room;
mod layout;
mod model;
mod monitor;
mod nodes;
mod recovery;
pub mod report;
mod score;
pub mod serving;
mod speed;
mod stats;
mod trace;

use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::coordinator::Cluster;
use crate::cluster::heartbeat::Liveness;
use crate::cluster::link_settings::LinkSettings;
use crate::model::generate::GenerationStats;
use crate::model::kv_type::KvType;
use crate::model::store::ModelStore;
use crate::model::transformer::Transformer;
use crate::net::LinkProfile;
use crate::net::LinkSecurity;
use crate::parallel::WireDtype;
use crate::shard::plan::speed::Workload;
use crate::shard::plan::{KvSpec, LayoutRequest};

pub use bench::{BenchEvent, BenchRequest};
pub use error::OrchestratorError;
pub use kv_room::KvRoom;
pub use model::OpenModel;
pub use monitor::{LiveNode, LiveSnapshot, Monitor};
pub use nodes::{NodeSet, NodesSpec};
pub use recovery::{survivor_layout, Recovery, RecoveryFailed, RecoveryHook};

/// The coordinator's step deadline unless configured.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Fixed for the life of an orchestrator; read from the environment and
/// the command line at the edge.
#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    pub store: ModelStore,
    /// The `shardlab` binary that local nodes run as `shardlab node`.
    pub node_exe: PathBuf,
    /// Worker threads per local node unless a connect says otherwise.
    pub threads_per_node: usize,
    /// How long one generation step may take across the cluster before the
    /// silent node is named.
    pub step_timeout: Duration,
    /// How the coordinator introduces itself to nodes ("shell", "run", ...).
    pub client_name: String,
}

/// What runs prompts right now.
enum Runner {
    /// Nothing loaded yet (or unloaded).
    Idle,
    /// The whole model in this process.
    InProcess(Box<Transformer>),
    /// Sharded across the connected nodes with this layout.
    Cluster(LayoutRequest),
}

pub struct Orchestrator {
    config: OrchestratorConfig,
    nodes: Option<NodeSet>,
    model: Option<OpenModel>,
    runner: Runner,
    /// Counts every change of runner, so state kept beside one (the
    /// server's per-sequence caches) can tell it is gone.
    runner_epoch: u64,
    /// Token ids the runner's KV cache holds (sequence 0).
    cached: Vec<u32>,
    /// KV positions to plan for; `None`: the model's own, capped.
    pub context: Option<usize>,
    /// Precision of activations between nodes, applied at each shard.
    pub wire: WireDtype,
    /// Precision of the KV cache, applied at each shard.
    pub kv: KvType,
    /// The prompt and generation lengths `:plan` predicts speed for.
    pub workload: Workload,
    /// The link emulated on the cluster's connections, now and after later connects.
    link: Option<LinkProfile>,
    /// Heartbeat silence on every connection of the cluster.
    liveness: Liveness,
    /// Sealed or plaintext links, from the next connect.
    security: LinkSecurity,
    last: Option<GenerationStats>,
    /// Tokens run through the runner since it loaded, for per-token traffic.
    tokens_since_load: u64,
    /// Node addresses used so far, newest last.
    addresses_used: Vec<String>,
    monitor: Monitor,
    /// Whether a node lost mid-generation is recovered from, what each
    /// sequence's cache holds for that, and the recoveries made.
    recovery: recovery::RecoveryState,
}

impl Orchestrator {
    pub fn new(config: OrchestratorConfig) -> Self {
        Self {
            config,
            nodes: None,
            model: None,
            runner: Runner::Idle,
            runner_epoch: 0,
            cached: Vec::new(),
            context: None,
            wire: WireDtype::default(),
            kv: KvType::default(),
            workload: Workload::default(),
            link: None,
            liveness: Liveness::default(),
            security: LinkSecurity::default(),
            last: None,
            tokens_since_load: 0,
            addresses_used: Vec::new(),
            monitor: Monitor::default(),
            recovery: recovery::RecoveryState::on(),
        }
    }

    pub fn config(&self) -> &OrchestratorConfig {
        &self.config
    }

    pub fn model(&self) -> Option<&OpenModel> {
        self.model.as_ref()
    }

    /// The open model, or the error that says to open one.
    pub fn require_model(&self) -> Result<&OpenModel, OrchestratorError> {
        self.model.as_ref().ok_or(OrchestratorError::NoModel)
    }

    pub fn nodes(&self) -> Option<&NodeSet> {
        self.nodes.as_ref()
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.nodes.as_ref().map(|n| &n.cluster)
    }

    /// The layout in place: `Some(Single)` for this process, `None` when idle.
    pub fn layout(&self) -> Option<LayoutRequest> {
        match &self.runner {
            Runner::Idle => None,
            Runner::InProcess(_) => Some(LayoutRequest::Single),
            Runner::Cluster(l) => Some(l.clone()),
        }
    }

    /// Whether the model runs across nodes now.
    pub fn is_sharded(&self) -> bool {
        matches!(self.runner, Runner::Cluster(_))
    }

    pub fn last_generation(&self) -> Option<&GenerationStats> {
        self.last.as_ref()
    }

    pub fn link(&self) -> Option<&LinkProfile> {
        self.link.as_ref()
    }

    /// Addresses of nodes used so far, newest last.
    pub fn addresses_used(&self) -> &[String] {
        &self.addresses_used
    }

    /// A handle that reads live metrics while a generation runs.
    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    /// KV positions every node plans for with the open model.
    pub fn planned_context(&self) -> Result<usize, OrchestratorError> {
        Ok(self.require_model()?.context(self.context))
    }

    /// The KV cache the next shard reserves: positions and precision.
    pub(crate) fn kv_spec(&self) -> Result<KvSpec, OrchestratorError> {
        Ok(KvSpec::new(self.planned_context()?, self.kv))
    }

    /// Makes `model` the open one; the previous model's weights are freed.
    /// True when something was loaded before.
    pub fn set_model(&mut self, model: OpenModel) -> bool {
        let had = self.unload();
        self.model = Some(model);
        had
    }

    /// Closes the open model; returns it and whether weights were loaded.
    pub fn close_model(&mut self) -> (Option<OpenModel>, bool) {
        let had = self.unload();
        (self.model.take(), had)
    }

    /// Drops whatever runs the model (the cluster's shards, or this
    /// process's copy); true when something was loaded.
    pub fn unload(&mut self) -> bool {
        let was = !matches!(self.runner, Runner::Idle);
        if let (Runner::Cluster(_), Some(n)) = (&self.runner, self.nodes.as_mut()) {
            n.cluster.unload();
        }
        self.set_runner(Runner::Idle);
        self.cached.clear();
        self.tokens_since_load = 0;
        self.monitor.reset(0);
        was
    }

    /// Forgets the KV cache of sequence 0 (a new conversation).
    pub fn forget_cache(&mut self) {
        self.cached.clear();
    }

    fn set_runner(&mut self, runner: Runner) {
        self.runner = runner;
        self.runner_epoch += 1;
        self.recovery.held.clear();
    }

    /// Whether a node lost during a generation is recovered from (on by
    /// default): re-plan on the survivors, rebuild the caches by replay,
    /// go on. Off, the generation fails naming the node, as before.
    /// Sealed (the default) or plaintext links, from the next connect on
    /// (the handshake chooses; a connected cluster keeps what it has).
    pub fn set_link_security(&mut self, security: LinkSecurity) {
        self.security = security;
    }

    /// What the next connect will choose.
    pub fn link_security(&self) -> LinkSecurity {
        self.security
    }

    fn link_settings(&self) -> LinkSettings {
        LinkSettings {
            liveness: self.liveness,
            security: self.security,
        }
    }

    pub fn set_recover(&mut self, on: bool) {
        self.recovery.enabled = on;
    }

    pub fn recovers(&self) -> bool {
        self.recovery.enabled
    }

    /// Called with each recovery as it happens.
    pub fn on_recovery(&mut self, hook: Option<RecoveryHook>) {
        self.recovery.hook = hook;
    }

    /// The recoveries made since the last call, oldest first.
    pub fn take_recoveries(&mut self) -> Vec<Recovery> {
        std::mem::take(&mut self.recovery.log)
    }

    /// After a generation or a serving turn: the layout a recovery put in
    /// place becomes the runner's. The epoch stays, because every
    /// sequence's cache was rebuilt: what a server holds stays valid.
    fn adopt_recovery(&mut self) {
        if let Some(layout) = self.recovery.new_layout.take() {
            self.runner = Runner::Cluster(layout);
            self.tokens_since_load = 0;
        }
    }

    /// The error a failed step gives: why the recovery failed, when one
    /// was tried. The failed nodes are gone by then and nothing is loaded,
    /// so the next prompt asks for a `:shard`.
    fn step_error(&mut self, e: crate::model::error::ModelError) -> OrchestratorError {
        match self.recovery.failed.take() {
            Some(f) => {
                self.set_runner(Runner::Idle);
                if self
                    .nodes
                    .as_ref()
                    .is_some_and(|n| n.cluster.nodes().is_empty())
                {
                    self.nodes = None;
                }
                OrchestratorError::Recovery(f)
            }
            None => e.into(),
        }
    }

    /// Releases the nodes (local node processes stop).
    pub fn shutdown(&mut self) {
        self.set_runner(Runner::Idle);
        self.nodes = None;
        self.cached.clear();
    }
}

#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;
