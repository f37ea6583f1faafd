//! shardlab's OpenAI-compatible HTTP server. It holds no model: requests
//! become jobs on the orchestrator's [`ServeQueue`], and whoever owns the
//! orchestrator runs `Orchestrator::serve` on it (the CLI's `shardlab
//! serve`). The HTTP stack is axum on a single-threaded tokio runtime of
//! its own thread; the generation runs on the scheduler's thread.
//!
//! Endpoints: `GET /v1/models`, `POST /v1/chat/completions`,
//! `POST /v1/completions` (both streamed as server-sent events on
//! request), `GET /health`, `GET /metrics` (Prometheus text).

mod api;
mod error;
mod key;
mod metrics;
mod request;
mod respond;
mod routes;
mod signal;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use shardlab_engine::orchestrator::serving::ServeQueue;
use shardlab_engine::orchestrator::Monitor;
use tokio::sync::oneshot;

pub use key::{read_api_key, ApiKeyError};
pub use request::Served;
pub use signal::close_on_signal;

/// Request bodies over this many bytes get a 413 unless configured.
pub const DEFAULT_MAX_BODY: usize = 4 << 20;

pub struct ServerOptions {
    pub listen: SocketAddr,
    /// When set, requests need `Authorization: Bearer` with this key.
    pub api_key: Option<String>,
    pub served: Served,
    pub max_body: usize,
}

/// The server, listening. Dropping it stops it.
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Where it listens (the port the system chose, for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking connections and waits for the open ones to close.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Binds `options.listen` (an error here is the caller's to report: the
/// port is taken, say) and serves on a thread of its own.
pub fn start(
    options: ServerOptions,
    queue: Arc<ServeQueue>,
    monitor: Monitor,
) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(options.listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let max_body = options.max_body;
    let state = Arc::new(routes::AppState {
        queue,
        served: options.served,
        api_key: options.api_key,
        max_body,
        monitor,
        started: Instant::now(),
        serial: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/v1/models", get(routes::models))
        .route("/v1/chat/completions", post(routes::chat))
        .route("/v1/completions", post(routes::completions))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::authorize,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state);
    let (shutdown, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            })
        })?;
    Ok(RunningServer {
        addr,
        shutdown: Some(shutdown),
        thread: Some(thread),
    })
}
