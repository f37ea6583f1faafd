//! `:load`, `:unload`, `:model`: the open model, before and apart from
//! where it runs. Opening reads the header, tokenizer and chat template;
//! the weights load at `:shard` (or at the first prompt with no nodes).

use std::collections::BTreeMap;

use super::{Session, SessionError, Sink};
use crate::output::text::bytes;
use crate::output::{Output, Rich, Table, Varies};

impl Session {
    pub(super) fn load(&mut self, name: &str, sink: &mut dyn Sink) -> Result<Output, SessionError> {
        let model = self.core.open_model(name, &mut |event| sink.pull(&event))?;
        let config = &model.config;
        let line = Rich::from(format!(
            "opened {name}: {} {}, {} layers, {} heads / {} KV heads, {} weights (",
            config.arch.name(),
            config.name,
            config.n_layers,
            config.n_heads,
            config.n_kv_heads,
            bytes(model.weight_bytes()),
        ))
        .push_varies(Varies::Path, model.path.display().to_string())
        .push(")");
        if self.settings.chat && model.template.is_none() {
            self.settings.chat = false;
        }
        // A new model replaces the old one everywhere.
        let had = self.core.set_model(model);
        self.chat.clear();
        let next = if self.core.nodes().is_some() {
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

    pub(super) fn unload(&mut self) -> Output {
        match self.core.close_model() {
            (Some(m), had_weights) => Output::text(format!(
                "closed {}{}",
                m.name,
                if had_weights {
                    " and freed its weights"
                } else {
                    ""
                }
            )),
            (None, _) => Output::text("no model was open"),
        }
    }

    pub(super) fn model_info(&self) -> Result<Output, SessionError> {
        let m = self.core.require_model()?;
        let c = &m.config;
        let mut t = Table::new(&["", ""]).titled(format!("model {}", m.name));
        let mut row = |k: &str, v: Rich| t.row(vec![k.into(), v]);
        row(
            "file",
            Rich::varies(Varies::Path, m.path.display().to_string()),
        );
        if m.split_files > 1 {
            row(
                "split",
                format!("{} files; this is the first", m.split_files).into(),
            );
        }
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
        match &c.moe {
            None => row("ffn", c.ffn.to_string().into()),
            Some(moe) => {
                row(
                    "experts",
                    format!(
                        "{} experts, {} used per token{}, expert ffn {}",
                        moe.n_experts,
                        moe.n_experts_used,
                        if moe.norm_topk {
                            " (weights renormalised)"
                        } else {
                            ""
                        },
                        moe.expert_ffn
                    )
                    .into(),
                );
                if moe.shared_expert {
                    row(
                        "shared expert",
                        format!("ffn {}, sigmoid-gated", c.ffn).into(),
                    );
                }
                if !moe.dense_layers.is_empty() {
                    row(
                        "dense layers",
                        format!("{:?}, ffn {}", moe.dense_layers, c.ffn).into(),
                    );
                }
            }
        }
        row("vocabulary", c.vocab.to_string().into());
        row(
            "context",
            format!(
                "{} trained, {} planned",
                c.train_context,
                m.context(self.settings.context)
            )
            .into(),
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
