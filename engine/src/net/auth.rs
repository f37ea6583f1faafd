//! The handshake that opens every connection: a version check, then mutual
//! HMAC-SHA256 challenge–response over a shared token.
//!
//! ```text
//! client -> Hello     { protocol, client_nonce, client_share, client_name, security }
//! server -> Challenge { protocol, server_nonce, server_share, server_name }   | Refused { reason }
//! client -> Proof     { mac = HMAC(token, "shardlab-client" || security || server_nonce || client_nonce || shares) }
//! server -> Welcome   { mac = HMAC(token, "shardlab-server" || security || client_nonce || server_nonce || shares), info }
//!                                                               | Refused { reason }
//! ```
//!
//! `shares` are both sides' ephemeral X25519 public keys
//! ([`super::key_share`]); the secret they agree on goes into the sealed
//! link's keys, which gives forward secrecy, and the MACs cover the shares,
//! so nobody on the path can substitute their own.
//!
//! The client chooses the link's security: sealed (the default) or, for
//! measuring, plaintext. Both proofs cover that choice, so a peer on the
//! path that rewrites it makes the handshake fail. From the frame after
//! Welcome on, a sealed link encrypts and authenticates every frame under
//! keys derived from the token and both nonces ([`super::seal`]).
//!
//! Both nonces are fresh per connection, so a recorded Proof is worthless
//! against a new Challenge; the two directions use different labels, so one
//! side's proof cannot be reflected back as the other's. Versions are checked
//! before any token work, and the server verifies in constant time
//! (`Mac::verify_slice`). Until the handshake ends, frames are capped at
//! [`HANDSHAKE_LIMITS`], so an unauthenticated peer cannot make us allocate.
//!
//! Not covered: the handshake's own frames, which are readable (they carry
//! names, nonces, shares and MACs, never the token).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;

use super::connection::Connection;
use super::deadline::Deadline;
use super::error::NetError;
use super::frame::{FrameLimits, PROTOCOL_VERSION};
use super::key_share::KeyShare;
use super::seal::{LinkSecurity, SessionKeys, Side};

const CLIENT_LABEL: &[u8] = b"shardlab-client";
const SERVER_LABEL: &[u8] = b"shardlab-server";

/// Frame caps while the peer is not yet authenticated.
pub const HANDSHAKE_LIMITS: FrameLimits = FrameLimits {
    max_control: 256 * 1024,
    max_tensor: 0,
};

/// 32 bytes (a nonce or a MAC), hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bytes32(pub(crate) [u8; 32]);

impl Bytes32 {
    fn random() -> Self {
        Bytes32(rand::random())
    }
}

impl std::fmt::Debug for Bytes32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for Bytes32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(&text)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .map(Bytes32)
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// The handshake's messages, as they travel in control frames.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "handshake", rename_all = "snake_case")]
pub(crate) enum HandshakeMsg {
    Hello {
        protocol: u16,
        client_nonce: Bytes32,
        /// The client's ephemeral X25519 public key.
        client_share: Bytes32,
        client_name: String,
        #[serde(default)]
        security: LinkSecurity,
    },
    Challenge {
        protocol: u16,
        server_nonce: Bytes32,
        /// The server's ephemeral X25519 public key.
        server_share: Bytes32,
        server_name: String,
    },
    Proof {
        mac: Bytes32,
    },
    Welcome {
        mac: Bytes32,
        info: serde_json::Value,
    },
    Refused {
        reason: String,
    },
}

impl HandshakeMsg {
    fn name(&self) -> &'static str {
        match self {
            HandshakeMsg::Hello { .. } => "Hello",
            HandshakeMsg::Challenge { .. } => "Challenge",
            HandshakeMsg::Proof { .. } => "Proof",
            HandshakeMsg::Welcome { .. } => "Welcome",
            HandshakeMsg::Refused { .. } => "Refused",
        }
    }
}

/// What a server learns about an authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub protocol: u16,
    pub client_name: String,
    /// What the client chose for the link after the handshake.
    pub security: LinkSecurity,
}

/// What a client learns about the server it authenticated.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerWelcome {
    pub protocol: u16,
    pub server_name: String,
    /// Whatever the server's `on_authenticated` hook supplied (node info).
    pub info: serde_json::Value,
}

