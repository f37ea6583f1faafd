//! From a resolved model source (a GGUF file or a Hugging Face directory) to
//! a runnable model: config, weights for a layout, tokenizer, chat template.

use std::path::{Path, PathBuf};

use super::chat::ChatTemplate;
use super::config::ModelConfig;
use super::error::ModelError;
use super::gguf::GgufModel;
use super::hf;
use super::kv_type::KvType;
use super::layout::LocalLayout;
use super::store::ModelSource;
use super::tokenizer::Tokenizer;
use super::transformer::Transformer;
use super::weights::{ModelWeights, TensorSource};

/// The default sequence limit: the model's own, capped so the KV cache of a
/// casual session stays small. `--ctx` raises it.
pub const DEFAULT_CONTEXT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Gguf(#[from] super::gguf::GgufError),
    #[error(transparent)]
    Hf(#[from] hf::HfError),
    #[error("{path}: {source}")]
    Tokenizer {
        path: PathBuf,
        source: super::tokenizer::TokenizerError,
    },
    #[error("{path}: chat template: {source}")]
    Chat {
        path: PathBuf,
        source: super::chat::ChatError,
    },
}

/// A model file opened and described, before any weights are loaded.
pub enum OpenedModel {
    /// One GGUF file, or every shard of a split one.
    Gguf(GgufModel),
    Hf {
        dir: PathBuf,
        source: hf::HfSource,
    },
}

pub struct LoadedModel {
    pub transformer: Transformer,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    pub path: PathBuf,
}

impl OpenedModel {
    pub fn open(source: &ModelSource) -> Result<(Self, ModelConfig), LoadError> {
        match source {
            ModelSource::Gguf(path) => {
                let file = GgufModel::open(path)?;
                let config = ModelConfig::from_gguf(&file)?;
                Ok((Self::Gguf(file), config))
            }
            ModelSource::HfDir(dir) => {
                let (config, source) = hf::open_hf_dir(dir)?;
                Ok((
                    Self::Hf {
                        dir: dir.clone(),
                        source,
                    },
                    config,
                ))
            }
        }
    }

    /// The file (the first shard of a split GGUF) or the directory.
    pub fn path(&self) -> &Path {
        match self {
            Self::Gguf(f) => f.path(),
            Self::Hf { dir, .. } => dir,
        }
    }

    pub fn tensors(&self) -> &dyn TensorSource {
        match self {
            Self::Gguf(file) => file,
            Self::Hf { source, .. } => source,
        }
    }

    pub fn tokenizer(&self) -> Result<Tokenizer, LoadError> {
        let path = self.path().to_path_buf();
        match self {
            Self::Gguf(file) => Tokenizer::from_gguf(file),
            Self::Hf { dir, .. } => Tokenizer::from_hf_dir(dir),
        }
        .map_err(|source| LoadError::Tokenizer { path, source })
    }

    /// The chat template the model ships, if any.
    pub fn chat_template(&self, tokenizer: &Tokenizer) -> Result<Option<ChatTemplate>, LoadError> {
        let source = match self {
            Self::Gguf(file) => file.get_str("tokenizer.chat_template")?.map(str::to_string),
            Self::Hf { dir, .. } => chat_template_from_dir(dir),
        };
        let Some(source) = source else {
            return Ok(None);
        };
        let text = |id: Option<u32>| id.and_then(|i| tokenizer.token_text(i)).unwrap_or_default();
        let bos = text(tokenizer.bos_id());
        let eos = text(tokenizer.eos_ids().first().copied());
        ChatTemplate::new(&source, &bos, &eos)
            .map(Some)
            .map_err(|source| LoadError::Chat {
                path: self.path().to_path_buf(),
                source,
            })
    }
}

/// Loads the whole model into this process.
pub fn load(source: &ModelSource, context: usize, kv: KvType) -> Result<LoadedModel, LoadError> {
    let (opened, config) = OpenedModel::open(source)?;
    kv.check_head_dim(config.head_dim)
        .map_err(|e| LoadError::Model(ModelError::Config(e)))?;
    let tokenizer = opened.tokenizer()?;
    let chat_template = opened.chat_template(&tokenizer)?;
    let layout = LocalLayout::whole(&config);
    let weights = ModelWeights::load(&config, &layout, opened.tensors())?;
    let context = context.min(config.train_context.max(1));
    Ok(LoadedModel {
        transformer: Transformer::new(config, layout, weights, context, kv),
        tokenizer,
        chat_template,
        path: opened.path().to_path_buf(),
    })
}

/// `chat_template` from a Hugging Face directory's tokenizer_config.json
/// (a string; the list-of-named-templates form takes the "default" one).
fn chat_template_from_dir(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    match &json["chat_template"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(str::to_string),
        _ => None,
    }
}
