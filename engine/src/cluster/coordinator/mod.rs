//! The coordinator: connects to nodes (or spawns local ones), streams each
//! node its slice of the model, connects the nodes to each other, and runs
//! generation steps across them as a [`Backend`].
//!
//! Every failure is a [`ClusterError`] naming the node and the phase.

mod admit;
mod calibrate;
mod gather;
mod load;
mod spawn;
mod step;
mod step_many;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use admit::{AdmitError, Refusal};
pub use load::{LoadProgress, LoadSummary, ModelToLoad};
pub use spawn::{LocalNodeOptions, LocalNodes};

use super::heartbeat::{watch_node, Liveness};
use super::link_settings::LinkSettings;
use super::messages::{FromNode, NodeInfo, NodeMetrics, Phase, StepMetrics, TensorTag, ToNode};
use super::node::coordinator_client_name;
use crate::model::config::ModelConfig;
use crate::net::heartbeat::Watch;
use crate::net::LinkSecurity;
use crate::net::{auth, Connection, LinkProfile, Token};
use crate::parallel::WireDtype;
use crate::shard::plan::{NodeBudget, Plan};

/// How long connecting and authenticating one node may take.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// Replies to small control messages.
pub const CONTROL_DEADLINE: Duration = Duration::from_secs(10);
/// Trying a lost node's address again at the next plan: short, since the
/// node is most likely still gone.
pub const READMIT_DEADLINE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, thiserror::Error)]
#[error("{node} failed during {phase}: {message}")]
pub struct ClusterError {
    pub node: String,
    pub phase: Phase,
    pub message: String,
}

impl ClusterError {
    fn new(node: &str, phase: Phase, message: impl std::fmt::Display) -> Self {
        Self {
            node: node.to_string(),
            phase,
            message: message.to_string(),
        }
    }

    fn cluster(phase: Phase, message: impl std::fmt::Display) -> Self {
        Self::new("the cluster", phase, message)
    }
}

/// A failed receive, worded for the user: silence past a deadline says
/// "did not answer within Xs" (the node is cut off, stopped or far too
/// slow), followed by `deadline_note` (where that deadline comes from,
/// when the user can change it); anything else is the connection's own
/// error.
fn recv_error(
    label: &str,
    phase: Phase,
    deadline: Duration,
    deadline_note: &str,
    e: crate::net::NetError,
) -> ClusterError {
    match e {
        crate::net::NetError::Timeout { .. } => ClusterError::new(
            label,
            phase,
            format!(
                "did not answer within {}s{deadline_note}",
                deadline.as_secs_f64()
            ),
        ),
        other => net_error(label, phase, other),
    }
}

/// A connection's error: the heartbeat's verdict says only why, since the
/// error already names the node.
fn net_error(label: &str, phase: Phase, e: crate::net::NetError) -> ClusterError {
    match e {
        crate::net::NetError::Cut { reason, .. } => ClusterError::new(label, phase, reason),
        other => ClusterError::new(label, phase, other),
    }
}

/// One connected node.
pub struct NodeHandle {
    /// "node0", "node1", ... in connection order.
    pub name: String,
    pub addr: String,
    pub info: NodeInfo,
    /// Round trip of the last ping, in seconds.
    pub rtt: Option<f64>,
    conn: Option<Connection>,
    /// The heartbeat on `conn`: cuts it when the node falls silent.
    watch: Option<Watch>,
    /// Why the node is out of the cluster, once it is.
    pub failed: Option<String>,
    /// What the node measured of itself (see `calibrate`).
    pub calibration: Option<crate::calibration::Calibration>,
    /// The link from the coordinator, measured with the link it emulates.
    pub link_cost: Option<crate::shard::plan::speed::LinkCost>,
}

