//! Why an orchestration call failed. Each message says what to do next
//! where there is something to do; front ends show it as it is.

use crate::cluster::coordinator::ClusterError;
use crate::model::error::ModelError;
use crate::model::loader::LoadError;
use crate::model::store::StoreError;
use crate::shard::plan::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("no model is open: `:load smollm2` (or a .gguf path) first")]
    NoModel,
    #[error("no nodes are connected: `:connect local 2` starts two on this machine")]
    NoNodes,
    #[error("already connected to {count} nodes: `:disconnect` first")]
    AlreadyConnected { count: usize },
    #[error("{layout} needs nodes: `:connect local 2` starts two here (or use `single` for this process)")]
    LayoutNeedsNodes { layout: String },
    #[error("{model} is a Hugging Face directory; planning and sharding take GGUF files for now (it runs in this process)")]
    NotGguf { model: String },
    #[error("{model} is not sharded over the {nodes} connected nodes yet: `:shard tensor` (`:plan tensor` shows the split first)")]
    NotSharded { model: String, nodes: usize },
    #[error("nothing is loaded: `:shard LAYOUT` first")]
    NothingLoaded,
    #[error("nothing is loaded: `:shard LAYOUT` (or a prompt, with no nodes) first")]
    NothingToMeasure,
    #[error(":trace shows a step across nodes; the model runs in this process (`:connect local 2` and `:shard tensor`)")]
    TraceInProcess,
    #[error("nothing is sharded yet: `:shard LAYOUT`, then a prompt")]
    TraceNothingSharded,
    #[error("no step has run since :shard: type a prompt first")]
    TraceNoStep,
    #[error("no nodes survive: `:connect` again, or `:disconnect` and run in this process")]
    NoSurvivors,
    #[error("the open model has no chat template: `:set chat off`")]
    NoChatTemplate,
    #[error("no node '{given}' (nodes: {known})")]
    UnknownNode { given: String, known: String },
    #[error(":kill only stops nodes this session started with `:connect local`")]
    NotLocal,
    #[error("{prompt} prompt + {generate} generated tokens do not fit the context of {context}")]
    BenchTooLong {
        prompt: usize,
        generate: usize,
        context: usize,
    },
    #[error("node addresses need --token-file FILE (each node prints where its token is)")]
    NeedsTokenFile,
    #[error("no shardlab node answered on the LAN within {seconds} s (a node advertises unless it listens on loopback or was started with --no-advertise); give addresses instead, or browse longer")]
    NoneFound { seconds: f64 },
    #[error("none of the {found} nodes found on the LAN accepted: {refusals}")]
    NoneAccepted { found: usize, refusals: String },
    #[error("no layout of the connected nodes fits: {}", tried.join("; "))]
    NothingFits { tried: Vec<String> },
    #[error("{what}: {message}")]
    Setup { what: String, message: String },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Recovery(#[from] super::recovery::RecoveryFailed),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl OrchestratorError {
    pub(crate) fn setup(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Setup {
            what: what.into(),
            message: message.to_string(),
        }
    }
}
