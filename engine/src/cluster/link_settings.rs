//! How a coordinator keeps its connections: the heartbeat's silence and
//! whether frames are sealed. Both are settled when a node is connected
//! (the handshake chooses the security), and nodes take the same for their
//! peers from the plan.

use super::heartbeat::Liveness;
use crate::net::LinkSecurity;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkSettings {
    /// How long a node may be silent before it is named.
    pub liveness: Liveness,
    /// Sealed (the default) or, for measuring, plaintext.
    pub security: LinkSecurity,
}
