//! Why a command failed. Each message says what to do next where there is
//! something to do.

use shardlab_engine::orchestrator::OrchestratorError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    State(String),
    /// Everything about nodes, models, plans and generation.
    #[error(transparent)]
    Core(#[from] OrchestratorError),
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
