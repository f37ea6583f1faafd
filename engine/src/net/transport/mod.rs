//! The byte pipe under a [`super::Connection`]: what a connection needs
//! from TCP (today) or RDMA, MPI, ... (later), and nothing about frames.
//!
//! ```text
//! Connection       frames, caps, deadlines, errors that name the peer
//!   [seal]         frame encryption (a later issue): sits here, on whole frames
//!   ShapedTransport link emulation (net::link), when switched on
//!   dyn Transport  TcpTransport, or one more module per transport kind
//! ```
//!
//! A [`Transport`] moves bytes in order to one peer. Sends are whole frames
//! (a list of slices written out in full, as one vectored write where the
//! transport can); receives are "at least one byte before this instant",
//! which lets the connection batch small frames into one read and still
//! bound a peer that dribbles. [`Listener`] and [`Dialer`] make transports.
//!
//! Failures are typed ([`RecvFail`], [`SendFail`]) rather than `io::Error`
//! kinds, so a transport that is not a socket says "timed out" or "closed"
//! in the same words; the connection turns them into a
//! [`super::NetError`] naming the peer.
//!
//! Adding a transport kind: one module here (say `rdma.rs`) behind a cargo
//! feature, implementing [`Transport`], [`FrameSink`], [`Dialer`] and
//! [`Listener`]; see docs/ARCHITECTURE.md, "Adding a transport".

pub mod tcp;

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use tcp::{TcpConfig, TcpDialer, TcpTransport, TcpTransportListener};

/// Why a receive delivered no bytes.
#[derive(Debug)]
pub enum RecvFail {
    /// The deadline passed first.
    Timeout,
    /// The peer closed its sending side or went away.
    Closed,
    /// Anything else the transport reports.
    Io(io::Error),
}

/// Why a frame did not go out whole.
#[derive(Debug)]
pub enum SendFail {
    /// The peer took no bytes for the write timeout (it is not reading);
    /// `sent` bytes of this frame had gone.
    Stalled { sent: usize },
    /// Frames wait in a queue (an emulated link) and it stayed full for
    /// the write timeout; `queued` bytes are still in it.
    Backlog { queued: usize },
    /// The peer closed or went away.
    Closed,
    /// A frame handed over earlier failed on its way out (a queueing
    /// transport delivers in the background and reports at the next send).
    Earlier(Box<SendFail>),
    /// Anything else; `op` says what was being done.
    Io { op: &'static str, source: io::Error },
}

impl SendFail {
    /// A copy for reporting a background failure more than once.
    pub fn duplicate(&self) -> SendFail {
        match self {
            SendFail::Stalled { sent } => SendFail::Stalled { sent: *sent },
            SendFail::Backlog { queued } => SendFail::Backlog { queued: *queued },
            SendFail::Closed => SendFail::Closed,
            SendFail::Earlier(inner) => SendFail::Earlier(Box::new(inner.duplicate())),
            SendFail::Io { op, source } => SendFail::Io {
                op,
                source: io::Error::new(source.kind(), source.to_string()),
            },
        }
    }
}

/// A receive that stopped short: `got` bytes arrived before `fail`.
#[derive(Debug)]
pub struct ShortRead {
    pub got: usize,
    pub fail: RecvFail,
}

/// Setting a transport up (options, a listening socket) failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed: {source}")]
pub struct SetupError {
    pub op: &'static str,
    pub source: io::Error,
}

impl SetupError {
    pub fn new(op: &'static str, source: io::Error) -> Self {
        SetupError { op, source }
    }
}

/// The sending half of a transport: writes whole frames in order.
pub trait FrameSink: Send {
    /// Writes every byte of `parts`, in order, as one frame. `parts` may be
    /// advanced in place (its contents are unspecified afterwards). Waits
    /// at most the transport's write timeout for a peer that stops reading.
    fn write_frame(&mut self, parts: &mut [IoSlice<'_>]) -> Result<(), SendFail>;
}

/// An ordered, reliable byte pipe to one peer.
pub trait Transport: FrameSink {
    /// A short name of the transport kind ("tcp"), for debugging output.
    fn kind(&self) -> &'static str;

    /// The peer's address, where the transport has one (errors show it).
    fn peer_addr(&self) -> Option<SocketAddr>;

    /// Reads at least one byte into `into` (at most `into.len()`), waiting
    /// no later than `deadline`.
    fn read_before(&mut self, into: &mut [u8], deadline: Instant) -> Result<usize, RecvFail>;

    /// Fills all of `into`, giving up at `deadline`.
    fn read_exact_before(&mut self, into: &mut [u8], deadline: Instant) -> Result<(), ShortRead> {
        let mut got = 0;
        while got < into.len() {
            match self.read_before(&mut into[got..], deadline) {
                Ok(n) => got += n,
                Err(fail) => return Err(ShortRead { got, fail }),
            }
        }
        Ok(())
    }

    /// Bounds how long a send waits for a peer that is not reading
    /// (never zero: callers pass at least a millisecond).
    fn set_write_timeout(&mut self, timeout: Duration) -> Result<(), SetupError>;

    /// Tells the peer nothing more will be sent; it reads end-of-stream
    /// after the frames already sent. Receiving still works.
    fn shutdown_write(&mut self) -> Result<(), SendFail>;

    /// A second sending handle for another thread (link emulation's
    /// delivery thread), writing to the same peer in the same byte stream.
    /// Only one of the two is used at a time. A transport that cannot share
    /// its sending side returns an error, and link emulation is then
    /// unavailable on it.
    fn sender(&self) -> Result<Box<dyn FrameSink>, SetupError>;

    /// A handle another thread can use to cut this transport at once: a
    /// receive or send blocked on it (or made later) fails as if the peer
    /// had gone. The heartbeat uses it on a peer that stopped answering.
    fn cutter(&self) -> Result<Box<dyn Cut>, SetupError>;
}

/// Cuts a transport from another thread (see [`Transport::cutter`]).
pub trait Cut: Send + Sync {
    /// Closes both directions now; calling it again does nothing more.
    fn cut(&self);
}

/// Accepts incoming transports (the node side).
pub trait Listener: Send {
    /// Waits for the next peer.
    fn accept(&self) -> Result<Box<dyn Transport>, SetupError>;

    /// Where peers reach this listener (with the port chosen, for port 0).
    fn local_addr(&self) -> Result<SocketAddr, SetupError>;
}

/// Opens transports to a peer's address (the coordinator, and a node
/// dialing its peers).
pub trait Dialer {
    fn dial(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Box<dyn Transport>>;
}

/// True when `e` means the peer closed or reset the stream.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

/// True when `e` means a socket timeout fired (or a non-blocking socket
/// had nothing): worth trying again while time is left.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Writes a whole frame through any `io::Write` whose write timeout is set
/// (sockets, Unix streams): the loop every stream-based transport needs.
pub fn write_frame_to<W: io::Write + ?Sized>(
    w: &mut W,
    mut parts: &mut [IoSlice<'_>],
) -> Result<(), SendFail> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut sent = 0usize;
    while sent < total {
        match w.write_vectored(parts) {
            Ok(0) => return Err(SendFail::Closed),
            Ok(n) => {
                sent += n;
                IoSlice::advance_slices(&mut parts, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(SendFail::Stalled { sent }),
            Err(e) if is_disconnect(&e) => return Err(SendFail::Closed),
            Err(source) => return Err(SendFail::Io { op: "send", source }),
        }
    }
    Ok(())
}
