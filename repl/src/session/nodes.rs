//! `:connect`, `:disconnect`, `:nodes`, `:links` (and `:links emulate`) and
//! the debugging `:kill`: the cluster this session drives.

use std::path::Path;
use std::time::Duration;

use shardlab_engine::net::LinkProfile;
use shardlab_engine::orchestrator::NodesSpec;

use super::{Session, SessionError};
use crate::command::ConnectTarget;
use crate::output::{views, Output, Report, Rich};

impl Session {
    pub(super) fn connect(&mut self, target: ConnectTarget) -> Result<Output, SessionError> {
        let spec = match target {
            ConnectTarget::Local {
                nodes,
                mem_limits,
                threads,
            } => NodesSpec::Local {
                nodes,
                mem_limits,
                threads,
                pin: false,
            },
            // Connected already: these nodes join the cluster.
            ConnectTarget::Remote { addrs, token_file } if self.core.nodes().is_some() => {
                let joined = self.core.join(&addrs, token_file.as_deref())?;
                let lits = self.literals();
                let count = self.core.node_names().len();
                return Ok(Output::Text(
                    Rich::from("joined ")
                        .append(Rich::masking(&joined.join(", "), &lits))
                        .push(format!(
                            "; {count} nodes. `:shard LAYOUT` spreads the model over them."
                        )),
                ));
            }
            ConnectTarget::Remote { addrs, token_file } => NodesSpec::Remote { addrs, token_file },
            ConnectTarget::Auto { window, token_file } => {
                return self.connect_auto(window, token_file.as_deref());
            }
        };
        let count = self.core.connect(spec)?.cluster.nodes().len();
        let next = self.next_step();
        let table = self.nodes_table()?;
        Ok(
            Output::text(format!("connected {count} node{}", plural(count)))
                .then(table)
                .then(Output::text(next)),
        )
    }

    /// `:connect auto`: what the LAN offered and what became of each node,
    /// then the cluster as it now stands.
    fn connect_auto(
        &mut self,
        window: Duration,
        token_file: Option<&Path>,
    ) -> Result<Output, SessionError> {
        let report = self.core.connect_auto(window, token_file)?;
        let joined = report.joined();
        let refused = report.rows.len() - joined;
        let found = Output::report(
            Report::Discovery(report.clone()),
            Output::Table(views::discovery(&report)),
        );
        let count = self.core.node_names().len();
        let summary = format!(
            "{joined} node{} joined, {refused} refused; {count} node{} connected",
            plural(joined),
            plural(count)
        );
        Ok(found
            .then(Output::text(summary))
            .then(self.nodes_table()?)
            .then(Output::text(self.next_step())))
    }

    fn next_step(&self) -> &'static str {
        if self.core.model().is_some() {
            "next: `:plan tensor` or `:shard tensor`"
        } else {
            "next: `:load smollm2`"
        }
    }

    pub(super) fn disconnect(&mut self) -> Result<Output, SessionError> {
        let count = self.core.disconnect()?;
        Ok(Output::text(format!(
            "released {count} node{}",
            plural(count)
        )))
    }

    pub(super) fn nodes_table(&mut self) -> Result<Output, SessionError> {
        let report = self.core.nodes_report()?;
        let view = Output::Table(views::nodes(&report));
        Ok(Output::report(Report::Nodes(report), view))
    }

    /// `:links emulate PROFILE|off`: every link of the cluster, now and
    /// after later `:connect`s.
    pub(super) fn emulate_links(
        &mut self,
        link: Option<LinkProfile>,
    ) -> Result<Output, SessionError> {
        let what = match &link {
            Some(l) => format!("emulating {}", l.describe()),
            None => "link emulation off".to_string(),
        };
        let on = link.is_some();
        if !self.core.emulate_links(link)? {
            return Ok(Output::text(format!(
                "{what}: it applies from the next `:connect`"
            )));
        }
        let detail = if on {
            " on every link: coordinator to nodes, nodes to coordinator, node to node. \
             `:links` after a prompt shows the timings it gives."
        } else {
            ": every link sends straight to its socket again."
        };
        Ok(Output::text(format!("{what}{detail}")))
    }

    pub(super) fn links(&mut self) -> Result<Output, SessionError> {
        let report = self.core.links_report()?;
        let view = views::links(&report);
        Ok(Output::report(Report::Links(report), view))
    }

    pub(super) fn kill(
        &mut self,
        which: &str,
        after: Option<usize>,
    ) -> Result<Output, SessionError> {
        if let Some(steps) = after {
            let name = self.core.kill_after(which, steps)?;
            return Ok(Output::text(format!(
                "{name} will be killed after {steps} steps of the next generation"
            )));
        }
        let (name, alive, known) = self.core.kill(which)?;
        let next = if self.core.recovers() {
            "The next prompt re-plans on the survivors (recover is on)."
        } else {
            "Prompts fail until `:shard LAYOUT` re-plans on the survivors."
        };
        Ok(Output::text(format!(
            "killed {name}; {alive} of {known} nodes left. {next}"
        )))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
