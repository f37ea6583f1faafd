//! Prompts: any line that is not a command. Tokens stream to the sink as
//! they become final; the output is the summary. In chat mode the turns
//! accumulate (and the KV cache is reused) until `:reset`.

use std::sync::atomic::Ordering;

use shardlab_engine::model::chat::ChatMessage;
use shardlab_engine::model::generate::{generate, Backend, GenerateOptions, Generation};

use super::{Runner, Session, SessionError, Sink};
use crate::output::{GenerationReport, Output};

impl Session {
    pub(super) fn prompt(
        &mut self,
        text: &str,
        sink: &mut dyn Sink,
    ) -> Result<Output, SessionError> {
        let m = self.model.as_ref().ok_or(SessionError::NoModel)?;
        if matches!(self.runner, Runner::Idle) {
            if let Some(n) = &self.nodes {
                return Err(SessionError::state(format!(
                    "{} is not sharded over the {} connected nodes yet: `:shard tensor` (`:plan tensor` shows the split first)",
                    m.name,
                    n.cluster.nodes().len()
                )));
            }
            self.shard(&shardlab_engine::shard::plan::LayoutRequest::Single, sink)?;
        }
        let mut messages = self.chat.clone();
        let ids = {
            let m = self.model.as_ref().ok_or(SessionError::NoModel)?;
            let rendered = if self.settings.chat {
                let template = m.template.as_ref().ok_or_else(|| {
                    SessionError::state("the open model has no chat template: `:set chat off`")
                })?;
                if messages.is_empty() {
                    if let Some(system) = &self.settings.system {
                        messages.push(ChatMessage::new("system", system.clone()));
                    }
                }
                messages.push(ChatMessage::new("user", text));
                template
                    .render(&messages, true)
                    .map_err(|e| SessionError::state(e.to_string()))?
            } else {
                text.to_string()
            };
            m.tokenizer
                .encode(&rendered, true)
                .map_err(|e| SessionError::state(e.to_string()))?
        };
        let opts = self.settings.generate_options();
        let generation = self.run_generation(&ids, &opts, sink)?;
        if self.settings.chat {
            messages.push(ChatMessage::new("assistant", generation.text.clone()));
            self.chat = messages;
        }
        let s = &generation.stats;
        self.tokens_since_load +=
            (s.prompt_tokens - s.reused_tokens + s.generated_tokens.saturating_sub(1)) as u64;
        self.last = Some(s.clone());
        let layout = match &self.runner {
            Runner::Cluster(l) => Some(l.to_string()),
            _ => None,
        };
        Ok(Output::Generation(GenerationReport {
            text: generation.text,
            stats: generation.stats,
            layout,
        }))
    }

    /// Runs `ids` on whatever runs the model now. On failure the KV cache
    /// state is unknown, so the cached prefix is forgotten.
    pub(super) fn run_generation(
        &mut self,
        ids: &[u32],
        opts: &GenerateOptions,
        sink: &mut dyn Sink,
    ) -> Result<Generation, SessionError> {
        let m = self.model.as_ref().ok_or(SessionError::NoModel)?;
        let backend: &mut dyn Backend = match (&mut self.runner, self.nodes.as_mut()) {
            (Runner::InProcess(t), _) => t.as_mut(),
            (Runner::Cluster(_), Some(n)) => &mut n.cluster,
            _ => {
                return Err(SessionError::state(
                    "nothing is loaded: `:shard LAYOUT` first",
                ))
            }
        };
        self.cancel.store(false, Ordering::Relaxed);
        let result = generate(
            backend,
            &m.tokenizer,
            &mut self.cached,
            ids,
            opts,
            Some(&self.cancel),
            &mut |piece| sink.text(piece),
        );
        result.map_err(|e| {
            self.cached.clear();
            SessionError::from(e)
        })
    }
}
