//! `:connect auto` / `--nodes auto`: the nodes a browse found and what
//! became of each.

use serde::Serialize;

use crate::cluster::coordinator::Refusal;
use crate::discovery::{FoundNode, NodeAdvert};

/// What became of one node found on the LAN.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum DiscoveryOutcome {
    /// It accepted the token and joined under this name ("node2").
    Joined { node: String },
    /// It was tried and turned away, and why.
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscoveryRow {
    /// The service instance name it advertised.
    pub instance: String,
    /// The address dialled.
    pub addr: String,
    /// Its TXT record, when it could be read.
    pub advert: Option<NodeAdvert>,
    pub outcome: DiscoveryOutcome,
}

impl DiscoveryRow {
    pub fn new(found: &FoundNode, outcome: DiscoveryOutcome) -> Self {
        Self {
            instance: found.instance.clone(),
            addr: found.addr.clone(),
            advert: found.advert.as_ref().ok().cloned(),
            outcome,
        }
    }
}

/// Every node found in one browse, in the order they were tried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscoveryReport {
    /// How long the browse lasted, in seconds.
    pub window: f64,
    pub rows: Vec<DiscoveryRow>,
}

impl DiscoveryReport {
    pub fn joined(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| matches!(r.outcome, DiscoveryOutcome::Joined { .. }))
            .count()
    }

    /// "INSTANCE (ADDR): REASON" for each node turned away.
    pub fn refusals(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter_map(|r| match &r.outcome {
                DiscoveryOutcome::Refused(why) => {
                    Some(format!("{} ({}): {why}", r.instance, r.addr))
                }
                DiscoveryOutcome::Joined { .. } => None,
            })
            .collect()
    }
}
