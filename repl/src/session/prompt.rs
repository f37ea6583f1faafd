//! Prompts: any line that is not a command. Tokens stream to the sink as
//! they become final; the output is the summary. In chat mode the turns
//! accumulate (and the KV cache is reused) until `:reset`.

use shardlab_engine::model::chat::ChatMessage;

use super::{Session, SessionError, Sink};
use crate::output::{GenerationReport, Output, Rich, Varies};

impl Session {
    pub(super) fn prompt(
        &mut self,
        text: &str,
        sink: &mut dyn Sink,
    ) -> Result<Output, SessionError> {
        self.core.ensure_runner(&mut |name| {
            sink.note(&Rich::from(format!("loading {name} into this process")))
        })?;
        let mut messages = self.chat.clone();
        let ids = {
            let m = self.core.require_model()?;
            let rendered = if self.settings.chat {
                if messages.is_empty() {
                    if let Some(system) = &self.settings.system {
                        messages.push(ChatMessage::new("system", system.clone()));
                    }
                }
                messages.push(ChatMessage::new("user", text));
                m.render_chat(&messages)?
            } else {
                text.to_string()
            };
            m.encode(&rendered)?
        };
        let opts = self.settings.generate_options();
        let generation = self
            .core
            .generate(&ids, &opts, Some(&self.cancel), &mut |piece| {
                sink.text(piece)
            });
        // After the text, so the answer reads whole: one line per recovery.
        for r in self.core.take_recoveries() {
            let mut lits = self.literals();
            lits.push((format!("{:.2} s", r.seconds), Varies::Time));
            sink.note(&Rich::masking(&r.to_string(), &lits));
        }
        let generation = generation?;
        if self.settings.chat {
            messages.push(ChatMessage::new("assistant", generation.text.clone()));
            self.chat = messages;
        }
        let layout = self
            .core
            .is_sharded()
            .then(|| self.core.layout().map(|l| l.to_string()))
            .flatten();
        Ok(Output::Generation(GenerationReport {
            text: generation.text,
            stats: generation.stats,
            layout,
        }))
    }
}
