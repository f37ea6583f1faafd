//! A queued job's events turned into an HTTP answer: one JSON body once the
//! generation ends, or server-sent events as text becomes final, ending
//! with `data: [DONE]`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use shardlab_engine::model::generate::{GenerationStats, StopReason};
use shardlab_engine::orchestrator::serving::ServeEvent;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::api::{
    ChatChoice, ChatChunk, ChatChunkChoice, ChatMessageOut, ChatResponse, CompletionChoice,
    CompletionResponse, Delta, Usage,
};
use crate::error::ApiError;

/// Which endpoint's shapes to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

/// What every chunk and body of one answer shares.
#[derive(Debug, Clone)]
pub struct Answer {
    pub endpoint: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub prompt_tokens: usize,
}

impl Answer {
    pub fn new(endpoint: Endpoint, model: &str, prompt_tokens: usize, serial: u64) -> Self {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completion => "cmpl",
        };
        Self {
            endpoint,
            id: format!("{prefix}-{created:x}{serial:08x}"),
            created,
            model: model.to_string(),
            prompt_tokens,
        }
    }
}

/// OpenAI's name for why a generation ended.
fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::Eos | StopReason::StopString | StopReason::Cancelled => "stop",
        StopReason::MaxTokens | StopReason::ContextFull => "length",
    }
}

/// Waits for the whole generation and answers it as one body.
pub async fn whole(answer: Answer, mut events: UnboundedReceiver<ServeEvent>) -> Response {
    let mut text = String::new();
    let stats = loop {
        match events.recv().await {
            Some(ServeEvent::Text(piece)) => text.push_str(&piece),
            Some(ServeEvent::Done(stats)) => break stats,
            Some(ServeEvent::Failed(failure)) => return ApiError::from(failure).into_response(),
            Some(ServeEvent::Started { .. }) => {}
            None => return ApiError::unavailable("the scheduler stopped").into_response(),
        }
    };
    let usage = Usage::new(answer.prompt_tokens, &stats);
    let reason = finish_reason(stats.stop);
    match answer.endpoint {
        Endpoint::Chat => Json(ChatResponse {
            id: answer.id,
            object: "chat.completion",
            created: answer.created,
            model: answer.model,
            choices: vec![ChatChoice {
                index: 0,
                message: ChatMessageOut {
                    role: "assistant",
                    content: text,
                },
                finish_reason: reason,
                logprobs: None,
            }],
            usage,
        })
        .into_response(),
        Endpoint::Completion => Json(CompletionResponse {
            id: answer.id,
            object: "text_completion",
            created: answer.created,
            model: answer.model,
            choices: vec![CompletionChoice {
                index: 0,
                text,
                finish_reason: Some(reason),
                logprobs: None,
            }],
            usage: Some(usage),
        })
        .into_response(),
    }
}

/// Answers as server-sent events. Dropping the stream (the client left)
/// drops `events`, which cancels the sequence.
pub fn streamed(
    answer: Answer,
    events: UnboundedReceiver<ServeEvent>,
    include_usage: bool,
) -> Response {
    let mut first = VecDeque::new();
    if answer.endpoint == Endpoint::Chat {
        let delta = Delta {
            role: Some("assistant"),
            content: Some(String::new()),
        };
        first.push_back(chunk(delta_text(&answer, delta, None)));
    }
    let state = Streaming {
        answer,
        events,
        include_usage,
        ready: first,
        over: false,
    };
    Sse::new(event_stream(state)).into_response()
}

struct Streaming {
    answer: Answer,
    events: UnboundedReceiver<ServeEvent>,
    include_usage: bool,
    /// Events to send before reading the next engine event.
    ready: VecDeque<Event>,
    /// Nothing more comes from the engine.
    over: bool,
}

fn event_stream(state: Streaming) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.ready.pop_front() {
                return Some((Ok(event), s));
            }
            if s.over {
                return None;
            }
            match s.events.recv().await {
                Some(ServeEvent::Text(piece)) => {
                    let body = text_chunk(&s.answer, piece, None);
                    s.ready.push_back(chunk(body));
                }
                Some(ServeEvent::Done(stats)) => {
                    s.finish(&stats);
                    s.over = true;
                }
                Some(ServeEvent::Failed(failure)) => {
                    s.ready
                        .push_back(Event::default().data(ApiError::from(failure).json()));
                    s.over = true;
                }
                Some(ServeEvent::Started { .. }) => {}
                None => {
                    let e = ApiError::unavailable("the scheduler stopped");
                    s.ready.push_back(Event::default().data(e.json()));
                    s.over = true;
                }
            }
        }
    })
}

impl Streaming {
    /// The closing chunk with the finish reason, the usage chunk if asked, `[DONE]`.
    fn finish(&mut self, stats: &GenerationStats) {
        let a = &self.answer;
        let reason = Some(finish_reason(stats.stop));
        let last = match a.endpoint {
            Endpoint::Chat => delta_text(a, Delta::default(), reason),
            Endpoint::Completion => text_chunk(a, String::new(), reason),
        };
        self.ready.push_back(chunk(last));
        if self.include_usage {
            let usage = Some(Usage::new(a.prompt_tokens, stats));
            let body = match a.endpoint {
                Endpoint::Chat => to_json(&ChatChunk {
                    id: a.id.clone(),
                    object: "chat.completion.chunk",
                    created: a.created,
                    model: a.model.clone(),
                    choices: Vec::new(),
                    usage,
                }),
                Endpoint::Completion => to_json(&CompletionResponse {
                    id: a.id.clone(),
                    object: "text_completion",
                    created: a.created,
                    model: a.model.clone(),
                    choices: Vec::new(),
                    usage,
                }),
            };
            self.ready.push_back(Event::default().data(body));
        }
        self.ready.push_back(Event::default().data("[DONE]"));
    }
}

fn chunk(body: String) -> Event {
    Event::default().data(body)
}

/// A chunk carrying new text, in the endpoint's shape.
fn text_chunk(a: &Answer, text: String, reason: Option<&'static str>) -> String {
    match a.endpoint {
        Endpoint::Chat => delta_text(
            a,
            Delta {
                role: None,
                content: Some(text),
            },
            reason,
        ),
        Endpoint::Completion => to_json(&CompletionResponse {
            id: a.id.clone(),
            object: "text_completion",
            created: a.created,
            model: a.model.clone(),
            choices: vec![CompletionChoice {
                index: 0,
                text,
                finish_reason: reason,
                logprobs: None,
            }],
            usage: None,
        }),
    }
}

fn delta_text(a: &Answer, delta: Delta, reason: Option<&'static str>) -> String {
    to_json(&ChatChunk {
        id: a.id.clone(),
        object: "chat.completion.chunk",
        created: a.created,
        model: a.model.clone(),
        choices: vec![ChatChunkChoice {
            index: 0,
            delta,
            finish_reason: reason,
            logprobs: None,
        }],
        usage: None,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| ApiError::invalid(e.to_string()).json())
}
