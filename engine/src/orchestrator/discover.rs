//! `:connect auto` and `--nodes auto`, for every front end: browse the LAN
//! for a bounded window, try each node found with the token, and report
//! who joined and who was turned away and why. Front ends only render the
//! [`DiscoveryReport`].

use std::path::Path;
use std::time::Duration;

use crate::cluster::coordinator::{Cluster, Refusal};
use crate::discovery::{browse, FoundNode};
use crate::net::Token;

use super::nodes::NodeSet;
use super::report::{DiscoveryOutcome, DiscoveryReport, DiscoveryRow, NodeOrigin};
use super::{Orchestrator, OrchestratorError, Runner};

impl Orchestrator {
    /// Browses for `window`, then connects every node found that accepts
    /// the token (joining the connected cluster, if there is one). No node
    /// found, or none accepting, is an error that says so.
    pub fn connect_auto(
        &mut self,
        window: Duration,
        token_file: Option<&Path>,
    ) -> Result<DiscoveryReport, OrchestratorError> {
        let token = self.discovery_token(token_file)?;
        let found = browse(window).map_err(|e| OrchestratorError::setup("browsing the LAN", e))?;
        if found.is_empty() {
            return Err(OrchestratorError::NoneFound {
                seconds: window.as_secs_f64(),
            });
        }
        self.connect_found(&found, window, token)
    }

    /// The token to offer found nodes: the file's, which must be the
    /// connected cluster's when there is one.
    fn discovery_token(
        &self,
        token_file: Option<&Path>,
    ) -> Result<Option<Token>, OrchestratorError> {
        let token = match token_file {
            Some(path) => Some(Token::from_file(path).map_err(|e| {
                OrchestratorError::setup(format!("reading the token {}", path.display()), e)
            })?),
            None => None,
        };
        match (&self.nodes, &token) {
            (None, None) => Err(OrchestratorError::NeedsTokenFile),
            (Some(n), Some(t)) if !n.cluster.uses_token(t) => Err(OrchestratorError::setup(
                "joining the nodes found",
                "the token file is not the connected cluster's token; nodes of one cluster share one token",
            )),
            _ => Ok(token),
        }
    }

    /// Tries each of `found` in turn (`token` starts a cluster when none
    /// is connected).
    fn connect_found(
        &mut self,
        found: &[FoundNode],
        window: Duration,
        token: Option<Token>,
    ) -> Result<DiscoveryReport, OrchestratorError> {
        let created = self.nodes.is_none();
        if let (None, Some(token)) = (&self.nodes, token) {
            let client = self.config.client_name.clone();
            let mut cluster = Cluster::connect_with(&[], token, &client, self.link_settings())?;
            cluster.step_deadline = self.config.step_timeout;
            self.nodes = Some(NodeSet::new(cluster, Vec::new()));
        }
        let n = self
            .nodes
            .as_mut()
            .ok_or(OrchestratorError::NeedsTokenFile)?;
        let report = try_each(found, window, |f| {
            n.cluster.admit(&f.addr).map_err(|e| e.refusal)
        });
        if report.joined() > 0 && self.link.is_some() {
            // As `connect` does: the nodes' own sends are emulated too.
            n.cluster.emulate_links(self.link.clone())?;
        }
        for row in &report.rows {
            if let DiscoveryOutcome::Joined { .. } = row.outcome {
                n.origins.insert(
                    row.addr.clone(),
                    NodeOrigin::Mdns {
                        instance: row.instance.clone(),
                    },
                );
                if !self.addresses_used.contains(&row.addr) {
                    self.addresses_used.push(row.addr.clone());
                }
            }
        }
        if report.joined() == 0 {
            if created {
                self.nodes = None;
            }
            return Err(OrchestratorError::NoneAccepted {
                found: report.rows.len(),
                refusals: report.refusals().join("; "),
            });
        }
        if !created && self.is_sharded() {
            self.set_runner(Runner::Idle);
            self.cached.clear();
        }
        Ok(report)
    }
}

/// Tries every found node with `admit` and collects what became of each:
/// the one loop every front end's `auto` goes through.
fn try_each(
    found: &[FoundNode],
    window: Duration,
    mut admit: impl FnMut(&FoundNode) -> Result<String, Refusal>,
) -> DiscoveryReport {
    let rows = found
        .iter()
        .map(|f| {
            let outcome = match admit(f) {
                Ok(node) => DiscoveryOutcome::Joined { node },
                Err(why) => DiscoveryOutcome::Refused(why),
            };
            DiscoveryRow::new(f, outcome)
        })
        .collect();
    DiscoveryReport {
        window: window.as_secs_f64(),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::NodeAdvert;

    fn found(instance: &str, addr: &str) -> FoundNode {
        FoundNode {
            instance: instance.into(),
            addr: addr.into(),
            addresses: vec![addr.split(':').next().unwrap().parse().unwrap()],
            advert: Ok(NodeAdvert {
                name: instance.into(),
                protocol: 1,
                version: "0.1.0".into(),
                threads: 1,
            }),
        }
    }

    #[test]
    fn every_node_found_is_tried_and_each_outcome_kept_in_order() {
        let nodes = [
            found("a", "10.0.0.2:7070"),
            found("b", "10.0.0.3:7070"),
            found("c", "10.0.0.4:7070"),
        ];
        let mut next = 0;
        let report = try_each(&nodes, Duration::from_secs(2), |f| {
            if f.instance == "b" {
                return Err(Refusal::RefusedByNode {
                    reason: "wrong token".into(),
                });
            }
            next += 1;
            Ok(format!("node{}", next - 1))
        });
        assert_eq!(report.window, 2.0);
        assert_eq!(report.joined(), 2);
        let outcomes: Vec<_> = report.rows.iter().map(|r| r.outcome.clone()).collect();
        assert_eq!(
            outcomes,
            [
                DiscoveryOutcome::Joined {
                    node: "node0".into()
                },
                DiscoveryOutcome::Refused(Refusal::RefusedByNode {
                    reason: "wrong token".into()
                }),
                DiscoveryOutcome::Joined {
                    node: "node1".into()
                },
            ]
        );
        assert_eq!(report.refusals(), ["b (10.0.0.3:7070): wrong token"]);
        assert_eq!(report.rows[0].advert.as_ref().unwrap().name, "a");
    }

    #[test]
    fn a_browse_that_finds_nothing_is_an_error_naming_the_window() {
        let e = OrchestratorError::NoneFound { seconds: 2.0 };
        assert!(e.to_string().contains("within 2 s"), "{e}");
    }
}