impl NodeHandle {
    /// "node1 (127.0.0.1:7071)"
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.addr)
    }

    pub fn is_alive(&self) -> bool {
        self.conn.is_some() && self.failed.is_none()
    }

    fn conn(&mut self, phase: Phase) -> Result<&mut Connection, ClusterError> {
        let label = self.label();
        match (&mut self.conn, &self.failed) {
            (Some(c), None) => Ok(c),
            (_, Some(why)) => Err(ClusterError::new(
                &label,
                phase,
                format!("out of the cluster: {why}"),
            )),
            (None, None) => Err(ClusterError::new(&label, phase, "not connected")),
        }
    }

    fn mark_failed(&mut self, why: impl std::fmt::Display) {
        if self.failed.is_none() {
            self.failed = Some(why.to_string());
        }
        self.conn = None;
        self.watch = None;
    }

    /// Pings and reads until the pong, dropping whatever comes before it
    /// (replies to steps that were in flight when another failed, with
    /// their tensors), so the conversation is in step again. Returns how
    /// many frames were dropped.
    fn resync(&mut self, phase: Phase, deadline: Duration) -> Result<usize, ClusterError> {
        let label = self.label();
        let conn = self.conn(phase)?;
        conn.send_control(&ToNode::Ping)
            .map_err(|e| net_error(&label, phase, e))?;
        let end = Instant::now() + deadline;
        let mut dropped = 0;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match conn.recv_frame(left) {
                Ok(crate::net::Frame::Control(bytes)) => {
                    if let Ok(FromNode::Pong) = serde_json::from_slice(&bytes) {
                        return Ok(dropped);
                    }
                    dropped += 1;
                }
                // recv_frame reports a close frame as an error.
                Ok(crate::net::Frame::Tensor { .. } | crate::net::Frame::Close) => dropped += 1,
                Err(e) => return Err(recv_error(&label, phase, deadline, "", e)),
            }
        }
    }

    /// Sends a control message and waits for its reply.
    fn request(
        &mut self,
        msg: &ToNode,
        phase: Phase,
        deadline: Duration,
    ) -> Result<FromNode, ClusterError> {
        let label = self.label();
        let result = (|| {
            let conn = self.conn(phase)?;
            conn.send_control(msg)
                .map_err(|e| net_error(&label, phase, e))?;
            conn.recv_control::<FromNode>(deadline)
                .map_err(|e| recv_error(&label, phase, deadline, "", e))
        })();
        match result {
            Ok(FromNode::Error {
                phase: p, message, ..
            }) => Err(ClusterError::new(&label, phase, format!("{p}: {message}"))),
            Ok(reply) => Ok(reply),
            Err(e) => {
                self.mark_failed(&e.message);
                Err(e)
            }
        }
    }
}

/// What is loaded on the cluster.
pub struct LoadedModel {
    pub plan: Plan,
    pub config: ModelConfig,
    pub model_name: String,
    pub context: usize,
    pub session: String,
    /// Precision of activations between nodes.
    pub wire: WireDtype,
}

pub struct Cluster {
    nodes: Vec<NodeHandle>,
    /// Nodes dropped after a failure, (name, address): tried again at the
    /// next plan, and admitted back under the same name if they answer.
    lost: Vec<(String, String)>,
    token: Token,
    client_name: String,
    local: Option<LocalNodes>,
    loaded: Option<LoadedModel>,
    /// Set when a step failed: the loaded shards are no longer usable.
    broken: Option<ClusterError>,
    /// How long a decode step may take; a step of more rows gets one such
    /// deadline per 16 rows (`parallel::step_deadline`).
    pub step_deadline: Duration,
    /// Precision of activations between nodes, applied at the next load.
    pub wire: WireDtype,
    /// Passes sent and not yet collected, oldest first.
    in_flight: VecDeque<step::InFlight>,
    /// Per-node metrics of the last step (for `:trace`).
    pub last_step: Vec<Option<StepMetrics>>,
    logits: Vec<f32>,
    recv_buf: Vec<u8>,
    /// The link emulated on every connection of this cluster, if any.
    link: Option<LinkProfile>,
    /// How long a node (or a node's peer) may be silent before it is named.
    liveness: Liveness,
    /// Whether this cluster's connections (and its nodes' peer links) are
    /// sealed; chosen at the connect.
    security: LinkSecurity,
}

impl Cluster {
    /// Connects to running nodes and authenticates with `token`; each is
    /// watched by a heartbeat of the default silence.
    pub fn connect(
        addrs: &[String],
        token: Token,
        client_name: &str,
    ) -> Result<Self, ClusterError> {
        Self::connect_with(addrs, token, client_name, LinkSettings::default())
    }

    /// [`Cluster::connect`] with the heartbeat's silence (`Off`: no
    /// heartbeat connection is opened at all) and the links' security given.
    pub fn connect_with(
        addrs: &[String],
        token: Token,
        client_name: &str,
        settings: LinkSettings,
    ) -> Result<Self, ClusterError> {
        let mut cluster = Self {
            nodes: Vec::new(),
            lost: Vec::new(),
            token,
            client_name: client_name.to_string(),
            local: None,
            loaded: None,
            broken: None,
            step_deadline: Duration::from_secs(60),
            wire: WireDtype::default(),
            in_flight: VecDeque::new(),
            last_step: Vec::new(),
            logits: Vec::new(),
            recv_buf: Vec::new(),
            link: None,
            liveness: settings.liveness,
            security: settings.security,
        };
        for (i, addr) in addrs.iter().enumerate() {
            cluster.add_node(&format!("node{i}"), addr, CONNECT_DEADLINE)?;
        }
        Ok(cluster)
    }