/// What both proofs cover, and the link's keys come from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exchange {
    pub security: LinkSecurity,
    pub client_nonce: Bytes32,
    pub server_nonce: Bytes32,
    pub client_share: Bytes32,
    pub server_share: Bytes32,
}

/// Whose proof a MAC is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Prover {
    Client,
    Server,
}

/// HMAC-SHA256(token, label || security || the other's nonce || one's own
/// nonce || client_share || server_share), as a keyed MAC ready to
/// finalize or verify.
fn keyed(
    token: &[u8],
    prover: Prover,
    ex: &Exchange,
    conn: &Connection,
) -> Result<Hmac<Sha256>, NetError> {
    if token.is_empty() {
        return Err(NetError::AuthFailed {
            peer: conn.peer().to_string(),
            reason: "the shared token is empty".to_string(),
        });
    }
    // HMAC takes keys of any length, so this cannot fail; report rather
    // than unwrap all the same.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(token).map_err(|e| NetError::AuthFailed {
            peer: conn.peer().to_string(),
            reason: format!("cannot key HMAC-SHA256: {e}"),
        })?;
    let (label, theirs, own) = match prover {
        Prover::Client => (CLIENT_LABEL, &ex.server_nonce, &ex.client_nonce),
        Prover::Server => (SERVER_LABEL, &ex.client_nonce, &ex.server_nonce),
    };
    mac.update(label);
    mac.update(&[ex.security.code()]);
    mac.update(&theirs.0);
    mac.update(&own.0);
    mac.update(&ex.client_share.0);
    mac.update(&ex.server_share.0);
    Ok(mac)
}

/// `prover`'s proof over `ex`.
pub(crate) fn proof(
    token: &[u8],
    prover: Prover,
    ex: &Exchange,
    conn: &Connection,
) -> Result<Bytes32, NetError> {
    let tag = keyed(token, prover, ex, conn)?.finalize();
    Ok(Bytes32(tag.into_bytes().into()))
}

fn version_reason(server_name: &str, theirs: u16) -> String {
    format!("{server_name} speaks wire protocol {PROTOCOL_VERSION}, the client speaks {theirs}")
}

fn unexpected(conn: &Connection, expected: &str, got: &HandshakeMsg) -> NetError {
    NetError::AuthFailed {
        peer: conn.peer().to_string(),
        reason: format!("expected a {expected} message, got a {}", got.name()),
    }
}

/// Runs `f` with the handshake's frame caps, restoring the caller's after.
fn with_handshake_limits<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T, NetError>,
) -> Result<T, NetError> {
    let saved = conn.limits();
    conn.set_limits(HANDSHAKE_LIMITS);
    let result = f(conn);
    conn.set_limits(saved);
    result
}

/// Authenticates to a server and checks that it knows the token too; the
/// link is sealed from then on. `deadline` bounds the whole exchange.
pub fn client_handshake(
    conn: &mut Connection,
    token: &[u8],
    client_name: &str,
    deadline: std::time::Duration,
) -> Result<ServerWelcome, NetError> {
    client_handshake_with(conn, token, client_name, deadline, LinkSecurity::Sealed)
}

/// [`client_handshake`] choosing the link's security.
pub fn client_handshake_with(
    conn: &mut Connection,
    token: &[u8],
    client_name: &str,
    deadline: std::time::Duration,
    security: LinkSecurity,
) -> Result<ServerWelcome, NetError> {
    let dl = Deadline::after(deadline);
    let client = Client {
        token,
        name: client_name,
        security,
    };
    with_handshake_limits(conn, |conn| client_steps(conn, &client, &dl))
}

/// Who the client is and what it asks for.
struct Client<'a> {
    token: &'a [u8],
    name: &'a str,
    security: LinkSecurity,
}

