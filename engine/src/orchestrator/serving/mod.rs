//! Serving many clients at once: requests wait in a bounded [`ServeQueue`];
//! the scheduler (`Orchestrator::serve_turn`, in `scheduler.rs`), turn
//! after turn, runs every sequence in flight together, admitting new ones
//! and retiring finished ones between steps. Its state between turns is a
//! [`Serving`], so the CLI server can loop over turns (`Orchestrator::serve`)
//! while the workbench runs its commands between them. A new prompt takes
//! the free sequence whose KV cache shares the longest prefix with it
//! (`slots.rs`). Front ends (the HTTP server) only queue jobs and turn
//! [`ServeEvent`]s into responses.

mod queue;
mod scheduler;
mod slots;

pub use queue::{PushError, QueueFull, ServeCounts, ServeQueue};
pub use scheduler::{ServeEnd, Serving, Turn, MAX_PARALLEL};

use crate::model::chat::ChatMessage;
use crate::model::generate::{GenerateOptions, GenerationStats};

/// What a client asked to continue, before tokenizing.
#[derive(Debug, Clone)]
pub enum ServePrompt {
    /// Rendered with the model's chat template, ready for the assistant's turn.
    Chat(Vec<ChatMessage>),
    /// Plain text, tokenized with the model's start-of-text token.
    Text(String),
}

/// Receives a job's events in order; returns `false` once nobody listens
/// (the client went away), which cancels the sequence and frees its KV.
pub type EventSink = Box<dyn FnMut(ServeEvent) -> bool + Send>;

/// One request to serve.
pub struct ServeJob {
    pub prompt: ServePrompt,
    pub opts: GenerateOptions,
    pub sink: EventSink,
}

/// What happens to a job, in order: `Started`, then `Text` pieces, then
/// `Done`; or `Failed` at any point (then nothing more).
#[derive(Debug, Clone)]
pub enum ServeEvent {
    /// The prompt is admitted and its first step is about to run.
    Started {
        prompt_tokens: usize,
    },
    /// Text that is final: whole UTF-8 characters, never part of a stop string.
    Text(String),
    Done(GenerationStats),
    Failed(ServeFailure),
}

/// Why a job could not be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServeFailure {
    #[error("the prompt has {prompt} tokens; the context holds {context}, and at least one must be left to generate")]
    ContextLength { prompt: usize, context: usize },
    /// The positions the request may fill (prompt plus `max_tokens`, up to
    /// the context) are more than the nodes' memory holds for KV at all.
    #[error("this request may fill {needed} KV positions (prompt plus max_tokens); the KV memory left on {node} holds {room} for all requests together. Ask for fewer max_tokens or a shorter prompt")]
    KvBudget {
        needed: usize,
        room: usize,
        node: String,
    },
    #[error("{0}")]
    BadPrompt(String),
    /// The model or the cluster failed while running the job.
    #[error("{0}")]
    Engine(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

#[cfg(test)]
mod tests;
