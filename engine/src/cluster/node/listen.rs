//! The accept loop: binds, authenticates every connection, and either
//! serves it as the coordinator (one at a time), hands it to the running
//! session as a peer link, or echoes heartbeats on it (from a thread of its
//! own, so a node busy computing still answers). Owns who is being served
//! (`Busy`) and how a client names its role.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::serve::serve_coordinator;
use super::{node_info, NodeError, NodeOptions, HANDSHAKE_DEADLINE};
use crate::cluster::heartbeat::HEARTBEAT_CLIENT;
use crate::net::{auth, heartbeat, Connection, NetError};

/// A peer connection handed from the accept loop to the session.
pub(super) struct PeerArrival {
    pub session: String,
    pub from: usize,
    pub conn: Connection,
}

/// What the accept loop and the session share.
#[derive(Default)]
pub(super) struct Busy {
    /// Who is being served, and since when.
    pub serving: Option<(String, SystemTime)>,
    /// The session whose peers may dial in now.
    pub session: Option<String>,
    pub peers: Option<Sender<PeerArrival>>,
}

/// Why a client is turned away during the handshake (sent to it as text).
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("unknown client role '{0}'")]
    UnknownRole(String),
    #[error("bad peer index '{0}'")]
    BadPeerIndex(String),
    #[error("busy, serving {who} since {}", format_time(*.since))]
    Busy { who: String, since: SystemTime },
    #[error("no session with that id is running on this node")]
    NoSuchSession,
    #[error("node state poisoned")]
    Poisoned,
    #[error("{0}")]
    Info(serde_json::Error),
}

/// Binds, reports the bound address through `ready`, then serves forever.
pub fn serve(opts: NodeOptions, ready: impl FnOnce(SocketAddr)) -> Result<(), NodeError> {
    let bind_error = |source| NodeError::Bind {
        addr: opts.listen,
        source,
    };
    let listener = TcpListener::bind(opts.listen).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads.max(1))
            .build()
            .map_err(|source| NodeError::Threads {
                threads: opts.threads,
                source,
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
    stream: TcpStream,
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
            let (r, welcome) =
                welcome(&hello.client_name, peer_addr, busy, &info).map_err(|e| e.to_string())?;
            role = Some(r);
            Ok(welcome)
        },
    )?;
    match role {
        Some(Role::Coordinator(name)) => {
            conn.set_peer_label(&format!("coordinator {name} ({peer_addr})"));
            let (tx, rx) = channel();
            if let Ok(mut b) = busy.lock() {
                b.peers = Some(tx);
            }
            let result = pool.install(|| serve_coordinator(conn, opts, busy, rx));
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
            conn.set_peer_label(&format!("peer node{from} ({peer_addr})"));
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
        Some(Role::Heartbeat) => {
            conn.set_peer_label(&format!("heartbeat watcher ({peer_addr})"));
            heartbeat::answer(conn);
            Ok(())
        }
        None => Err(NetError::AuthFailed {
            peer: hello.client_name,
            reason: "handshake finished without a role".into(),
        }),
    }
}

/// The client's role and the node info it is welcomed with, or why not.
fn welcome(
    client_name: &str,
    peer_addr: &str,
    busy: &Mutex<Busy>,
    info: &crate::cluster::messages::NodeInfo,
) -> Result<(Role, serde_json::Value), Refusal> {
    let role = Role::parse(client_name)?;
    admit(&role, peer_addr, busy)?;
    Ok((role, serde_json::to_value(info).map_err(Refusal::Info)?))
}

/// Lets a coordinator in when nobody is served, a peer when its session runs.
fn admit(role: &Role, peer_addr: &str, busy: &Mutex<Busy>) -> Result<(), Refusal> {
    let mut b = busy.lock().map_err(|_| Refusal::Poisoned)?;
    match role {
        Role::Coordinator(name) => {
            if let Some((who, since)) = &b.serving {
                return Err(Refusal::Busy {
                    who: who.clone(),
                    since: *since,
                });
            }
            b.serving = Some((format!("{name} ({peer_addr})"), SystemTime::now()));
            b.session = None;
        }
        Role::Peer { session, .. } => {
            if b.session.as_deref() != Some(session.as_str()) {
                return Err(Refusal::NoSuchSession);
            }
        }
        // Anyone holding the token may ask whether this node is alive.
        Role::Heartbeat => {}
    }
    Ok(())
}

enum Role {
    Coordinator(String),
    Peer { session: String, from: usize },
    Heartbeat,
}

impl Role {
    /// Client names are "coordinator NAME", "peer SESSION INDEX" or
    /// "heartbeat".
    fn parse(client_name: &str) -> Result<Self, Refusal> {
        let mut parts = client_name.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(HEARTBEAT_CLIENT), None, None) => Ok(Role::Heartbeat),
            (Some("coordinator"), Some(name), None) => Ok(Role::Coordinator(name.to_string())),
            (Some("peer"), Some(session), Some(index)) => Ok(Role::Peer {
                session: session.to_string(),
                from: index
                    .parse()
                    .map_err(|_| Refusal::BadPeerIndex(index.to_string()))?,
            }),
            _ => Err(Refusal::UnknownRole(client_name.to_string())),
        }
    }
}

fn format_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02} UTC")
}
