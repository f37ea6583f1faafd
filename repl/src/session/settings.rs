//! `:set`: the generation settings, and `:reset` of the chat turns.

use shardlab_engine::model::generate::GenerateOptions;
use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::model::sampling::SamplingParams;
use shardlab_engine::parallel::WireDtype;

use super::{Session, SessionError};
use crate::command::Setting;
use crate::output::{Output, Table};

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    /// KV cache positions to plan for; `None`: the model's own, capped at
    /// the engine's default.
    pub context: Option<usize>,
    pub chat: bool,
    pub system: Option<String>,
    /// Keep generating past end-of-text tokens (long runs, benchmarks).
    pub ignore_eos: bool,
    /// Precision of activations between nodes, applied at each `:shard`.
    pub wire: WireDtype,
    /// Precision of the KV cache, applied at each `:shard`.
    pub kv: KvType,
    /// Recover from a node lost mid-generation.
    pub recover: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sampling: SamplingParams::default(),
            max_tokens: 128,
            context: None,
            chat: false,
            system: None,
            ignore_eos: false,
            wire: WireDtype::default(),
            kv: KvType::default(),
            recover: true,
        }
    }
}

impl Settings {
    pub fn generate_options(&self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self.max_tokens,
            sampling: self.sampling.clone(),
            stop_strings: Vec::new(),
            stop_at_eos: !self.ignore_eos,
        }
    }

    fn rows(&self) -> Vec<(&'static str, String)> {
        let s = &self.sampling;
        vec![
            ("temperature", format!("{}", s.temperature)),
            ("top_k", s.top_k.to_string()),
            ("top_p", format!("{}", s.top_p)),
            ("min_p", format!("{}", s.min_p)),
            ("repeat_penalty", format!("{}", s.repetition_penalty)),
            ("seed", s.seed.to_string()),
            ("max_tokens", self.max_tokens.to_string()),
            (
                "context",
                self.context
                    .map_or("model default".into(), |c| c.to_string()),
            ),
            ("chat", if self.chat { "on" } else { "off" }.to_string()),
            (
                "system",
                self.system.clone().unwrap_or_else(|| "(none)".into()),
            ),
            (
                "ignore_eos",
                if self.ignore_eos { "on" } else { "off" }.to_string(),
            ),
            ("wire", self.wire.to_string()),
            ("kv", self.kv.to_string()),
            (
                "recover",
                if self.recover { "on" } else { "off" }.to_string(),
            ),
        ]
    }
}

impl Session {
    pub(super) fn set(&mut self, setting: Option<Setting>) -> Result<Output, SessionError> {
        let Some(setting) = setting else {
            let mut t = Table::new(&["setting", "value"]);
            for (k, v) in self.settings.rows() {
                t.row(vec![k.into(), v.into()]);
            }
            return Ok(Output::Table(t));
        };
        let key = setting.key();
        let mut next = self.settings.clone();
        let s = &mut next.sampling;
        let mut note = None;
        match setting {
            Setting::Temperature(v) => s.temperature = v,
            Setting::TopK(v) => s.top_k = v,
            Setting::TopP(v) => s.top_p = v,
            Setting::MinP(v) => s.min_p = v,
            Setting::RepeatPenalty(v) => s.repetition_penalty = v,
            Setting::Seed(v) => s.seed = v,
            Setting::MaxTokens(v) => next.max_tokens = v,
            Setting::Context(v) => {
                next.context = Some(v);
                note = Some("takes effect at the next :shard");
            }
            Setting::Chat(on) => {
                if on && self.core.model().is_some_and(|m| m.template.is_none()) {
                    return Err(SessionError::state(
                        "the open model has no chat template; chat mode needs one",
                    ));
                }
                next.chat = on;
                if !on {
                    self.chat.clear();
                }
            }
            Setting::System(text) => next.system = text,
            Setting::IgnoreEos(on) => next.ignore_eos = on,
            Setting::Recover(on) => next.recover = on,
            Setting::Wire(w) => {
                next.wire = w;
                note = Some("takes effect at the next :shard");
            }
            Setting::Kv(k) => {
                next.kv = k;
                note = Some("takes effect at the next :shard");
            }
        }
        next.sampling
            .validate()
            .map_err(|e| SessionError::state(e.to_string()))?;
        self.settings = next;
        let value = self
            .settings
            .rows()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map_or_else(String::new, |(_, v)| v);
        let line = format!("{key} = {value}");
        Ok(Output::text(match note {
            Some(n) => format!("{line} ({n})"),
            None => line,
        }))
    }

    pub(super) fn reset(&mut self) -> Output {
        let turns = self.chat.len();
        self.chat.clear();
        Output::text(format!("forgot {turns} chat messages"))
    }
}
