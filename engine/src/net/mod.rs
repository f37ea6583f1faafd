//! The wire protocol between the coordinator and nodes: length-prefixed
//! binary frames over a blocking byte transport (TCP today).
//!
//! - [`frame`]: bytes <-> [`Frame`] (header, caps, tensor headers); pure and
//!   fuzzable.
//! - [`tensor`]: the dtype + shape + tag header in front of tensor data.
//! - [`connection`]: a [`Connection`] to one named peer, where every receive
//!   has a deadline and every error names the peer.
//! - [`transport`]: the [`Transport`] trait under a connection (bytes in
//!   order to one peer) and [`transport::TcpTransport`], its implementation.
//! - [`auth`]: the version check and mutual HMAC-SHA256 handshake that opens
//!   every connection.
//! - [`seal`]: AES-256-GCM on every frame after the handshake, one key
//!   per direction, segment counters as nonces; `cipher` picks the
//!   implementation the CPU runs fastest.
//! - [`token`]: the shared secret, which never prints.
//! - [`heartbeat`]: liveness beside each working connection; a peer that
//!   falls silent has its working connection cut, naming it.
//! - [`link`]: link emulation (latency, jitter, bandwidth) on the send path,
//!   as a transport layer ([`link::ShapedTransport`]).
//! - [`error`]: [`FrameError`] (bytes) and [`NetError`] (a peer).

pub mod auth;
mod cipher;
pub mod connection;
mod deadline;
pub mod error;
pub mod frame;
pub mod heartbeat;
pub(crate) mod key_share;
pub mod link;
pub mod seal;
mod tag;
pub mod tensor;
pub mod token;
pub mod transport;

#[cfg(test)]
mod tests;

pub use auth::{
    client_handshake, client_handshake_with, refuse_client, server_handshake, ClientHello,
    ServerWelcome,
};
pub use connection::Connection;
pub use error::{FrameError, NetError, TokenError};
pub use frame::{
    parse_frame, Frame, FrameKind, FrameLimits, TensorDtype, TensorHeader, PROTOCOL_VERSION,
};
pub use link::{LinkProfile, LinkSpecError};
pub use seal::LinkSecurity;
pub use tag::TensorTag;
pub use token::Token;
pub use transport::{Dialer, Listener, Transport};
