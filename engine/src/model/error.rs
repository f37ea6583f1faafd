//! Errors from loading and running a model.

use super::gguf::GgufError;
use crate::cluster::coordinator::ClusterError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{source_name}: tensor '{tensor}' is missing")]
    MissingTensor { source_name: String, tensor: String },
    #[error("{source_name}: tensor '{tensor}': {problem}")]
    BadTensor {
        source_name: String,
        tensor: String,
        problem: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("position {needed} is past the context of {context} tokens; start a new sequence or load with a larger --ctx")]
    ContextFull { needed: usize, context: usize },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    BadToken { id: u32, vocab: usize },
    /// A tensor group's exchange failed; `peer_closed` as for
    /// `NetError::peer_closed`.
    #[error("{message}")]
    Collective { message: String, peer_closed: bool },
    /// One sequence of a batched step could not run (nothing of the step ran).
    #[error("sequence {seq}: {source}")]
    InSequence {
        seq: u32,
        #[source]
        source: Box<ModelError>,
    },
    /// A cluster step failed: which node, in which phase, and why.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{0}")]
    Other(String),
}
