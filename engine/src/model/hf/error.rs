//! Errors from reading and writing Hugging Face model directories. Every
//! variant names the file, and the key or tensor where there is one, so a
//! user can find the problem without a debugger.

use std::path::PathBuf;

use crate::model::error::ModelError;
use crate::model::gguf::GgufError;

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// A JSON file that does not parse, or whose shape is wrong overall.
    #[error("{path}: {problem}")]
    Json { path: PathBuf, problem: String },
    /// One key of `config.json` (or another JSON file) is missing or wrong.
    #[error("{path}: key '{key}': {problem}")]
    Key {
        path: PathBuf,
        key: String,
        problem: String,
    },
    /// A safetensors header that cannot be trusted as a whole.
    #[error("{path}: bad safetensors header: {problem}")]
    Header { path: PathBuf, problem: String },
    /// One tensor of a safetensors file (or of the GGUF being converted).
    #[error("{path}: tensor '{tensor}': {problem}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        problem: String,
    },
    /// The directory as a whole: no weights found, output already present...
    #[error("{path}: {problem}")]
    Dir { path: PathBuf, problem: String },
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

impl HfError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub(crate) fn key(path: impl Into<PathBuf>, key: &str, problem: impl Into<String>) -> Self {
        Self::Key {
            path: path.into(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    pub(crate) fn tensor(
        path: impl Into<PathBuf>,
        tensor: &str,
        problem: impl Into<String>,
    ) -> Self {
        Self::Tensor {
            path: path.into(),
            tensor: tensor.to_string(),
            problem: problem.into(),
        }
    }
}

/// Loading code that speaks [`ModelError`] can use `?` on HF errors; the
/// message (file, key, tensor) is kept whole.
impl From<HfError> for ModelError {
    fn from(e: HfError) -> Self {
        match e {
            HfError::Gguf(g) => ModelError::Gguf(g),
            other => ModelError::Other(other.to_string()),
        }
    }
}
