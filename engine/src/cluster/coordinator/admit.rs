//! Admitting one node at an address, with a typed answer when it is not
//! admitted: discovery tries every node it found and lists, for each one
//! turned away, why (the node's own words, a version, silence).

use serde::Serialize;

use super::{Cluster, ClusterError};
use crate::cluster::messages::Phase;
use crate::net::NetError;

/// Why a node was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Refusal {
    /// Nothing answered at the address, or not in time.
    Unreachable { message: String },
    /// The node turned this coordinator away, in its own words ("wrong
    /// token", "busy, serving ... since ...").
    RefusedByNode { reason: String },
    /// The node speaks another wire protocol.
    Version { ours: u16, theirs: u16 },
    /// The node could not prove it holds the token.
    NotAuthentic { reason: String },
    /// It is a member of this cluster already.
    AlreadyConnected,
    /// Anything else on the way in (a malformed answer, a heartbeat that
    /// would not start).
    Failed { message: String },
}

impl Refusal {
    /// The refusal a failed connect or handshake amounts to.
    pub fn from_net(e: &NetError) -> Refusal {
        match e {
            NetError::Connect { source, .. } => Refusal::Unreachable {
                message: source.to_string(),
            },
            NetError::Timeout { after, .. } => Refusal::Unreachable {
                message: format!("no answer within {after:.1?}"),
            },
            NetError::Refused { reason, .. } => Refusal::RefusedByNode {
                reason: reason.clone(),
            },
            NetError::VersionMismatch { ours, theirs, .. } => Refusal::Version {
                ours: *ours,
                theirs: *theirs,
            },
            NetError::AuthFailed { reason, .. } => Refusal::NotAuthentic {
                reason: reason.clone(),
            },
            other => Refusal::Failed {
                message: other.to_string(),
            },
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unreachable { message } => write!(f, "unreachable: {message}"),
            Refusal::RefusedByNode { reason } => f.write_str(reason),
            Refusal::Version { ours, theirs } => {
                write!(f, "speaks wire protocol {theirs}, this side speaks {ours}")
            }
            Refusal::NotAuthentic { reason } => write!(f, "failed authentication: {reason}"),
            Refusal::AlreadyConnected => f.write_str("connected already"),
            Refusal::Failed { message } => f.write_str(message),
        }
    }
}

/// A node that was not admitted: who, why, and the wording a
/// [`ClusterError`] gives it.
#[derive(Debug, Clone)]
pub struct AdmitError {
    /// "node3 (ADDR)"
    pub label: String,
    pub refusal: Refusal,
    message: String,
}

impl AdmitError {
    pub(super) fn new(label: &str, refusal: Refusal, message: impl std::fmt::Display) -> Self {
        Self {
            label: label.to_string(),
            refusal,
            message: message.to_string(),
        }
    }

    /// A connect or handshake that failed.
    pub(super) fn net(label: &str, e: NetError) -> Self {
        let message = match &e {
            NetError::Connect { source, .. } => format!("cannot connect: {source}"),
            other => other.to_string(),
        };
        Self::new(label, Refusal::from_net(&e), message)
    }

    /// Anything after the handshake.
    pub(super) fn failed(label: &str, message: impl std::fmt::Display) -> Self {
        let message = message.to_string();
        Self::new(
            label,
            Refusal::Failed {
                message: message.clone(),
            },
            message,
        )
    }
}

impl From<AdmitError> for ClusterError {
    fn from(e: AdmitError) -> Self {
        ClusterError::new(&e.label, Phase::Connect, e.message)
    }
}

/// Whether a node that fails to connect is kept for readmission.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum OnFailure {
    /// Always (`:connect ADDR`: the person named it, it is a member).
    Remember,
    /// Only if it was a lost member already (a node found on the LAN that
    /// does not hold the token is no member).
    RememberIfLost,
}

impl Cluster {
    /// Connects one more node at `addr` with the cluster's token, as the
    /// next `nodeN` (a lost node's address under its old name). Unlike
    /// [`Cluster::join`], a node that refuses is not remembered for
    /// readmission. Nothing loaded stays loaded. Returns the node's name.
    pub fn admit(&mut self, addr: &str) -> Result<String, AdmitError> {
        self.connect_member(addr, OnFailure::RememberIfLost)
    }

    /// What [`Cluster::admit`] and [`Cluster::join`] share.
    pub(super) fn connect_member(
        &mut self,
        addr: &str,
        on_failure: OnFailure,
    ) -> Result<String, AdmitError> {
        if let Some(h) = self.nodes.iter().find(|h| h.addr == addr && h.is_alive()) {
            return Err(AdmitError::new(
                &h.label(),
                Refusal::AlreadyConnected,
                "is connected already",
            ));
        }
        let was_lost = self.lost.iter().position(|(_, a)| a == addr);
        let name = match was_lost {
            Some(i) => self.lost.remove(i).0,
            None => self.fresh_name(),
        };
        // A failed node still listed at this address gives way to it.
        self.nodes.retain(|h| h.addr != addr);
        if let Err(e) = self.add_node(&name, addr, super::CONNECT_DEADLINE) {
            if on_failure == OnFailure::Remember || was_lost.is_some() {
                self.lost.push((name, addr.to_string()));
            }
            return Err(e);
        }
        self.last_step = vec![None; self.nodes.len()];
        self.loaded = None;
        self.broken = None;
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_failures_become_typed_refusals() {
        let refused = NetError::Refused {
            peer: "node1".into(),
            reason: "wrong token".into(),
        };
        assert_eq!(
            Refusal::from_net(&refused),
            Refusal::RefusedByNode {
                reason: "wrong token".into()
            }
        );
        assert_eq!(Refusal::from_net(&refused).to_string(), "wrong token");
        let version = NetError::VersionMismatch {
            peer: "node1".into(),
            ours: 2,
            theirs: 1,
        };
        assert_eq!(
            Refusal::from_net(&version),
            Refusal::Version { ours: 2, theirs: 1 }
        );
        let gone = NetError::Connect {
            peer: "node1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(matches!(
            Refusal::from_net(&gone),
            Refusal::Unreachable { .. }
        ));
    }

    #[test]
    fn an_admit_error_reads_as_the_cluster_error_it_always_was() {
        let e = AdmitError::net(
            "node1 (10.0.0.2:7070)",
            NetError::Refused {
                peer: "node1 (10.0.0.2:7070)".into(),
                reason: "wrong token".into(),
            },
        );
        assert_eq!(
            ClusterError::from(e).to_string(),
            "node1 (10.0.0.2:7070) failed during connect: node1 (10.0.0.2:7070) refused the connection: wrong token"
        );
    }
}