fn client_steps(
    conn: &mut Connection,
    client: &Client<'_>,
    dl: &Deadline,
) -> Result<ServerWelcome, NetError> {
    let token = client.token;
    let client_nonce = Bytes32::random();
    let share = KeyShare::new();
    conn.send_control(&HandshakeMsg::Hello {
        protocol: PROTOCOL_VERSION,
        client_nonce,
        client_share: share.public,
        client_name: client.name.to_string(),
        security: client.security,
    })?;
    let (protocol, server_nonce, server_share, server_name) = match conn.recv_control_by(dl)? {
        HandshakeMsg::Challenge {
            protocol,
            server_nonce,
            server_share,
            server_name,
        } => (protocol, server_nonce, server_share, server_name),
        HandshakeMsg::Refused { reason } => {
            return Err(NetError::Refused {
                peer: conn.peer().to_string(),
                reason,
            })
        }
        other => return Err(unexpected(conn, "Challenge", &other)),
    };
    if protocol != PROTOCOL_VERSION {
        return Err(NetError::VersionMismatch {
            peer: conn.peer().to_string(),
            ours: PROTOCOL_VERSION,
            theirs: protocol,
        });
    }
    let ex = Exchange {
        security: client.security,
        client_nonce,
        server_nonce,
        client_share: share.public,
        server_share,
    };
    let mac = proof(token, Prover::Client, &ex, conn)?;
    conn.send_control(&HandshakeMsg::Proof { mac })?;
    match conn.recv_control_by(dl)? {
        HandshakeMsg::Welcome { mac, info } => {
            keyed(token, Prover::Server, &ex, conn)?
                .verify_slice(&mac.0)
                .map_err(|_| NetError::AuthFailed {
                    peer: conn.peer().to_string(),
                    reason: "its proof does not match our token: it does not know the \
                             shared token"
                        .to_string(),
                })?;
            seal_if_asked(conn, token, &ex, share, Side::Client)?;
            Ok(ServerWelcome {
                protocol,
                server_name,
                info,
            })
        }
        HandshakeMsg::Refused { reason } => Err(NetError::Refused {
            peer: conn.peer().to_string(),
            reason,
        }),
        other => Err(unexpected(conn, "Welcome", &other)),
    }
}

/// Seals the link from the next frame on, unless plaintext was chosen:
/// keys from the token, both nonces and the secret `share` agrees on with
/// the other side's.
fn seal_if_asked(
    conn: &mut Connection,
    token: &[u8],
    ex: &Exchange,
    share: KeyShare,
    side: Side,
) -> Result<(), NetError> {
    if ex.security == LinkSecurity::Plaintext {
        return Ok(());
    }
    let theirs = match side {
        Side::Client => &ex.server_share,
        Side::Server => &ex.client_share,
    };
    let failed = |reason: &str| NetError::AuthFailed {
        peer: conn.peer().to_string(),
        reason: reason.to_string(),
    };
    let shared = share
        .agree(theirs)
        .ok_or_else(|| failed("its key share is degenerate (a low-order point)"))?;
    let keys = SessionKeys::derive(token, &ex.client_nonce.0, &ex.server_nonce.0, &shared, side)
        .ok_or_else(|| failed("cannot derive the link's keys from the token"))?;
    conn.start_sealing(&keys);
    Ok(())
}

/// Sends a refusal and half-closes, so the client reads the reason before
/// end-of-stream. A failure to send is ignored: the caller is already
/// returning the error that prompted the refusal.
fn refuse(conn: &mut Connection, reason: String) {
    let _ = conn.send_control(&HandshakeMsg::Refused { reason });
    let _ = conn.close_write();
}

/// Authenticates a client. After the client proves it knows the token,
/// `on_authenticated` decides: `Ok(info)` welcomes it (the client receives
/// `info`), `Err(reason)` refuses it (for example "busy, serving X since
/// T"). On success the connection is renamed after the client.
pub fn server_handshake(
    conn: &mut Connection,
    token: &[u8],
    server_name: &str,
    deadline: std::time::Duration,
    on_authenticated: impl FnOnce(&ClientHello) -> Result<serde_json::Value, String>,
) -> Result<ClientHello, NetError> {
    let dl = Deadline::after(deadline);
    with_handshake_limits(conn, |conn| {
        server_steps(conn, token, server_name, &dl, on_authenticated)
    })
}

