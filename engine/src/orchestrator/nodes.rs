//! The cluster this orchestrator drives: connecting (local node processes
//! or nodes at addresses), disconnecting, the `:nodes` and `:links`
//! reports, link emulation, and stopping a local node on purpose.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::cluster::coordinator::{Cluster, LocalNodeOptions, NodeHandle};
use crate::cluster::heartbeat::Liveness;
use crate::metrics::quantile;
use crate::net::{LinkProfile, Token};

use super::recovery::PlannedKill;
use super::report::{
    CoordinatorLink, LinkSetting, LinksReport, NodeOrigin, NodeRow, NodeState, NodesReport,
    PeerLink,
};
use super::{Orchestrator, OrchestratorError, Runner};

/// Pings per node for `:links`.
const LINK_PINGS: usize = 5;
/// Bytes sent each way to measure a coordinator-to-node link.
const LINK_PROBE_BYTES: u64 = 4 << 20;

/// Which nodes to use.
#[derive(Debug, Clone)]
pub enum NodesSpec {
    /// Start `nodes` node processes on loopback.
    Local {
        nodes: usize,
        /// One budget for all, one per node, or none.
        mem_limits: Vec<u64>,
        /// Worker threads per node (default: the orchestrator's).
        threads: Option<usize>,
        /// Pin node i to its own cores (taskset).
        pin: bool,
    },
    /// Nodes already running at these addresses, sharing `token_file`.
    Remote {
        addrs: Vec<String>,
        token_file: Option<PathBuf>,
    },
}

/// The connected nodes and what is known of their budgets.
pub struct NodeSet {
    pub cluster: Cluster,
    /// Budgets given with `--mem-limit` (by node index): these are exact;
    /// free memory is measured.
    pub mem_limits: Vec<Option<u64>>,
    /// How nodes not started here were found, by address (typed when
    /// absent).
    pub origins: HashMap<String, NodeOrigin>,
}

impl NodeSet {
    pub fn new(cluster: Cluster, mem_limits: Vec<Option<u64>>) -> Self {
        Self {
            cluster,
            mem_limits,
            origins: HashMap::new(),
        }
    }

    /// How the node at `addr` came to be in the cluster.
    pub fn origin(&mut self, addr: &str) -> NodeOrigin {
        let started_here = self
            .cluster
            .local_nodes()
            .is_some_and(|l| l.addrs.iter().any(|a| a == addr));
        if started_here {
            return NodeOrigin::Local;
        }
        self.origins
            .get(addr)
            .cloned()
            .unwrap_or(NodeOrigin::Address)
    }

    /// Whether node `name`'s budget was given rather than measured.
    pub fn budget_is_fixed(&self, name: &str) -> bool {
        node_index(name).is_some_and(|i| self.mem_limits.get(i).copied().flatten().is_some())
    }
}

/// "node3" -> 3; "node3 (addr)" -> 3.
fn node_index(name: &str) -> Option<usize> {
    name.split_whitespace()
        .next()?
        .strip_prefix("node")?
        .parse()
        .ok()
}

impl Orchestrator {
    /// Connects the cluster; refuses when one is connected already (to
    /// add nodes at addresses, see [`Orchestrator::join`]).
    pub fn connect(&mut self, spec: NodesSpec) -> Result<&NodeSet, OrchestratorError> {
        if let Some(n) = &self.nodes {
            return Err(OrchestratorError::AlreadyConnected {
                count: n.cluster.nodes().len(),
            });
        }
        let client = self.config.client_name.clone();
        let (mut cluster, mem_limits) = match spec {
            NodesSpec::Local {
                nodes,
                mem_limits,
                threads,
                pin,
            } => {
                let limits: Vec<Option<u64>> = match mem_limits.as_slice() {
                    [] => Vec::new(),
                    [one] => vec![Some(*one); nodes],
                    many => many.iter().copied().map(Some).collect(),
                };
                let opts = LocalNodeOptions {
                    exe: self.config.node_exe.clone(),
                    home: self.config.store.home().to_path_buf(),
                    threads_per_node: threads.unwrap_or(self.config.threads_per_node),
                    threads_each: Vec::new(),
                    mem_limits: limits.clone(),
                    pin_cores: pin,
                    // Nodes give up on a silent peer before the coordinator
                    // gives up on them, so the survivors report back and the
                    // node that went quiet is the one named.
                    extra_args: vec![
                        "--step-timeout".into(),
                        format!("{}", self.config.step_timeout.as_secs_f64() / 2.0),
                    ],
                };
                (
                    Cluster::spawn_local_with(nodes, &opts, &client, self.link_settings())?,
                    limits,
                )
            }
            NodesSpec::Remote { addrs, token_file } => {
                let path = token_file.ok_or(OrchestratorError::NeedsTokenFile)?;
                let token = Token::from_file(&path).map_err(|e| {
                    OrchestratorError::setup(format!("reading the token {}", path.display()), e)
                })?;
                (
                    Cluster::connect_with(&addrs, token, &client, self.link_settings())?,
                    Vec::new(),
                )
            }
        };
        cluster.step_deadline = self.config.step_timeout;
        if self.link.is_some() {
            // Before any load, so weights cross the emulated link too.
            cluster.emulate_links(self.link.clone())?;
        }
        // Each node measures itself once, before anything loads, so `:plan`
        // can predict speed (docs/ARCHITECTURE.md, "Predicting speed").
        cluster.calibrate()?;
        for h in cluster.nodes() {
            if !self.addresses_used.contains(&h.addr) {
                self.addresses_used.push(h.addr.clone());
            }
        }
        Ok(self.nodes.insert(NodeSet::new(cluster, mem_limits)))
    }

