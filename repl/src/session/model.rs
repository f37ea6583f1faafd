//! `:load`, `:unload`, `:model`: the open model, before and apart from
//! where it runs. Opening reads the header, tokenizer and chat template;
//! the weights load at `:shard` (or at the first prompt with no nodes).

use std::collections::BTreeMap;
use std::path::PathBuf;

use shardlab_engine::model::chat::ChatTemplate;
use shardlab_engine::model::config::ModelConfig;
use shardlab_engine::model::loader::{OpenedModel, DEFAULT_CONTEXT};
use shardlab_engine::model::store::ModelSource;
use shardlab_engine::model::tokenizer::Tokenizer;
use shardlab_engine::shard::plan::ModelSummary;

use super::{Runner, Session, SessionError, Sink};
use crate::output::text::bytes;
use crate::output::{Output, Rich, Table, Varies};

pub(super) struct OpenModel {
    /// What the user typed: `smollm2`, a path.
    pub name: String,
    pub source: ModelSource,
    pub path: PathBuf,
    pub opened: OpenedModel,
    pub config: ModelConfig,
    /// Tensor types and shapes, for planning (GGUF files only).
    pub summary: Option<ModelSummary>,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
    pub file_bytes: u64,
}

impl Session {
    /// KV positions every node plans for.
    pub(super) fn context(&self, config: &ModelConfig) -> usize {
        self.settings
            .context
            .unwrap_or(DEFAULT_CONTEXT)
            .min(config.train_context.max(1))
    }

    pub(super) fn load(&mut self, name: &str, sink: &mut dyn Sink) -> Result<Output, SessionError> {
        let source = self
            .config
            .store
            .resolve(name, &mut |event| sink.pull(&event))?;
        let (opened, config) = OpenedModel::open(&source)?;
        let tokenizer = opened.tokenizer()?;
        let template = opened.chat_template(&tokenizer)?;
        let summary = match &opened {
            OpenedModel::Gguf(file) => Some(ModelSummary::from_gguf(file)?),
            OpenedModel::Hf { .. } => None,
        };
        let path = opened.path().to_path_buf();
        let file_bytes = dir_or_file_bytes(&path);
        // A new model replaces the old one everywhere.
        let had = self.unload_runner();
        let line = Rich::from(format!(
            "opened {name}: {} {}, {} layers, {} heads / {} KV heads, {} weights (",
            config.arch.name(),
            config.name,
            config.n_layers,
            config.n_heads,
            config.n_kv_heads,
            summary
                .as_ref()
                .map_or_else(|| bytes(file_bytes), |s| bytes(s.total_weight_bytes())),
        ))
        .push_varies(Varies::Path, path.display().to_string())
        .push(")");
        self.chat.clear();
        if self.settings.chat && template.is_none() {
            self.settings.chat = false;
        }
        self.model = Some(OpenModel {
            name: name.to_string(),
            source,
            path,
            opened,
            config,
            summary,
            tokenizer,
            template,
            file_bytes,
        });
        let next = if self.nodes.is_some() {
            "next: `:plan tensor` to see a split, `:shard tensor` to apply it"
        } else {
            "next: type a prompt to run it in this process, or `:connect local 2` for nodes"
        };
        let mut out = Output::Text(line);
        if had {
            out = out.then(Output::text("(the previous model was unloaded)"));
        }
        Ok(out.then(Output::text(next)))
    }

    /// Drops whatever runs the model; true when something was loaded.
    pub(super) fn unload_runner(&mut self) -> bool {
        let was = !matches!(self.runner, Runner::Idle);
        if let (Runner::Cluster(_), Some(n)) = (&self.runner, self.nodes.as_mut()) {
            n.cluster.unload();
        }
        self.runner = Runner::Idle;
        self.cached.clear();
        self.tokens_since_load = 0;
        was
    }

    pub(super) fn unload(&mut self) -> Output {
        let had_weights = self.unload_runner();
        match self.model.take() {
            Some(m) => Output::text(format!(
                "closed {}{}",
                m.name,
                if had_weights {
                    " and freed its weights"
                } else {
                    ""
                }
            )),
            None => Output::text("no model was open"),
        }
    }

    pub(super) fn model_info(&self) -> Result<Output, SessionError> {
        let m = self.model.as_ref().ok_or(SessionError::NoModel)?;
        let c = &m.config;
        let mut t = Table::new(&["", ""]).titled(format!("model {}", m.name));
        let mut row = |k: &str, v: Rich| t.row(vec![k.into(), v]);
        row(
            "file",
            Rich::varies(Varies::Path, m.path.display().to_string()),
        );
        row(
            "architecture",
            format!("{} ({})", c.arch.name(), c.name).into(),
        );
        row("layers", c.n_layers.to_string().into());
        row(
            "heads",
            format!(
                "{} query / {} KV (groups of {}), head_dim {}",
                c.n_heads,
                c.n_kv_heads,
                c.group_size(),
                c.head_dim
            )
            .into(),
        );
        row("hidden", c.hidden.to_string().into());
        row("ffn", c.ffn.to_string().into());
        row("vocabulary", c.vocab.to_string().into());
        row(
            "context",
            format!("{} trained, {} planned", c.train_context, self.context(c)).into(),
        );
        row(
            "output head",
            if c.tied_embeddings {
                "tied to the embedding"
            } else {
                "its own matrix"
            }
            .into(),
        );
        if let Some(s) = &m.summary {
            let mut mix: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
            for tensor in &s.tensors {
                let e = mix.entry(tensor.dtype.name()).or_default();
                e.0 += 1;
                e.1 += tensor.bytes();
            }
            let mix: Vec<String> = mix
                .iter()
                .map(|(k, (n, b))| format!("{k} x{n} ({})", bytes(*b)))
                .collect();
            row("tensor types", mix.join(", ").into());
            row("weights", bytes(s.total_weight_bytes()).into());
        }
        row("size on disk", bytes(m.file_bytes).into());
        row(
            "chat template",
            if m.template.is_some() { "yes" } else { "no" }.into(),
        );
        Ok(Output::Table(t))
    }
}

fn dir_or_file_bytes(path: &std::path::Path) -> u64 {
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
