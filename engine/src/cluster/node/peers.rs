//! The peer mesh: after `ConnectPeers`, a node dials the peers of its plan
//! with a smaller cluster index and accepts the ones with a larger index
//! (handed over by the accept loop), builds the links its shard exchanges
//! activations over, and watches each peer with a heartbeat.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::listen::PeerArrival;
use super::{peer_client_name, NodeOptions};
use crate::cluster::heartbeat::watch_node;
use crate::cluster::messages::{PeerAddr, PeerPlan};
use crate::net::heartbeat::Watch;
use crate::net::{auth, Connection, LinkProfile, NetError};
use crate::parallel::PeerLinks;

/// Peers must connect within this time after `ConnectPeers`.
const PEER_DEADLINE: Duration = Duration::from_secs(10);

/// Why the mesh could not be built (the connection to the coordinator is fine).
#[derive(Debug, thiserror::Error)]
pub enum PeerSetupError {
    #[error("no shard is loaded")]
    NotLoaded,
    #[error(transparent)]
    Dial(NetError),
    #[error("timed out waiting for peers to connect: {}", .waiting.join(", "))]
    Timeout { waiting: Vec<String> },
    #[error("emulating on peer links: {0}")]
    Emulate(NetError),
    #[error("starting the heartbeat to a peer: {0}")]
    Heartbeat(NetError),
}

/// A named connection to one peer.
type Link = (String, Connection);

/// Connects to every peer of `plan`, emulates `link` on the result, and
/// watches every peer (the watches live as long as the links).
pub(super) fn connect_peers(
    opts: &NodeOptions,
    plan: &PeerPlan,
    arrivals: &Receiver<PeerArrival>,
    link: Option<&LinkProfile>,
) -> Result<(PeerLinks, Vec<Watch>), PeerSetupError> {
    let me = plan.me;
    let mut expected: Vec<&PeerAddr> = Vec::new();
    let mut group: Vec<Option<Link>> = Vec::with_capacity(plan.group.len());
    let mut my_rank = 0;
    for (rank, p) in plan.group.iter().enumerate() {
        if p.index == me {
            my_rank = rank;
            group.push(None);
        } else if p.index < me {
            group.push(Some(dial(opts, plan, p)?));
        } else {
            expected.push(p);
            group.push(None);
        }
    }
    let (mut prev, mut next) = (None, None);
    for (slot, p) in [(&mut prev, &plan.prev), (&mut next, &plan.next)] {
        match p {
            Some(p) if p.index < me => *slot = Some(dial(opts, plan, p)?),
            Some(p) => expected.push(p),
            None => {}
        }
    }
    let deadline = Instant::now() + PEER_DEADLINE;
    let mut pending = expected.len();
    while pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let arrival = arrivals
            .recv_timeout(left)
            .map_err(|_| PeerSetupError::Timeout {
                waiting: expected.iter().map(|p| label(p)).collect(),
            })?;
        if arrival.session != plan.session {
            continue;
        }
        let from = arrival.from;
        let mut conn = arrival.conn;
        let known = plan
            .group
            .iter()
            .chain(plan.prev.iter())
            .chain(plan.next.iter())
            .find(|p| p.index == from);
        if let Some(p) = known {
            conn.set_peer_label(&label(p));
        }
        let name = known.map_or_else(|| format!("node{from}"), |p| p.name.clone());
        let slot = if let Some(rank) = plan.group.iter().position(|p| p.index == from) {
            (from != me).then_some(&mut group[rank])
        } else if plan.prev.as_ref().is_some_and(|p| p.index == from) {
            Some(&mut prev)
        } else if plan.next.as_ref().is_some_and(|p| p.index == from) {
            Some(&mut next)
        } else {
            None
        };
        // A second connection from the same peer is dropped.
        if let Some(slot @ None) = slot {
            *slot = Some((name, conn));
            pending -= 1;
        }
    }
    let linked = plan
        .group
        .iter()
        .zip(&group)
        .chain(plan.prev.iter().zip([&prev]))
        .chain(plan.next.iter().zip([&next]));
    let mut watches = Vec::new();
    for (p, slot) in linked {
        if let Some((_, conn)) = slot {
            let watch = watch_node(
                &p.addr,
                &p.name,
                &opts.token,
                conn,
                plan.liveness,
                PEER_DEADLINE,
            );
            watches.extend(watch.map_err(PeerSetupError::Heartbeat)?);
        }
    }
    let mut links = PeerLinks::new(my_rank, group, prev, next, opts.step_deadline, plan.wire);
    links.emulate(link).map_err(PeerSetupError::Emulate)?;
    Ok((links, watches))
}

/// "node1 (127.0.0.1:7071)"
fn label(p: &PeerAddr) -> String {
    format!("{} ({})", p.name, p.addr)
}

/// Dials a peer with a smaller index and introduces this node to it.
fn dial(opts: &NodeOptions, plan: &PeerPlan, p: &PeerAddr) -> Result<Link, PeerSetupError> {
    let mut conn =
        Connection::connect(&p.addr, &p.name, PEER_DEADLINE).map_err(PeerSetupError::Dial)?;
    auth::client_handshake_with(
        &mut conn,
        opts.token.as_bytes(),
        &peer_client_name(&plan.session, plan.me),
        PEER_DEADLINE,
        plan.security,
    )
    .map_err(PeerSetupError::Dial)?;
    Ok((p.name.clone(), conn))
}