    /// Connects one more node at `addr` with the cluster's token: a lost
    /// node's address joins under its old name, a new one as the next
    /// `nodeN`. Nothing loaded stays loaded (the plan no longer covers the
    /// nodes). Returns its label.
    pub fn join(&mut self, addr: &str) -> Result<String, ClusterError> {
        let name = self.connect_member(addr, admit::OnFailure::Remember)?;
        Ok(format!("{name} ({addr})"))
    }

    /// The next `nodeN` no member, present or lost, has had.
    fn fresh_name(&self) -> String {
        let taken = self
            .nodes
            .iter()
            .map(|h| h.name.as_str())
            .chain(self.lost.iter().map(|(n, _)| n.as_str()))
            .filter_map(|n| n.strip_prefix("node")?.parse::<usize>().ok());
        format!("node{}", taken.max().map_or(0, |m| m + 1))
    }

    /// Whether `token` is the one this cluster authenticates with.
    pub fn uses_token(&self, token: &Token) -> bool {
        self.token.as_bytes() == token.as_bytes()
    }

    /// Dropped nodes (name, address) that may come back.
    pub fn lost(&self) -> &[(String, String)] {
        &self.lost
    }

    /// Tries each lost node's address again; those that answer and
    /// authenticate join under their old names (a restarted node, or one
    /// that was stopped and woke up: it starts a new session). Returns the
    /// labels of the nodes admitted. Local nodes that were killed stay out:
    /// their processes are gone.
    pub fn readmit(&mut self) -> Vec<String> {
        let mut admitted = Vec::new();
        for (name, addr) in std::mem::take(&mut self.lost) {
            match self.add_node(&name, &addr, READMIT_DEADLINE) {
                Ok(()) => admitted.push(format!("{name} ({addr})")),
                Err(_) => self.lost.push((name, addr)),
            }
        }
        if !admitted.is_empty() {
            // Names stay in connection order, so plans list them as before.
            let order = |n: &NodeHandle| n.name.trim_start_matches("node").parse::<usize>().ok();
            let mut paired: Vec<_> = std::mem::take(&mut self.nodes)
                .into_iter()
                .zip(std::mem::take(&mut self.last_step))
                .collect();
            paired.sort_by_key(|(n, _)| order(n));
            (self.nodes, self.last_step) = paired.into_iter().unzip();
            self.loaded = None;
            self.broken = None;
        }
        admitted
    }

    /// Starts `n` node processes on loopback and connects to them.
    pub fn spawn_local(
        n: usize,
        opts: &LocalNodeOptions,
        client_name: &str,
    ) -> Result<Self, ClusterError> {
        Self::spawn_local_with(n, opts, client_name, LinkSettings::default())
    }

    /// [`Cluster::spawn_local`] with the link settings given.
    pub fn spawn_local_with(
        n: usize,
        opts: &LocalNodeOptions,
        client_name: &str,
        settings: LinkSettings,
    ) -> Result<Self, ClusterError> {
        let local =
            LocalNodes::spawn(n, opts).map_err(|e| ClusterError::cluster(Phase::Connect, e))?;
        let mut cluster =
            Self::connect_with(&local.addrs, local.token.clone(), client_name, settings)?;
        cluster.local = Some(local);
        Ok(cluster)
    }

    fn add_node(&mut self, name: &str, addr: &str, deadline: Duration) -> Result<(), AdmitError> {
        let name = name.to_string();
        let label = format!("{name} ({addr})");
        // The error already names the node; say only why it failed.
        let mut conn =
            Connection::connect(addr, &name, deadline).map_err(|e| AdmitError::net(&label, e))?;
        // The connection adds the address itself: naming it `label` would
        // print the address twice.
        conn.set_peer_name(&name);
        let welcome = auth::client_handshake_with(
            &mut conn,
            self.token.as_bytes(),
            &coordinator_client_name(&self.client_name),
            deadline,
            self.security,
        )
        .map_err(|e| AdmitError::net(&label, e))?;
        let info: NodeInfo = serde_json::from_value(welcome.info)
            .map_err(|e| AdmitError::failed(&label, format!("node info is malformed: {e}")))?;
        conn.emulate(self.link.as_ref())
            .map_err(|e| AdmitError::failed(&label, e))?;
        let watch = watch_node(addr, &name, &self.token, &conn, self.liveness, deadline)
            .map_err(|e| AdmitError::failed(&label, format!("heartbeat: {e}")))?;
        self.nodes.push(NodeHandle {
            name,
            addr: addr.to_string(),
            info,
            rtt: None,
            conn: Some(conn),
            watch,
            failed: None,
            calibration: None,
            link_cost: None,
        });
        self.last_step.push(None);
        Ok(())
    }

