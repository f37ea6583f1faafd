//! shardlab's Jupyter kernel: the same commands as the shell (the repl
//! crate's [`Session`]) behind the Jupyter messaging protocol 5.3 over
//! ZeroMQ, with rich output (HTML tables, SVG charts, JSON figures).
//!
//! - `connection`: the connection file
//! - `wire`: message frames and their HMAC-SHA256 signatures
//! - `request`: the typed requests a front end may send, parsed once
//! - `message`: incoming messages, and the kernel's replies and broadcasts
//!   (message types from the `jupyter-protocol` crate)
//! - `server`: the five sockets and the message handlers
//! - `executor`: the thread that owns the session and runs cells
//! - `display`, `html`, `svg`: an [`shardlab_repl::Output`] as mime bundles
//! - `assist`: completion, inspection, is_complete
//! - `spec`: installing the kernelspec

pub mod assist;
pub mod connection;
pub mod display;
pub mod executor;
pub mod html;
pub mod message;
pub mod request;
pub mod server;
pub mod spec;
pub mod svg;
pub mod wire;

use std::path::Path;

use shardlab_repl::Session;

pub use connection::ConnectionInfo;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Connection(#[from] connection::ConnectionError),
    #[error("binding {endpoint}: {source}")]
    Bind {
        endpoint: String,
        source: zeromq::ZmqError,
    },
    #[error("starting the kernel's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("starting the session thread: {0}")]
    Thread(std::io::Error),
}

/// Serves the kernel described by `connection_file` until a shutdown
/// request; `session` runs the cells.
pub fn run(connection_file: &Path, session: Session) -> Result<(), KernelError> {
    let info = ConnectionInfo::read(connection_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(KernelError::Runtime)?;
    runtime.block_on(server::serve(info, session))
}
