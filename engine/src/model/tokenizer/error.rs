//! The one error type of the tokenizer module. Every variant names what was
//! at fault: the metadata key, the entry and its text, the file, or the id.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{key}: missing")]
    MissingKey { key: String },
    #[error("{key}: expected {expected}, found {found}")]
    WrongKind {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{key}: entry {index} '{value}' {problem}")]
    BadEntry {
        key: String,
        index: usize,
        value: String,
        problem: String,
    },
    #[error("{key}: has {len} entries but tokenizer.ggml.tokens has {expected}")]
    LengthMismatch {
        key: String,
        len: usize,
        expected: usize,
    },
    #[error("tokenizer model '{model}' is not supported (this engine reads 'gpt2' byte-level BPE and 'llama' SentencePiece)")]
    Unsupported { model: String },
    /// The `tokenizers` crate refused something we built or were given.
    #[error("{what}: {message}")]
    Library { what: String, message: String },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {problem}")]
    BadFile { path: PathBuf, problem: String },
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    UnknownId { id: u32, vocab: usize },
    /// Wraps an error with the file it came from.
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        source: Box<TokenizerError>,
    },
}

impl TokenizerError {
    pub(crate) fn library(what: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::Library {
            what: what.into(),
            message: err.to_string(),
        }
    }

    pub(crate) fn in_file(self, path: impl Into<PathBuf>) -> Self {
        Self::InFile {
            path: path.into(),
            source: Box::new(self),
        }
    }
}