    /// Adds nodes at `addrs` to the connected cluster (a node lost earlier
    /// and restarted joins under its old name). They must share the
    /// cluster's token: `token_file`, when given, must hold it. What was
    /// loaded is dropped, since the plan no longer covers the nodes; the
    /// next `shard` spreads the model over all of them. Returns the labels
    /// joined.
    pub fn join(
        &mut self,
        addrs: &[String],
        token_file: Option<&std::path::Path>,
    ) -> Result<Vec<String>, OrchestratorError> {
        let n = self.node_set()?;
        if let Some(path) = token_file {
            let token = Token::from_file(path).map_err(|e| {
                OrchestratorError::setup(format!("reading the token {}", path.display()), e)
            })?;
            if !n.cluster.uses_token(&token) {
                return Err(OrchestratorError::setup(
                    format!("joining {}", addrs.join(", ")),
                    "the token file is not the connected cluster's token; nodes of one cluster share one token",
                ));
            }
        }
        let mut joined = Vec::new();
        let mut failed = None;
        for addr in addrs {
            match n.cluster.join(addr) {
                Ok(label) => joined.push(label),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        for addr in addrs {
            if !self.addresses_used.contains(addr) {
                self.addresses_used.push(addr.clone());
            }
        }
        if !joined.is_empty() && self.is_sharded() {
            self.set_runner(Runner::Idle);
            self.cached.clear();
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(joined),
        }
    }

    /// Releases the nodes; returns how many there were.
    pub fn disconnect(&mut self) -> Result<usize, OrchestratorError> {
        let mut n = self.nodes.take().ok_or(OrchestratorError::NoNodes)?;
        if matches!(self.runner, Runner::Cluster(_)) {
            self.set_runner(Runner::Idle);
            self.cached.clear();
        }
        let count = n.cluster.nodes().len();
        n.cluster.disconnect();
        Ok(count)
    }

    fn node_set(&mut self) -> Result<&mut NodeSet, OrchestratorError> {
        self.nodes.as_mut().ok_or(OrchestratorError::NoNodes)
    }

    /// Pings every node and reads its info; a dead node shows as lost.
    pub fn nodes_report(&mut self) -> Result<NodesReport, OrchestratorError> {
        let n = self.node_set()?;
        // A dead node is marked out by the failed ping; the report shows it.
        let _ = n.cluster.refresh();
        let addrs: Vec<String> = n.cluster.nodes().iter().map(|h| h.addr.clone()).collect();
        let origins: Vec<NodeOrigin> = addrs.iter().map(|a| n.origin(a)).collect();
        let nodes = n
            .cluster
            .nodes()
            .iter()
            .zip(origins)
            .map(|(h, found)| NodeRow {
                name: h.name.clone(),
                addr: h.addr.clone(),
                found,
                state: state(h),
                cores: h.info.cores,
                threads: h.info.threads,
                mem_total: h.info.mem_total,
                mem_free: h.info.mem_free,
                budget: h.info.budget,
                budget_fixed: n.budget_is_fixed(&h.name),
                version: h.info.version.clone(),
                rtt: if h.is_alive() { h.rtt } else { None },
                calibration: h.calibration.clone(),
            })
            .collect();
        Ok(NodesReport { nodes })
    }

    /// Emulates `link` on every link of the cluster, now and after later
    /// connects (`None`: off). True when nodes were connected to apply it to.
    pub fn emulate_links(&mut self, link: Option<LinkProfile>) -> Result<bool, OrchestratorError> {
        self.link = link.clone();
        match self.nodes.as_mut() {
            Some(n) => {
                n.cluster.emulate_links(link)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// How long a node, or a node's peer, may stay silent before it is
    /// named (heartbeats; `Liveness::Off` leaves the step deadline alone),
    /// now and after later connects.
    pub fn set_liveness(&mut self, liveness: Liveness) -> Result<(), OrchestratorError> {
        self.liveness = liveness;
        if let Some(n) = self.nodes.as_mut() {
            n.cluster.set_liveness(liveness)?;
        }
        Ok(())
    }

    pub fn liveness(&self) -> Liveness {
        self.liveness
    }

    /// Round trips and bandwidth to every node, and the node-to-node
    /// figures the nodes measured while running.
    pub fn links_report(&mut self) -> Result<LinksReport, OrchestratorError> {
        let n = self.node_set()?;
        let count = n.cluster.nodes().len();
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); count];
        for _ in 0..LINK_PINGS {
            let _ = n.cluster.refresh();
            for (s, h) in samples.iter_mut().zip(n.cluster.nodes()) {
                if let (true, Some(rtt)) = (h.is_alive(), h.rtt) {
                    s.push(rtt);
                }
            }
        }
        let mut rates = Vec::with_capacity(count);
        for i in 0..count {
            let alive = n.cluster.nodes()[i].is_alive();
            rates.push(if alive {
                n.cluster.measure_bandwidth(i, LINK_PROBE_BYTES).ok()
            } else {
                None
            });
        }
        let own = n.cluster.link().map(|l| l.name.clone());
        let coordinator = n
            .cluster
            .nodes()
            .iter()
            .zip(&samples)
            .zip(&rates)
            .map(|((h, s), rate)| CoordinatorLink {
                node: h.name.clone(),
                addr: h.addr.clone(),
                rtt_min: quantile(s, 0.0),
                rtt_median: quantile(s, 0.5),
                up: rate.map(|r| r.0),
                down: rate.map(|r| r.1),
                link: LinkSetting {
                    out: own.clone(),
                    back: h.info.link.as_ref().map(|l| l.name.clone()),
                },
            })
            .collect();
        let node_links: Vec<Option<String>> = n
            .cluster
            .nodes()
            .iter()
            .map(|h| h.info.link.as_ref().map(|l| l.name.clone()))
            .collect();
        let mut peers = Vec::new();
        for ((label, m), link) in n.cluster.metrics().into_iter().zip(node_links) {
            let Ok(m) = m else { continue };
            if m.allreduce_seconds.is_empty() && m.hop_seconds.is_empty() {
                continue;
            }
            peers.push(PeerLink {
                label,
                peers: m.traffic.iter().map(|t| t.peer.clone()).collect(),
                allreduce_p50: quantile(&m.allreduce_seconds, 0.5),
                allreduce_p99: quantile(&m.allreduce_seconds, 0.99),
                hop_p50: quantile(&m.hop_seconds, 0.5),
                hop_p99: quantile(&m.hop_seconds, 0.99),
                link: LinkSetting {
                    out: link.clone(),
                    back: link,
                },
            });
        }
        Ok(LinksReport {
            coordinator,
            pings: LINK_PINGS,
            probe_bytes: LINK_PROBE_BYTES,
            emulated: n.cluster.link().map(LinkProfile::describe),
            peers,
            security: n.cluster.security(),
        })
    }

    /// Stops local node `which` ("node1" or "1") on purpose, to see how the
    /// cluster copes. Returns (its name, nodes alive, nodes known).
    pub fn kill(&mut self, which: &str) -> Result<(String, usize, usize), OrchestratorError> {
        let (name, index) = self.local_node(which)?;
        let n = self.node_set()?;
        let local = n.cluster.local_nodes().ok_or(OrchestratorError::NotLocal)?;
        local
            .kill(index)
            .map_err(|e| OrchestratorError::setup(format!("stopping {name}"), e))?;
        // The failed ping marks the node out of the cluster.
        let _ = n.cluster.refresh();
        let alive = n.cluster.nodes().iter().filter(|h| h.is_alive()).count();
        Ok((name, alive, n.cluster.nodes().len()))
    }

    /// Kills local node `which` once `steps` more generation steps have
    /// run (the prompt's prefill is one), so a transcript can show a node
    /// dying in the middle of a generation. Returns its name.
    pub fn kill_after(&mut self, which: &str, steps: usize) -> Result<String, OrchestratorError> {
        let (name, index) = self.local_node(which)?;
        self.recovery.planned_kills.retain(|k| k.index != index);
        self.recovery.planned_kills.push(PlannedKill {
            index,
            after_steps: steps,
        });
        Ok(name)
    }

    /// A connected node started here ("node1" or "1"): its name and index.
    fn local_node(&mut self, which: &str) -> Result<(String, usize), OrchestratorError> {
        let n = self.node_set()?;
        let name = if which.chars().all(|c| c.is_ascii_digit()) {
            format!("node{which}")
        } else {
            which.to_string()
        };
        let known: Vec<String> = n.cluster.nodes().iter().map(|h| h.name.clone()).collect();
        let (Some(index), true) = (node_index(&name), known.contains(&name)) else {
            return Err(OrchestratorError::UnknownNode {
                given: which.to_string(),
                known: known.join(", "),
            });
        };
        n.cluster.local_nodes().ok_or(OrchestratorError::NotLocal)?;
        Ok((name, index))
    }

    /// Names of the connected nodes ("node0", ...).
    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .as_ref()
            .map(|n| n.cluster.nodes().iter().map(|h| h.name.clone()).collect())
            .unwrap_or_default()
    }
}

fn state(h: &NodeHandle) -> NodeState {
    match (&h.failed, h.is_alive()) {
        (_, true) => NodeState::Up,
        (Some(_), false) => NodeState::Lost,
        (None, false) => NodeState::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::node_index;

    #[test]
    fn node_indices_come_from_names_and_labels() {
        assert_eq!(node_index("node3"), Some(3));
        assert_eq!(node_index("node12 (127.0.0.1:7070)"), Some(12));
        assert_eq!(node_index("this process"), None);
        assert_eq!(node_index("nodeX"), None);
    }
}
