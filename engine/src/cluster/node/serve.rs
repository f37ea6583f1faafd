//! The message loop for one coordinator: reads each `ToNode`, hands it to
//! the job that owns it (load, peers, step, probe) and answers. A failure
//! the coordinator should hear about is an error reply and the loop goes
//! on; only a broken connection ends it.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::listen::{Busy, PeerArrival};
use super::load::{load, ShardLoadError};
use super::peers::{connect_peers, PeerSetupError};
use super::shard::Shard;
use super::shard_cache::ShardCache;
use super::step::{step, StepError};
use super::step_many::step_many;
use super::{probe, NodeOptions};
use crate::cluster::messages::{FromNode, NodeMetrics, Phase, StepSegment, ToNode};
use crate::metrics::memory::current_rss_bytes;
use crate::net::{Connection, NetError};

/// An idle coordinator may think for a long time (a person at a shell).
const IDLE_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The reply that reports `e` in `phase`.
fn failure(phase: Phase, e: impl std::fmt::Display) -> FromNode {
    FromNode::error(phase, e)
}

pub(super) fn serve_coordinator(
    mut conn: Connection,
    opts: &NodeOptions,
    busy: &Arc<Mutex<Busy>>,
    peers: Receiver<PeerArrival>,
) -> Result<(), NetError> {
    let cache = ShardCache::new(opts.cache_dir.clone());
    let mut shard: Option<Shard> = None;
    // The link every send emulates: `--link` until the coordinator says otherwise.
    let mut link = opts.link.clone();
    conn.emulate(link.as_ref())?;
    loop {
        let msg: ToNode = match conn.recv_control(IDLE_DEADLINE) {
            Ok(m) => m,
            Err(NetError::Closed { .. }) => return Ok(()),
            // A whole control frame that is not a message this node knows:
            // the stream is still in step, so say so and go on.
            Err(e @ NetError::BadMessage { .. }) => {
                conn.send_control(&failure(Phase::Control, e))?;
                continue;
            }
            // Someone on the path altered, replayed or reordered a frame:
            // nothing more is read from this connection, but our sending
            // half is intact, so the coordinator learns why.
            Err(e @ NetError::Unauthentic { .. }) => {
                let _ = conn.send_control(&failure(Phase::Control, &e));
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        match msg {
            ToNode::Info => {
                let mut info = super::node_info(opts);
                info.link = link.clone();
                conn.send_control(&FromNode::Info(info))?;
            }
            ToNode::EmulateLinks { link: wanted } => {
                link = wanted;
                let on_peers = match shard.as_mut().and_then(|s| s.links.as_mut()) {
                    Some(links) => links.emulate(link.as_ref()),
                    None => Ok(()),
                };
                conn.emulate(link.as_ref())?;
                let reply = match on_peers {
                    Ok(()) => FromNode::Ok,
                    Err(e) => failure(Phase::Links, PeerSetupError::Emulate(e)),
                };
                conn.send_control(&reply)?;
            }
            ToNode::Ping => conn.send_control(&FromNode::Pong)?,
            ToNode::Calibrate => {
                let figures =
                    crate::calibration::cached(opts.threads, opts.calibration_dir.as_deref());
                conn.send_control(&FromNode::Calibration(figures))?
            }
            ToNode::Absorb { bytes } => probe::absorb(&mut conn, bytes)?,
            ToNode::Emit { bytes } => probe::emit(&mut conn, bytes)?,
            ToNode::Bye => return Ok(()),
            ToNode::Unload => {
                shard = None;
                set_session(busy, None);
                conn.send_control(&FromNode::Ok)?;
            }
            ToNode::Load(req) => {
                // Free the old shard before the new one arrives.
                drop(shard.take());
                // Peers of this session may dial in as soon as the
                // coordinator hears "Loaded", so accept them from now on.
                set_session(busy, Some(req.session.clone()));
                shard = load(&mut conn, opts, &cache, *req)?;
            }
            ToNode::ConnectPeers(plan) => {
                let reply = match shard.as_mut() {
                    None => failure(Phase::Peers, PeerSetupError::NotLoaded),
                    Some(s) => match connect_peers(opts, &plan, &peers, link.as_ref()) {
                        Ok((links, watches)) => {
                            s.links = Some(links);
                            s.peer_watches = watches;
                            FromNode::PeersReady
                        }
                        Err(e) => failure(Phase::Peers, e),
                    },
                };
                conn.send_control(&reply)?;
            }
            ToNode::Step { pos, tokens, seq } => match shard.as_mut() {
                None => conn.send_control(&failure(
                    Phase::of_step(tokens.len(), pos as usize),
                    StepError::NotLoaded,
                ))?,
                Some(s) => step(&mut conn, s, pos as usize, &tokens, seq)?,
            },
            ToNode::StepMany { segments } => match shard.as_mut() {
                None => conn.send_control(&failure(
                    StepSegment::phase(&segments),
                    StepError::NotLoaded,
                ))?,
                Some(s) => step_many(&mut conn, s, &segments)?,
            },
            ToNode::Truncate { pos, seq } => {
                let reply = match shard.as_mut().map(|s| s.select(seq).map(|()| s)) {
                    Some(Ok(s)) => {
                        s.model.truncate(pos as usize);
                        FromNode::Ok
                    }
                    Some(Err(e)) => failure(Phase::Control, e),
                    None => FromNode::Ok,
                };
                conn.send_control(&reply)?;
            }
            ToNode::KvDigest { seq } => {
                let reply = match shard.as_mut().map(|s| s.select(seq).map(|()| s)) {
                    Some(Ok(s)) => FromNode::KvDigest {
                        positions: s.model.cache().len() as u32,
                        sha256: hex::encode(s.model.cache().digest()),
                    },
                    Some(Err(e)) => failure(Phase::Control, e),
                    None => failure(Phase::Control, StepError::NotLoaded),
                };
                conn.send_control(&reply)?;
            }
            ToNode::Metrics => {
                let metrics = match shard.as_ref() {
                    Some(s) => s.snapshot(opts),
                    None => NodeMetrics {
                        rss: current_rss_bytes().unwrap_or(0),
                        budget: super::info::budget(opts),
                        ..NodeMetrics::default()
                    },
                };
                conn.send_control(&FromNode::Metrics(metrics))?;
            }
            ToNode::ResetMetrics => {
                if let Some(s) = shard.as_mut() {
                    s.reset_metrics();
                }
                conn.send_control(&FromNode::Ok)?;
            }
            ToNode::TensorChunk { .. } | ToNode::LoadFinish => {
                conn.send_control(&failure(Phase::Load, ShardLoadError::NoLoadRequest))?;
            }
        }
    }
}

/// Which session's peers the accept loop lets in.
fn set_session(busy: &Mutex<Busy>, session: Option<String>) {
    if let Ok(mut b) = busy.lock() {
        b.session = session;
    }
}
