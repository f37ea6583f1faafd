//! The open model, before and apart from where it runs: its header,
//! tokenizer and chat template. Weights load at `shard` (or at the first
//! prompt with no nodes). Prompts are rendered and encoded here, once for
//! every front end.

use std::path::{Path, PathBuf};

use crate::model::chat::{ChatMessage, ChatTemplate};
use crate::model::config::ModelConfig;
use crate::model::loader::{OpenedModel, DEFAULT_CONTEXT};
use crate::model::store::{ModelSource, PullEvent};
use crate::model::tokenizer::Tokenizer;
use crate::shard::plan::ModelSummary;

use super::{Orchestrator, OrchestratorError};

pub struct OpenModel {
    /// What the user typed: `smollm2`, a path.
    pub name: String,
    pub source: ModelSource,
    pub path: PathBuf,
    pub opened: OpenedModel,
    pub config: ModelConfig,
    /// Tensor types and shapes, for planning (GGUF files only).
    pub summary: Option<ModelSummary>,
    /// Shared, so a generation can hold it beside the orchestrator.
    pub tokenizer: std::sync::Arc<Tokenizer>,
    pub template: Option<ChatTemplate>,
    /// Size on disk (the file, every shard of a split GGUF, or every file
    /// of a directory).
    pub file_bytes: u64,
    /// Files a split GGUF is stored in; 1 for anything else.
    pub split_files: usize,
}

impl Orchestrator {
    /// Resolves `name` through the store (installing an alias on first
    /// use) and reads everything but the weights. [`Orchestrator::set_model`]
    /// makes it the open one.
    pub fn open_model(
        &self,
        name: &str,
        on_pull: &mut dyn FnMut(PullEvent),
    ) -> Result<OpenModel, OrchestratorError> {
        let source = self.config.store.resolve(name, on_pull)?;
        OpenModel::open_source(name, source)
    }
}

impl OpenModel {
    /// Opens an already resolved source.
    pub fn open_source(name: &str, source: ModelSource) -> Result<Self, OrchestratorError> {
        let (opened, config) = OpenedModel::open(&source)?;
        let tokenizer = opened.tokenizer()?;
        let template = opened.chat_template(&tokenizer)?;
        let summary = match &opened {
            OpenedModel::Gguf(file) => Some(ModelSummary::from_gguf(file)?),
            OpenedModel::Hf { .. } => None,
        };
        let path = opened.path().to_path_buf();
        let (file_bytes, split_files) = match &opened {
            OpenedModel::Gguf(file) => (file.file_bytes(), file.shards().len()),
            OpenedModel::Hf { .. } => (dir_or_file_bytes(&path), 1),
        };
        Ok(Self {
            name: name.to_string(),
            source,
            path,
            opened,
            config,
            summary,
            tokenizer: std::sync::Arc::new(tokenizer),
            template,
            file_bytes,
            split_files,
        })
    }

    /// The planning summary; Hugging Face directories have none yet.
    pub fn summary(&self) -> Result<&ModelSummary, OrchestratorError> {
        self.summary
            .as_ref()
            .ok_or_else(|| OrchestratorError::NotGguf {
                model: self.name.clone(),
            })
    }

    /// Weight bytes: the tensors' sizes for GGUF, the files' for a directory.
    pub fn weight_bytes(&self) -> u64 {
        self.summary
            .as_ref()
            .map_or(self.file_bytes, |s| s.total_weight_bytes())
    }

    /// KV positions to plan for: `requested`, else the engine's default,
    /// capped at what the model was trained for.
    pub fn context(&self, requested: Option<usize>) -> usize {
        requested
            .unwrap_or(DEFAULT_CONTEXT)
            .min(self.config.train_context.max(1))
    }

    /// `messages` through the chat template, ready for the assistant's turn.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, OrchestratorError> {
        let template = self
            .template
            .as_ref()
            .ok_or(OrchestratorError::NoChatTemplate)?;
        template
            .render(messages, true)
            .map_err(|e| OrchestratorError::setup("rendering the chat template", e))
    }

    /// Token ids of `text`, with the model's start-of-text token.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, OrchestratorError> {
        self.tokenizer
            .encode(text, true)
            .map_err(|e| OrchestratorError::setup("tokenizing the prompt", e))
    }

    /// A prompt of exactly `n` tokens of ordinary text (benchmarks).
    pub fn filler(&self, n: usize) -> Result<Vec<u32>, OrchestratorError> {
        const FILLER: &str =
            "The quick brown fox jumps over the lazy dog while the cluster counts tokens. ";
        let mut text = String::from(FILLER);
        loop {
            let ids = self.encode(&text)?;
            if ids.len() >= n {
                return Ok(ids[..n].to_vec());
            }
            text.push_str(FILLER);
        }
    }
}

fn dir_or_file_bytes(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}