/// Reads the client's Hello, answering a wrong version with a refusal.
fn recv_hello(
    conn: &mut Connection,
    server_name: &str,
    dl: &Deadline,
) -> Result<(ClientHello, Bytes32, Bytes32), NetError> {
    let msg = match conn.recv_control_by::<HandshakeMsg>(dl) {
        Ok(msg) => msg,
        Err(NetError::VersionMismatch { peer, ours, theirs }) => {
            refuse(conn, version_reason(server_name, theirs));
            return Err(NetError::VersionMismatch { peer, ours, theirs });
        }
        Err(e) => return Err(e),
    };
    let HandshakeMsg::Hello {
        protocol,
        client_nonce,
        client_share,
        client_name,
        security,
    } = msg
    else {
        let err = unexpected(conn, "Hello", &msg);
        refuse(conn, format!("expected a Hello, got a {}", msg.name()));
        return Err(err);
    };
    if protocol != PROTOCOL_VERSION {
        refuse(conn, version_reason(server_name, protocol));
        return Err(NetError::VersionMismatch {
            peer: conn.peer().to_string(),
            ours: PROTOCOL_VERSION,
            theirs: protocol,
        });
    }
    conn.set_peer_name(&client_name);
    Ok((
        ClientHello {
            protocol,
            client_name,
            security,
        },
        client_nonce,
        client_share,
    ))
}

fn server_steps(
    conn: &mut Connection,
    token: &[u8],
    server_name: &str,
    dl: &Deadline,
    on_authenticated: impl FnOnce(&ClientHello) -> Result<serde_json::Value, String>,
) -> Result<ClientHello, NetError> {
    let (hello, client_nonce, client_share) = recv_hello(conn, server_name, dl)?;
    let server_nonce = Bytes32::random();
    let share = KeyShare::new();
    conn.send_control(&HandshakeMsg::Challenge {
        protocol: PROTOCOL_VERSION,
        server_nonce,
        server_share: share.public,
        server_name: server_name.to_string(),
    })?;
    let mac = match conn.recv_control_by(dl)? {
        HandshakeMsg::Proof { mac } => mac,
        other => {
            let err = unexpected(conn, "Proof", &other);
            refuse(conn, format!("expected a Proof, got a {}", other.name()));
            return Err(err);
        }
    };
    let ex = Exchange {
        security: hello.security,
        client_nonce,
        server_nonce,
        client_share,
        server_share: share.public,
    };
    let expected = match keyed(token, Prover::Client, &ex, conn) {
        Ok(m) => m,
        Err(e) => {
            refuse(conn, "this server has no usable token".to_string());
            return Err(e);
        }
    };
    if expected.verify_slice(&mac.0).is_err() {
        refuse(conn, "wrong token".to_string());
        return Err(NetError::AuthFailed {
            peer: conn.peer().to_string(),
            reason: "its proof does not match our token (wrong token)".to_string(),
        });
    }
    match on_authenticated(&hello) {
        Ok(info) => {
            let mac = proof(token, Prover::Server, &ex, conn)?;
            conn.send_control(&HandshakeMsg::Welcome { mac, info })?;
            seal_if_asked(conn, token, &ex, share, Side::Server)?;
            Ok(hello)
        }
        Err(reason) => {
            refuse(conn, reason.clone());
            Err(NetError::Declined {
                peer: conn.peer().to_string(),
                reason,
            })
        }
    }
}

/// Turns a client away before any token work (e.g. "busy, serving X
/// since T"): waits for its Hello so it is listening for the answer,
/// replies Refused, and half-closes. Returns what the client said it was.
pub fn refuse_client(
    conn: &mut Connection,
    reason: &str,
    deadline: std::time::Duration,
) -> Result<ClientHello, NetError> {
    let dl = Deadline::after(deadline);
    with_handshake_limits(conn, |conn| {
        let hello = match conn.recv_control_by::<HandshakeMsg>(&dl)? {
            HandshakeMsg::Hello {
                protocol,
                client_name,
                security,
                ..
            } => ClientHello {
                protocol,
                client_name,
                security,
            },
            other => {
                let err = unexpected(conn, "Hello", &other);
                refuse(conn, reason.to_string());
                return Err(err);
            }
        };
        conn.set_peer_name(&hello.client_name);
        refuse(conn, reason.to_string());
        Ok(hello)
    })
}