    pub fn nodes(&self) -> &[NodeHandle] {
        &self.nodes
    }

    /// The processes this cluster started, if it started them.
    pub fn local_nodes(&mut self) -> Option<&mut LocalNodes> {
        self.local.as_mut()
    }

    pub fn loaded(&self) -> Option<&LoadedModel> {
        self.loaded.as_ref()
    }

    pub fn broken(&self) -> Option<&ClusterError> {
        self.broken.as_ref()
    }

    /// Budgets of the live nodes, for planning, each with its speed
    /// relative to the fastest (equal unless calibrations differ).
    pub fn budgets(&self) -> Vec<NodeBudget> {
        let live: Vec<&NodeHandle> = self.nodes.iter().filter(|n| n.is_alive()).collect();
        let calibrations: Vec<_> = live.iter().map(|n| n.calibration.clone()).collect();
        let speeds = crate::shard::plan::speed::split_weights(&calibrations);
        live.iter()
            .zip(speeds)
            .map(|(n, speed)| NodeBudget {
                name: n.label(),
                budget_bytes: n.info.budget,
                speed,
            })
            .collect()
    }

    /// Whether this cluster's links are sealed.
    pub fn security(&self) -> LinkSecurity {
        self.security
    }

    /// How long a node may be silent before it is named.
    pub fn liveness(&self) -> Liveness {
        self.liveness
    }

