//! `:connect`, `:disconnect`, `:nodes`, `:links` (and `:links emulate`) and
//! the debugging `:kill`: the cluster this session drives.

use shardlab_engine::cluster::coordinator::{Cluster, LocalNodeOptions, NodeHandle};
use shardlab_engine::metrics::bandwidth::quantile;
use shardlab_engine::net::{LinkProfile, Token};

use super::{Runner, Session, SessionError};
use crate::command::ConnectTarget;
use crate::output::text::{bytes, duration};
use crate::output::{Output, Rich, Table, Varies};

/// Pings per node for `:links`.
const LINK_PINGS: usize = 5;
/// Bytes sent each way to measure a coordinator-to-node link.
const LINK_PROBE_BYTES: u64 = 4 << 20;

pub(super) struct Nodes {
    pub cluster: Cluster,
    /// Budgets given with `--mem-limit` (by node index): these are exact,
    /// so transcripts show them; free memory is measured.
    pub mem_limits: Vec<Option<u64>>,
}

impl Nodes {
    /// Whether node `name`'s budget was given rather than measured.
    pub fn budget_is_fixed(&self, name: &str) -> bool {
        node_index(name).is_some_and(|i| self.mem_limits.get(i).copied().flatten().is_some())
    }
}

/// "node3" -> 3.
fn node_index(name: &str) -> Option<usize> {
    name.strip_prefix("node")?.parse().ok()
}

