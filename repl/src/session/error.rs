//! Why a command failed. Each message says what to do next where there is
//! something to do.

use shardlab_engine::cluster::coordinator::ClusterError;
use shardlab_engine::model::error::ModelError;
use shardlab_engine::model::loader::LoadError;
use shardlab_engine::model::store::StoreError;
use shardlab_engine::shard::plan::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no model is open: `:load smollm2` (or a .gguf path) first")]
    NoModel,
    #[error("no nodes are connected: `:connect local 2` starts two on this machine")]
    NoNodes,
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl SessionError {
    pub fn state(message: impl Into<String>) -> Self {
        SessionError::State(message.into())
    }
}
