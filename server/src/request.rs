//! A validated request: OpenAI's fields turned into the engine's prompt and
//! generation options, or a 400/404 saying which field is wrong.

use std::time::{SystemTime, UNIX_EPOCH};

use shardlab_engine::model::chat::ChatMessage;
use shardlab_engine::model::generate::GenerateOptions;
use shardlab_engine::model::sampling::SamplingParams;
use shardlab_engine::orchestrator::serving::ServePrompt;

use crate::api::{ChatRequest, CompletionRequest, ContentIn, PromptIn, SamplingFields, StopIn};
use crate::error::ApiError;

/// `/v1/completions` generates this many tokens unless told, as the API does.
const COMPLETION_DEFAULT_MAX_TOKENS: usize = 16;
/// The API allows at most this many stop sequences.
const MAX_STOPS: usize = 4;

/// Which model names this server answers to.
pub struct Served {
    /// The name `/v1/models` lists.
    pub id: String,
    /// Other names accepted for it (the file's name, say).
    pub aliases: Vec<String>,
    /// Positions one sequence may hold.
    pub context: usize,
}

impl Served {
    fn check(&self, asked: &str) -> Result<(), ApiError> {
        if asked == self.id || self.aliases.iter().any(|a| a == asked) {
            Ok(())
        } else {
            Err(ApiError::model_not_found(asked, &self.id))
        }
    }
}

pub struct Prepared {
    pub prompt: ServePrompt,
    pub opts: GenerateOptions,
    pub stream: bool,
    pub include_usage: bool,
}

pub fn chat(req: ChatRequest, served: &Served) -> Result<Prepared, ApiError> {
    served.check(&req.model)?;
    if req.messages.is_empty() {
        return Err(
            ApiError::invalid("`messages` must hold at least one message").param("messages"),
        );
    }
    let messages = req
        .messages
        .into_iter()
        .map(|m| ChatMessage::new(m.role, content_text(m.content)))
        .collect();
    prepare(ServePrompt::Chat(messages), &req.sampling, served.context)
}

pub fn completion(req: CompletionRequest, served: &Served) -> Result<Prepared, ApiError> {
    served.check(&req.model)?;
    let prompt = match req.prompt {
        PromptIn::One(text) => text,
        PromptIn::Many(mut texts) if texts.len() == 1 => texts.remove(0),
        PromptIn::Many(_) => {
            return Err(
                ApiError::invalid("only one prompt per request is supported").param("prompt"),
            )
        }
    };
    prepare(
        ServePrompt::Text(prompt),
        &req.sampling,
        COMPLETION_DEFAULT_MAX_TOKENS,
    )
}

/// A message's text: the string, or its text parts joined.
fn content_text(content: Option<ContentIn>) -> String {
    match content {
        None => String::new(),
        Some(ContentIn::Text(text)) => text,
        Some(ContentIn::Parts(parts)) => parts
            .into_iter()
            .filter(|p| p.kind == "text")
            .filter_map(|p| p.text)
            .collect::<Vec<_>>()
            .join(""),
    }
}

fn prepare(
    prompt: ServePrompt,
    s: &SamplingFields,
    default_max_tokens: usize,
) -> Result<Prepared, ApiError> {
    if let Some(n) = s.n {
        if n != 1 {
            return Err(ApiError::invalid(format!(
                "n = {n}: only one choice per request is supported"
            ))
            .param("n"));
        }
    }
    let temperature = s.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(
            ApiError::invalid(format!("temperature {temperature} is outside 0..2"))
                .param("temperature"),
        );
    }
    let top_p = s.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(format!("top_p {top_p} is outside (0, 1]")).param("top_p"));
    }
    let max_tokens = match s.max_completion_tokens.or(s.max_tokens) {
        Some(0) => {
            return Err(ApiError::invalid("max_tokens must be at least 1").param("max_tokens"))
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => default_max_tokens,
    };
    let stop_strings = match &s.stop {
        None => Vec::new(),
        Some(StopIn::One(stop)) => vec![stop.clone()],
        Some(StopIn::Many(stops)) if stops.len() <= MAX_STOPS => stops.clone(),
        Some(StopIn::Many(stops)) => {
            return Err(ApiError::invalid(format!(
                "{} stop sequences: at most {MAX_STOPS} are allowed",
                stops.len()
            ))
            .param("stop"))
        }
    };
    let sampling = SamplingParams {
        temperature,
        top_p,
        top_k: 0,
        min_p: 0.0,
        repetition_penalty: 1.0,
        repeat_last_n: 0,
        seed: s.seed.unwrap_or_else(clock_seed),
    };
    Ok(Prepared {
        prompt,
        opts: GenerateOptions {
            max_tokens,
            sampling,
            stop_strings: stop_strings.into_iter().filter(|s| !s.is_empty()).collect(),
            stop_at_eos: true,
        },
        stream: s.stream,
        include_usage: s.stream_options.as_ref().is_some_and(|o| o.include_usage),
    })
}

/// A seed for requests that give none: different from one request to the next.
fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