impl Session {
    pub(super) fn connect(&mut self, target: ConnectTarget) -> Result<Output, SessionError> {
        if let Some(n) = &self.nodes {
            return Err(SessionError::state(format!(
                "already connected to {} nodes: `:disconnect` first",
                n.cluster.nodes().len()
            )));
        }
        let (mut cluster, mem_limits) = match target {
            ConnectTarget::Local {
                nodes,
                mem_limits,
                threads,
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
                    mem_limits: limits.clone(),
                    pin_cores: false,
                    // Nodes give up on a silent peer before the coordinator
                    // gives up on them, so the survivors report back and the
                    // node that went quiet is the one named.
                    extra_args: vec![
                        "--step-timeout".into(),
                        format!("{}", self.config.step_timeout.as_secs_f64() / 2.0),
                    ],
                };
                (Cluster::spawn_local(nodes, &opts, "shell")?, limits)
            }
            ConnectTarget::Remote { addrs, token_file } => {
                let path = token_file.ok_or_else(|| {
                    SessionError::state(
                        "node addresses need --token-file FILE (each node prints where its token is)",
                    )
                })?;
                let token = Token::from_file(&path).map_err(|e| SessionError::Io {
                    what: format!("reading the token {}", path.display()),
                    source: std::io::Error::other(e.to_string()),
                })?;
                (Cluster::connect(&addrs, token, "shell")?, Vec::new())
            }
        };
        cluster.step_deadline = self.config.step_timeout;
        if self.link.is_some() {
            cluster.emulate_links(self.link.clone())?;
        }
        for h in cluster.nodes() {
            if !self.addresses_used.contains(&h.addr) {
                self.addresses_used.push(h.addr.clone());
            }
        }
        let count = cluster.nodes().len();
        self.nodes = Some(Nodes {
            cluster,
            mem_limits,
        });
        let next = if self.model.is_some() {
            "next: `:plan tensor` or `:shard tensor`"
        } else {
            "next: `:load smollm2`"
        };
        let table = self.nodes_table()?;
        Ok(
            Output::text(format!("connected {count} node{}", plural(count)))
                .then(table)
                .then(Output::text(next)),
        )
    }

    pub(super) fn disconnect(&mut self) -> Result<Output, SessionError> {
        let Some(mut n) = self.nodes.take() else {
            return Err(SessionError::NoNodes);
        };
        if matches!(self.runner, Runner::Cluster(_)) {
            self.runner = Runner::Idle;
            self.cached.clear();
        }
        let count = n.cluster.nodes().len();
        n.cluster.disconnect();
        drop(n);
        Ok(Output::text(format!(
            "released {count} node{}",
            plural(count)
        )))
    }

    pub(super) fn nodes_table(&mut self) -> Result<Output, SessionError> {
        let n = self.nodes.as_mut().ok_or(SessionError::NoNodes)?;
        // A dead node is marked out by the failed ping; the table shows it.
        let _ = n.cluster.refresh();
        let mut t = Table::new(&[
            "node", "address", "state", "cores", "threads", "memory", "free", "budget", "version",
            "RTT",
        ]);
        for h in n.cluster.nodes() {
            let budget = if n.budget_is_fixed(&h.name) {
                Rich::from(bytes(h.info.budget))
            } else {
                Rich::varies(Varies::Bytes, bytes(h.info.budget))
            };
            t.row(vec![
                h.name.clone().into(),
                Rich::varies(Varies::Addr, h.addr.clone()),
                state(h),
                Rich::varies(Varies::Int, h.info.cores.to_string()),
                h.info.threads.to_string().into(),
                Rich::varies(Varies::Bytes, bytes(h.info.mem_total)),
                Rich::varies(Varies::Bytes, bytes(h.info.mem_free)),
                budget,
                h.info.version.clone().into(),
                match (h.is_alive(), h.rtt) {
                    (true, Some(rtt)) => Rich::varies(Varies::Time, duration(rtt)),
                    _ => "-".into(),
                },
            ]);
        }
        Ok(Output::Table(t))
    }

    /// `:links emulate PROFILE|off`: every link of the cluster, now and
    /// after later `:connect`s.
    pub(super) fn emulate_links(
        &mut self,
        link: Option<LinkProfile>,
    ) -> Result<Output, SessionError> {
        self.link = link.clone();
        let what = match &link {
            Some(l) => format!("emulating {}", l.describe()),
            None => "link emulation off".to_string(),
        };
        let Some(n) = self.nodes.as_mut() else {
            return Ok(Output::text(format!(
                "{what}: it applies from the next `:connect`"
            )));
        };
        n.cluster.emulate_links(link)?;
        let detail = if self.link.is_some() {
            " on every link: coordinator to nodes, nodes to coordinator, node to node. \
             `:links` after a prompt shows the timings it gives."
        } else {
            ": every link sends straight to its socket again."
        };
        Ok(Output::text(format!("{what}{detail}")))
    }

    pub(super) fn links(&mut self) -> Result<Output, SessionError> {
        let n = self.nodes.as_mut().ok_or(SessionError::NoNodes)?;
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n.cluster.nodes().len()];
        for _ in 0..LINK_PINGS {
            let _ = n.cluster.refresh();
            for (s, h) in samples.iter_mut().zip(n.cluster.nodes()) {
                if let (true, Some(rtt)) = (h.is_alive(), h.rtt) {
                    s.push(rtt);
                }
            }
        }
        let mut t = Table::new(&[
            "from",
            "to",
            "address",
            "RTT min",
            "RTT median",
            "up",
            "down",
            "link",
        ])
        .titled("links: coordinator to each node");
        let live: Vec<bool> = n.cluster.nodes().iter().map(|h| h.is_alive()).collect();
        let mut rates = Vec::new();
        for (i, alive) in live.iter().enumerate() {
            rates.push(if *alive {
                n.cluster.measure_bandwidth(i, LINK_PROBE_BYTES).ok()
            } else {
                None
            });
        }
        for ((h, s), rate) in n.cluster.nodes().iter().zip(samples.iter_mut()).zip(&rates) {
            s.sort_by(|a, b| a.total_cmp(b));
            let cell = |v: Option<&f64>| {
                v.map_or("-".into(), |v| Rich::varies(Varies::Time, duration(*v)))
            };
            let mbps = |v: f64| Rich::varies(Varies::Rate, format!("{:.0} MB/s", v / 1e6));
            t.row(vec![
                "coordinator".into(),
                h.name.clone().into(),
                Rich::varies(Varies::Addr, h.addr.clone()),
                cell(s.first()),
                cell(s.get(s.len() / 2)),
                rate.map_or("-".into(), |r| mbps(r.0)),
                rate.map_or("-".into(), |r| mbps(r.1)),
                link_cell(n.cluster.link(), h.info.link.as_ref()),
            ]);
        }
        t.note(format!(
            "{LINK_PINGS} control-message round trips per node (ping + node info); bandwidth from one {} MiB transfer each way.",
            LINK_PROBE_BYTES >> 20
        ));
        if let Some(l) = n.cluster.link() {
            t.note(format!(
                "Emulating {} on every link: the figures above and below include it.",
                l.describe()
            ));
        }
        let node_links: Vec<Option<LinkProfile>> = n
            .cluster
            .nodes()
            .iter()
            .map(|h| h.info.link.clone())
            .collect();
        // Node to node: what the nodes measured on their own links while
        // running (all-reduce exchanges within a tensor group, hidden-state
        // hand-offs between stages).
        let mut peers = Table::new(&[
            "node",
            "peer traffic",
            "all-reduce p50",
            "all-reduce p99",
            "hop p50",
            "hop p99",
            "link",
        ])
        .titled("links: node to node, as measured during generation");
        let mut any = false;
        for ((label, m), link) in n.cluster.metrics().into_iter().zip(&node_links) {
            let Ok(m) = m else { continue };
            if m.allreduce_seconds.is_empty() && m.hop_seconds.is_empty() {
                continue;
            }
            any = true;
            let q = |v: &[f64], p: f64| {
                quantile(v, p).map_or("-".into(), |x| Rich::varies(Varies::Time, duration(x)))
            };
            let names: Vec<String> = m.traffic.iter().map(|t| t.peer.clone()).collect();
            peers.row(vec![
                Rich::varies(Varies::Addr, label),
                names.join(", ").into(),
                q(&m.allreduce_seconds, 0.5),
                q(&m.allreduce_seconds, 0.99),
                q(&m.hop_seconds, 0.5),
                q(&m.hop_seconds, 0.99),
                link_cell(link.as_ref(), link.as_ref()),
            ]);
        }
        if !any {
            peers.note("No node-to-node traffic yet: shard a model across nodes and run a prompt.");
        } else {
            peers.note(
                "Timings cover every step since the shard loaded; `link` is the setting now.",
            );
        }
        Ok(Output::Many(vec![Output::Table(t), Output::Table(peers)]))
    }

    pub(super) fn kill(&mut self, which: &str) -> Result<Output, SessionError> {
        let n = self.nodes.as_mut().ok_or(SessionError::NoNodes)?;
        let name = if which.chars().all(|c| c.is_ascii_digit()) {
            format!("node{which}")
        } else {
            which.to_string()
        };
        let known: Vec<String> = n.cluster.nodes().iter().map(|h| h.name.clone()).collect();
        let (Some(index), true) = (node_index(&name), known.contains(&name)) else {
            return Err(SessionError::state(format!(
                "no node '{which}' (nodes: {})",
                known.join(", ")
            )));
        };
        let local = n.cluster.local_nodes().ok_or_else(|| {
            SessionError::state(":kill only stops nodes this session started with `:connect local`")
        })?;
        local.kill(index).map_err(SessionError::state)?;
        // The failed ping marks the node out of the cluster.
        let _ = n.cluster.refresh();
        let alive = n.cluster.nodes().iter().filter(|h| h.is_alive()).count();
        Ok(Output::text(format!(
            "killed {name}; {alive} of {} nodes left. Prompts fail until `:shard LAYOUT` re-plans on the survivors.",
            known.len()
        )))
    }
}

/// "wifi" when both directions emulate one profile, "real" when neither
/// does; otherwise each direction (`out`: this side's sends, `back`: the
/// far side's).
fn link_cell(out: Option<&LinkProfile>, back: Option<&LinkProfile>) -> Rich {
    let name = |l: Option<&LinkProfile>| l.map_or("real".to_string(), |l| l.name.clone());
    if out == back {
        name(out).into()
    } else {
        format!("{} out, {} back", name(out), name(back)).into()
    }
}

fn state(h: &NodeHandle) -> Rich {
    match (&h.failed, h.is_alive()) {
        (_, true) => "up".into(),
        (Some(_), false) => "lost".into(),
        (None, false) => "closed".into(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