    /// Watches every live node with `liveness` from now on (and has each
    /// node watch its peers so from the next load). A node whose heartbeat
    /// cannot be started is marked failed; the first such error is returned.
    pub fn set_liveness(&mut self, liveness: Liveness) -> Result<(), ClusterError> {
        self.liveness = liveness;
        let mut first_error = None;
        for node in self.nodes.iter_mut().filter(|n| n.is_alive()) {
            let label = node.label();
            node.watch = None;
            let Some(conn) = node.conn.as_ref() else {
                continue;
            };
            match watch_node(
                &node.addr,
                &node.name,
                &self.token,
                conn,
                liveness,
                CONNECT_DEADLINE,
            ) {
                Ok(watch) => node.watch = watch,
                Err(e) => {
                    let e = ClusterError::new(&label, Phase::Connect, format!("heartbeat: {e}"));
                    node.mark_failed(&e.message);
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The link emulated on this cluster's connections, if any.
    pub fn link(&self) -> Option<&LinkProfile> {
        self.link.as_ref()
    }

    /// Emulates `link` on every connection of the cluster (`None`: off):
    /// the coordinator's own sends, and each node's sends to the
    /// coordinator and to its peers (now and after the next load). Every
    /// live node is told; the first failure is returned.
    pub fn emulate_links(&mut self, link: Option<LinkProfile>) -> Result<(), ClusterError> {
        self.link = link;
        // The links measured so far were measured as they were.
        self.forget_link_costs();
        let mut first_error = None;
        for node in self.nodes.iter_mut().filter(|n| n.is_alive()) {
            let label = node.label();
            let msg = ToNode::EmulateLinks {
                link: self.link.clone(),
            };
            let result = node
                .request(&msg, Phase::Control, CONTROL_DEADLINE)
                .and_then(|reply| match reply {
                    FromNode::Ok => Ok(()),
                    other => Err(ClusterError::new(
                        &label,
                        Phase::Control,
                        format!("unexpected reply {other:?}"),
                    )),
                })
                .and_then(|()| {
                    node.conn(Phase::Control)?
                        .emulate(self.link.as_ref())
                        .map_err(|e| ClusterError::new(&label, Phase::Control, e))
                });
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Refreshes node info and measures a round trip to each live node.
    /// Every live node is tried; the first failure is returned.
    pub fn refresh(&mut self) -> Result<(), ClusterError> {
        let mut first_error = None;
        for node in self.nodes.iter_mut().filter(|n| n.is_alive()) {
            if let Err(e) = refresh_one(node) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Measures the link to live node `i`: `bytes` up, then `bytes` down.
    /// Returns (up, down) in bytes per second.
    pub fn measure_bandwidth(&mut self, i: usize, bytes: u64) -> Result<(f64, f64), ClusterError> {
        let node = self
            .nodes
            .get_mut(i)
            .ok_or_else(|| ClusterError::cluster(Phase::Control, format!("no node #{i}")))?;
        let label = node.label();
        let phase = Phase::Control;
        let payload = vec![0u8; bytes as usize];
        let header = crate::net::TensorHeader::new(
            crate::net::TensorDtype::Bytes,
            &[bytes],
            TensorTag::Probe.code(),
        )
        .map_err(|e| ClusterError::new(&label, phase, e))?;
        let started = Instant::now();
        let conn = node.conn(phase)?;
        conn.send_control(&ToNode::Absorb { bytes })
            .and_then(|_| conn.send_tensor(&header, &payload))
            .map_err(|e| ClusterError::new(&label, phase, e))?;
        match conn.recv_control::<FromNode>(CONTROL_DEADLINE * 3) {
            Ok(FromNode::Ok) => {}
            Ok(other) => {
                return Err(ClusterError::new(
                    &label,
                    phase,
                    format!("unexpected reply {other:?}"),
                ))
            }
            Err(e) => return Err(ClusterError::new(&label, phase, e)),
        }
        let up = bytes as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        match node.request(&ToNode::Emit { bytes }, phase, CONTROL_DEADLINE)? {
            FromNode::Ok => {}
            other => {
                return Err(ClusterError::new(
                    &label,
                    phase,
                    format!("unexpected reply {other:?}"),
                ))
            }
        }
        let mut sink = Vec::new();
        node.conn(phase)?
            .recv_tensor_into(CONTROL_DEADLINE * 3, &mut sink)
            .map_err(|e| ClusterError::new(&label, phase, e))?;
        let down = sink.len() as f64 / started.elapsed().as_secs_f64();
        Ok((up, down))
    }

    /// Drops nodes that failed, renumbering nothing: names stay stable so
    /// messages keep meaning the same machine.
    pub fn remove_failed(&mut self) -> Vec<String> {
        let mut removed = Vec::new();
        let mut i = 0;
        while i < self.nodes.len() {
            if self.nodes[i].is_alive() {
                i += 1;
            } else {
                removed.push(self.nodes[i].label());
                let gone = self.nodes.remove(i);
                self.lost.push((gone.name, gone.addr));
                self.last_step.remove(i);
            }
        }
        if !removed.is_empty() {
            self.broken = None;
            self.loaded = None;
        }
        removed
    }

    /// Drops every shard; nodes stay connected.
    pub fn unload(&mut self) {
        for node in self.nodes.iter_mut().filter(|n| n.is_alive()) {
            let _ = node.request(&ToNode::Unload, Phase::Control, CONTROL_DEADLINE);
        }
        self.loaded = None;
        self.broken = None;
        self.in_flight.clear();
    }

    /// Per-node counters since the load.
    pub fn metrics(&mut self) -> Vec<(String, Result<NodeMetrics, ClusterError>)> {
        self.nodes
            .iter_mut()
            .map(|n| {
                let label = n.label();
                let m = if n.is_alive() {
                    match n.request(&ToNode::Metrics, Phase::Control, CONTROL_DEADLINE) {
                        Ok(FromNode::Metrics(m)) => Ok(m),
                        Ok(other) => Err(ClusterError::new(
                            &label,
                            Phase::Control,
                            format!("unexpected reply {other:?}"),
                        )),
                        Err(e) => Err(e),
                    }
                } else {
                    Err(ClusterError::new(
                        &label,
                        Phase::Control,
                        n.failed.clone().unwrap_or_default(),
                    ))
                };
                (label, m)
            })
            .collect()
    }

    pub fn reset_metrics(&mut self) {
        for node in self.nodes.iter_mut().filter(|n| n.is_alive()) {
            let _ = node.request(&ToNode::ResetMetrics, Phase::Control, CONTROL_DEADLINE);
        }
    }

    /// Says goodbye to every node (they release their shards).
    pub fn disconnect(&mut self) {
        for node in self.nodes.iter_mut() {
            if let Some(conn) = node.conn.as_mut() {
                let _ = conn.send_control(&ToNode::Bye);
            }
            node.conn = None;
            node.watch = None;
        }
        self.loaded = None;
    }
}

fn refresh_one(node: &mut NodeHandle) -> Result<(), ClusterError> {
    let started = Instant::now();
    node.request(&ToNode::Ping, Phase::Control, CONTROL_DEADLINE)?;
    node.rtt = Some(started.elapsed().as_secs_f64());
    if let FromNode::Info(info) = node.request(&ToNode::Info, Phase::Control, CONTROL_DEADLINE)? {
        node.info = info;
    }
    Ok(())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.disconnect();
    }
}
