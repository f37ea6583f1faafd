//! Heartbeats in the cluster protocol (the mechanism: `net::heartbeat`).
//! The coordinator watches every node it is connected to, and each node
//! watches every peer its shard exchanges activations with, each over a
//! heartbeat connection of its own to the node's listener, authenticated
//! with the cluster's token like any other.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::net::heartbeat::{self, Watch, DEFAULT_SILENCE};
use crate::net::{auth, Connection, NetError, Token};

/// The client name a heartbeat connection introduces itself with.
pub(crate) const HEARTBEAT_CLIENT: &str = "heartbeat";

/// How long a node or peer may stay silent before it is named; `Off`
/// leaves only the step deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Liveness {
    Off,
    /// Silence, in milliseconds, after which the peer is declared hung.
    After {
        ms: u32,
    },
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::After {
            ms: DEFAULT_SILENCE.as_millis() as u32,
        }
    }
}

impl Liveness {
    /// `0` switches it off.
    pub fn from_silence(silence: Duration) -> Self {
        match silence.as_millis() {
            0 => Liveness::Off,
            ms => Liveness::After {
                ms: ms.min(u32::MAX as u128) as u32,
            },
        }
    }

    pub fn silence(self) -> Option<Duration> {
        match self {
            Liveness::Off => None,
            Liveness::After { ms } => Some(Duration::from_millis(ms.into())),
        }
    }
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.silence() {
            None => f.write_str("off"),
            Some(s) => write!(f, "{:.1} s", s.as_secs_f64()),
        }
    }
}

/// Opens a heartbeat connection to the listener at `addr` (`name` in
/// errors) and watches it: when the other end falls silent, `target` (the
/// working connection to the same process) is cut, naming it.
pub(crate) fn watch_node(
    addr: &str,
    name: &str,
    token: &Token,
    target: &Connection,
    liveness: Liveness,
    deadline: Duration,
) -> Result<Option<Watch>, NetError> {
    let Some(silence) = liveness.silence() else {
        return Ok(None);
    };
    let cutter = target.cutter()?;
    let mut beats = Connection::connect(addr, name, deadline)?;
    // The same security as the connection it watches.
    let security = target.security();
    auth::client_handshake_with(
        &mut beats,
        token.as_bytes(),
        HEARTBEAT_CLIENT,
        deadline,
        security,
    )?;
    heartbeat::watch(beats, cutter, silence).map(Some)
}
