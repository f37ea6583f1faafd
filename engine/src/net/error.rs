//! The wire layer's errors.
//!
//! [`FrameError`] is about bytes alone (it is what [`super::parse_frame`]
//! returns, with no socket in sight). [`NetError`] is about a conversation
//! with one peer, so every variant names that peer: when a step of a cluster
//! fails, the message must say which machine to look at.

use std::path::PathBuf;
use std::time::Duration;

use super::frame::FrameKind;
use super::tensor::MAX_TENSOR_DIMS;

/// A malformed or unacceptable frame. Raised from the header alone whenever
/// possible, so a hostile length is refused before anything is allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a shardlab frame: starts with {found:02x?}, expected \"SHLB\"")]
    BadMagic { found: Vec<u8> },
    #[error("frame uses wire protocol {found}, this side speaks {ours}")]
    UnsupportedVersion { found: u16, ours: u16 },
    #[error("unknown frame kind {code} (known: 1 = control, 2 = tensor, 3 = close)")]
    UnknownKind { code: u8 },
    #[error("frame flags {flags:#04x} are not defined (known: 0x01 = sealed)")]
    UnknownFlags { flags: u8 },
    #[error("close frame of {len} bytes (a close frame has {expected})")]
    BadClose { len: u32, expected: u32 },
    #[error(
        "sealed payload of {len} bytes is not a run of 64 KiB segments each followed by its \
         16-byte tag"
    )]
    BadSealedLength { len: u32 },
    #[error("a sealed frame: only the connection holding its keys can read it")]
    SealedWithoutKey,
    #[error("{}", seal_mismatch(*.sealed))]
    SealMismatch { sealed: bool },
    #[error("{kind} frame of {len} bytes is over the {cap}-byte limit")]
    TooLarge { kind: FrameKind, len: u64, cap: u64 },
    #[error("unknown tensor dtype code {code} (known: 0 = f32, 1 = f16, 2 = bf16, 3 = bytes)")]
    UnknownDtype { code: u8 },
    #[error("tensor has {ndim} dimensions, at most {MAX_TENSOR_DIMS} are allowed")]
    TooManyDims { ndim: usize },
    #[error("tensor header reserved bytes are {found:#06x}, must be 0")]
    ReservedNotZero { found: u16 },
    #[error("tensor shape {dims:?} ({dtype}) overflows a byte count")]
    ShapeOverflow { dims: Vec<u64>, dtype: &'static str },
    #[error("tensor payload of {len} bytes is too short for its tensor header")]
    ShortTensorPayload { len: usize },
    #[error(
        "tensor payload holds {found} data bytes but shape {dims:?} ({dtype}) needs {expected}"
    )]
    DataLength {
        dims: Vec<u64>,
        dtype: &'static str,
        expected: u64,
        found: u64,
    },
}

/// A failure talking to one peer. `peer` is a human name such as
/// `node1 (127.0.0.1:7071)`.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot connect to {peer}: {source}")]
    Connect {
        peer: String,
        source: std::io::Error,
    },
    #[error("{peer}: {op} failed: {source}")]
    Io {
        peer: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("{peer} closed the connection{}", closed_note(*.partial, *.cut_short))]
    Closed {
        peer: String,
        /// Bytes of an unfinished frame already received when it closed.
        partial: Option<(u64, u64)>,
        /// A sealed link whose stream ended without the peer's close frame:
        /// its process died, or someone cut the connection. (Plaintext
        /// links send no close frames, so theirs is never known.)
        cut_short: bool,
    },
    #[error("{peer}: timed out after {after:.1?} waiting for {what}")]
    Timeout {
        peer: String,
        what: String,
        after: Duration,
    },
    #[error("{peer} sent a bad frame: {source}")]
    Frame { peer: String, source: FrameError },
    #[error("{peer} speaks wire protocol {theirs}, this side speaks {ours}")]
    VersionMismatch {
        peer: String,
        ours: u16,
        theirs: u16,
    },
    #[error("expected {expected} from {peer}, got {got}")]
    UnexpectedFrame {
        peer: String,
        expected: String,
        got: String,
    },
    #[error("{peer} sent a control message that is not a valid {what}: {source}")]
    BadMessage {
        peer: String,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("cannot send {what} to {peer}: {problem}")]
    Encode {
        peer: String,
        what: &'static str,
        problem: String,
    },
    #[error("authentication with {peer} failed: {reason}")]
    AuthFailed { peer: String, reason: String },
    #[error("{peer} refused the connection: {reason}")]
    Refused { peer: String, reason: String },
    #[error("turned {peer} away: {reason}")]
    Declined { peer: String, reason: String },
    #[error("the connection to {peer} is unusable after an earlier error: {reason}")]
    Broken { peer: String, reason: String },
    /// Another thread cut the connection (the heartbeat, when the peer
    /// fell silent); `reason` says why.
    #[error("{peer} {reason}")]
    Cut { peer: String, reason: String },
    /// A sealed frame whose tag did not match: altered on the way,
    /// replayed, reordered, or sealed under other keys. `segment` counts
    /// the sealed segments this connection received (one per small frame).
    #[error(
        "{peer} sent a frame that failed authentication at sealed segment {segment} (altered, \
         replayed, reordered or sealed under other keys); the connection is closed"
    )]
    Unauthentic { peer: String, segment: u64 },
}

impl NetError {
    /// The peer closed the connection (rather than this side timing out
    /// or cutting it): when that happens mid-step, the peer's own failure
    /// is the cause.
    pub fn peer_closed(&self) -> bool {
        matches!(self, NetError::Closed { .. })
    }

    /// The peer this error is about.
    pub fn peer(&self) -> &str {
        match self {
            NetError::Connect { peer, .. }
            | NetError::Io { peer, .. }
            | NetError::Closed { peer, .. }
            | NetError::Timeout { peer, .. }
            | NetError::Frame { peer, .. }
            | NetError::VersionMismatch { peer, .. }
            | NetError::UnexpectedFrame { peer, .. }
            | NetError::BadMessage { peer, .. }
            | NetError::Encode { peer, .. }
            | NetError::AuthFailed { peer, .. }
            | NetError::Refused { peer, .. }
            | NetError::Declined { peer, .. }
            | NetError::Broken { peer, .. }
            | NetError::Cut { peer, .. }
            | NetError::Unauthentic { peer, .. } => peer,
        }
    }
}

fn seal_mismatch(sealed: bool) -> &'static str {
    if sealed {
        "a sealed frame on a plaintext link"
    } else {
        "a plaintext frame on a sealed link (every frame after the handshake must be sealed)"
    }
}

fn closed_note(partial: Option<(u64, u64)>, cut_short: bool) -> String {
    match partial {
        Some((got, total)) => {
            format!(" in the middle of a frame ({got} of {total} bytes received)")
        }
        None if cut_short => {
            " without a close frame (its process ended or the connection was cut)".to_string()
        }
        None => String::new(),
    }
}

/// Reading or writing a shared-token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path} is empty")]
    Empty { path: PathBuf },
}
