//! The node daemon: `shardlab node --listen ADDR`. This file owns the
//! node's options, its public entry points and the map of its jobs, one
//! file each:
//!
//! - `listen`: the accept loop. It authenticates every connection, then
//!   serves it as the coordinator (one at a time; a second is told "busy,
//!   serving X since T") or hands it to the running session as a peer link.
//! - `serve`: the message loop for one coordinator.
//! - `load`: the shard-load protocol (budget, cache, local file, chunks).
//! - `peers`: the peer mesh a loaded shard exchanges activations over.
//! - `step`: step execution.
//! - `step_many`: a batched step (several sequences in one forward pass).
//! - `shard`: a loaded shard's state (model, links, per-sequence caches).
//! - `probe`: link probes between the coordinator and this node.
//! - `info`: what the node says about itself.
//! - `shard_cache`: the on-disk cache of received shards.
//!
//! When the coordinator goes away the shard is dropped and the node waits
//! for the next one.

mod info;
mod listen;
mod load;
mod local_file;
mod peers;
mod probe;
mod serve;
mod shard;
pub mod shard_cache;
mod step;
mod step_many;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::net::Token;

pub(crate) use info::node_info;
pub use listen::serve;
pub use load::ShardLoadError;
pub use peers::PeerSetupError;
pub use probe::ProbeError;
pub use shard::MAX_SEQUENCES;
pub use step::StepError;

/// How long an unauthenticated connection may take to finish the handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub listen: SocketAddr,
    pub name: String,
    pub token: Token,
    pub mem_limit: Option<u64>,
    pub threads: usize,
    pub cache_dir: PathBuf,
    pub model_dir: Option<PathBuf>,
    /// Deadline for each receive during a step (activations from peers).
    pub step_deadline: Duration,
    /// Emulate this link on everything the node sends (`--link`).
    pub link: Option<crate::net::LinkProfile>,
    /// Where calibrations are saved between runs (`None`: measured once
    /// per process).
    pub calibration_dir: Option<PathBuf>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start {threads} worker threads: {source}")]
    Threads {
        threads: usize,
        source: rayon::ThreadPoolBuildError,
    },
}

pub fn coordinator_client_name(name: &str) -> String {
    format!("coordinator {}", name.replace(char::is_whitespace, "_"))
}

pub(crate) fn peer_client_name(session: &str, index: usize) -> String {
    format!("peer {session} {index}")
}
