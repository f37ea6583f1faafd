//! The node daemon: `shardlab node --listen ADDR`.
//!
//! The accept loop authenticates every connection, then either serves it as
//! the coordinator (one at a time; a second is told "busy, serving X since
//! T") or hands it to the running session as a peer link. When the
//! coordinator goes away the shard is dropped and the node waits for the
//! next one.

mod session;
pub mod shard_cache;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::net::{auth, Connection, NetError, Token};

use super::messages::NodeInfo;

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
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start {threads} worker threads: {problem}")]
    Threads { threads: usize, problem: String },
}

/// A peer connection handed from the accept loop to the session.
pub(crate) struct PeerArrival {
    pub session: String,
    pub from: usize,
    pub conn: Connection,
}

#[derive(Default)]
pub(crate) struct Busy {
    /// Who is being served, and since when.
    pub serving: Option<(String, SystemTime)>,
    pub session: Option<String>,
    pub peers: Option<Sender<PeerArrival>>,
}

/// Binds, reports the bound address through `ready`, then serves forever.
pub fn serve(opts: NodeOptions, ready: impl FnOnce(SocketAddr)) -> Result<(), NodeError> {
    let listener = TcpListener::bind(opts.listen).map_err(|source| NodeError::Bind {
        addr: opts.listen,
        source,
    })?;
    let bound = listener.local_addr().map_err(|source| NodeError::Bind {
        addr: opts.listen,
        source,
    })?;
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads.max(1))
            .build()
            .map_err(|e| NodeError::Threads {
                threads: opts.threads,
                problem: e.to_string(),
            })?,
    );
    ready(bound);
    let opts = Arc::new(NodeOptions {
        listen: bound,
        ..opts
    });
    let busy = Arc::new(Mutex::new(Busy::default()));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let peer_addr = stream
            .peer_addr()
            .map_or_else(|_| "unknown".to_string(), |a| a.to_string());
        let (opts, busy, pool) = (opts.clone(), busy.clone(), pool.clone());
        std::thread::spawn(move || {
            if let Err(e) = handle(stream, &peer_addr, &opts, &busy, &pool) {
                eprintln!("{}: {e}", opts.name);
            }
        });
    }
    Ok(())
}

fn handle(
    stream: std::net::TcpStream,
    peer_addr: &str,
    opts: &NodeOptions,
    busy: &Arc<Mutex<Busy>>,
    pool: &rayon::ThreadPool,
) -> Result<(), NetError> {
    let mut conn = Connection::from_stream(stream, peer_addr)?;
    let info = node_info(opts);
    let mut role = None;
    let hello = auth::server_handshake(
        &mut conn,
        opts.token.as_bytes(),
        &opts.name,
        HANDSHAKE_DEADLINE,
        |hello| {
            let r = Role::parse(&hello.client_name)?;
            let mut b = busy.lock().map_err(|_| "node state poisoned".to_string())?;
            match &r {
                Role::Coordinator(name) => {
                    if let Some((who, since)) = &b.serving {
                        return Err(format!("busy, serving {who} since {}", format_time(*since)));
                    }
                    b.serving = Some((format!("{name} ({peer_addr})"), SystemTime::now()));
                    b.session = None;
                }
                Role::Peer { session, .. } => {
                    if b.session.as_deref() != Some(session.as_str()) {
                        return Err("no session with that id is running on this node".into());
                    }
                }
            }
            role = Some(r);
            serde_json::to_value(&info).map_err(|e| e.to_string())
        },
    )?;
    match role {
        Some(Role::Coordinator(name)) => {
            conn.set_peer_name(&format!("coordinator {name} ({peer_addr})"));
            let (tx, rx) = channel();
            if let Ok(mut b) = busy.lock() {
                b.peers = Some(tx);
            }
            let result = pool.install(|| session::serve(conn, opts, busy, rx));
            if let Ok(mut b) = busy.lock() {
                *b = Busy::default();
            }
            eprintln!(
                "{}: coordinator {name} ({peer_addr}) left; shard released",
                opts.name
            );
            result
        }
        Some(Role::Peer { session, from }) => {
            conn.set_peer_name(&format!("peer node{from} ({peer_addr})"));
            let tx = busy.lock().ok().and_then(|b| b.peers.clone());
            if let Some(tx) = tx {
                let _ = tx.send(PeerArrival {
                    session,
                    from,
                    conn,
                });
            }
            Ok(())
        }
        None => Err(NetError::AuthFailed {
            peer: hello.client_name,
            reason: "handshake finished without a role".into(),
        }),
    }
}

enum Role {
    Coordinator(String),
    Peer { session: String, from: usize },
}

impl Role {
    /// Client names are "coordinator NAME" or "peer SESSION INDEX".
    fn parse(client_name: &str) -> Result<Self, String> {
        let mut parts = client_name.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some("coordinator"), Some(name), None) => Ok(Role::Coordinator(name.to_string())),
            (Some("peer"), Some(session), Some(index)) => Ok(Role::Peer {
                session: session.to_string(),
                from: index
                    .parse()
                    .map_err(|_| format!("bad peer index '{index}'"))?,
            }),
            _ => Err(format!("unknown client role '{client_name}'")),
        }
    }
}

pub fn coordinator_client_name(name: &str) -> String {
    format!("coordinator {}", name.replace(char::is_whitespace, "_"))
}

pub(crate) fn peer_client_name(session: &str, index: usize) -> String {
    format!("peer {session} {index}")
}

fn format_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02} UTC")
}

pub(crate) fn node_info(opts: &NodeOptions) -> NodeInfo {
    let (total, free) = crate::metrics::memory::system_memory_bytes().unwrap_or((0, 0));
    NodeInfo {
        name: opts.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: crate::net::PROTOCOL_VERSION,
        hostname: hostname(),
        listen: opts.listen.to_string(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads: opts.threads,
        mem_total: total,
        mem_free: free,
        budget: opts.mem_limit.unwrap_or(free),
        cached_shards: shard_cache::ShardCache::new(opts.cache_dir.clone()).list(),
        local_models: local_models(opts),
        link: opts.link.clone(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn local_models(opts: &NodeOptions) -> Vec<super::messages::LocalModel> {
    let Some(dir) = &opts.model_dir else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "gguf"))
        .filter_map(|e| {
            Some(super::messages::LocalModel {
                file_name: e.file_name().to_string_lossy().to_string(),
                bytes: e.metadata().ok()?.len(),
            })
        })
        .collect()
}
