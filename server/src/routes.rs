//! The endpoints: request in, job queued, answer out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use shardlab_engine::orchestrator::serving::{PushError, ServeEvent, ServeJob, ServeQueue};
use shardlab_engine::orchestrator::Monitor;
use tokio::sync::mpsc;

use crate::api::{ModelCard, ModelList};
use crate::error::ApiError;
use crate::request::{self, Prepared, Served};
use crate::respond::{self, Answer, Endpoint};

pub struct AppState {
    pub queue: Arc<ServeQueue>,
    pub served: Served,
    pub api_key: Option<String>,
    pub max_body: usize,
    pub monitor: Monitor,
    pub started: Instant,
    /// Numbers the answers' ids.
    pub serial: AtomicU64,
}

type Shared = State<Arc<AppState>>;

pub async fn models(State(s): Shared) -> Json<ModelList> {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(s.started.elapsed().as_secs());
    Json(ModelList {
        object: "list",
        data: vec![ModelCard {
            id: s.served.id.clone(),
            object: "model",
            created,
            owned_by: "shardlab",
        }],
    })
}

pub async fn chat(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    match parse(&s, body).and_then(|req| request::chat(req, &s.served)) {
        Ok(prepared) => answer(s, prepared, Endpoint::Chat).await,
        Err(e) => e.into_response(),
    }
}

pub async fn completions(State(s): Shared, body: Result<Bytes, BytesRejection>) -> Response {
    match parse(&s, body).and_then(|req| request::completion(req, &s.served)) {
        Ok(prepared) => answer(s, prepared, Endpoint::Completion).await,
        Err(e) => e.into_response(),
    }
}

pub async fn health(State(s): Shared) -> Response {
    if s.queue.is_closed() {
        return ApiError::unavailable("the server is shutting down").into_response();
    }
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

pub async fn metrics(State(s): Shared) -> Response {
    let text = crate::metrics::render(
        &s.queue.counts(),
        &s.monitor.snapshot(),
        s.started.elapsed(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub async fn not_found(uri: Uri) -> Response {
    ApiError::not_found(uri.path()).into_response()
}

/// With an API key set, every endpoint but `/health` wants
/// `Authorization: Bearer KEY`; without one, any header (or none) passes.
pub async fn authorize(State(s): Shared, request: Request, next: Next) -> Response {
    let Some(key) = &s.api_key else {
        return next.run(request).await;
    };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if constant_time_eq(given.trim().as_bytes(), key.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::unauthorized("Incorrect API key provided").into_response(),
        None => ApiError::unauthorized("No API key provided: send `Authorization: Bearer KEY`")
            .into_response(),
    }
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a guessed key was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse<T: DeserializeOwned>(
    s: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(s.max_body)
        } else {
            ApiError::invalid(format!("reading the request body: {e}"))
        }
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid: {e}")))
}

/// Queues the job and answers once the scheduler has admitted it (or
/// refused it: a too-long prompt is a 400 before any byte is streamed).
async fn answer(s: Arc<AppState>, prepared: Prepared, endpoint: Endpoint) -> Response {
    let (tx, mut events) = mpsc::unbounded_channel();
    let job = ServeJob {
        prompt: prepared.prompt,
        opts: prepared.opts,
        sink: Box::new(move |event| tx.send(event).is_ok()),
    };
    if let Err(refused) = s.queue.push(job) {
        return match refused {
            PushError::Full(full) => ApiError::busy(full.to_string()),
            PushError::Closed => ApiError::unavailable(refused.to_string()),
        }
        .into_response();
    }
    let prompt_tokens = match events.recv().await {
        Some(ServeEvent::Started { prompt_tokens }) => prompt_tokens,
        Some(ServeEvent::Failed(failure)) => return ApiError::from(failure).into_response(),
        _ => return ApiError::unavailable("the scheduler stopped").into_response(),
    };
    let serial = s.serial.fetch_add(1, Ordering::Relaxed);
    let answer = Answer::new(endpoint, &s.served.id, prompt_tokens, serial);
    if prepared.stream {
        respond::streamed(answer, events, prepared.include_usage)
    } else {
        respond::whole(answer, events).await
    }
}
