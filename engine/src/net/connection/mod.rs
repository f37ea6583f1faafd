//! A framed connection to one named peer over a [`Transport`] (TCP unless
//! built from another with [`Connection::from_transport`] or
//! [`Connection::dial`]).
//!
//! Receives take a deadline for the whole frame, handed to the transport
//! with every read, so a peer that dribbles bytes (slowloris) cannot
//! stretch a receive past its deadline. Headers are read through a small
//! reusable buffer; payloads go straight from the transport into the
//! caller's buffer, so the tensor hot path ([`Connection::recv_tensor_into`],
//! [`Connection::send_tensor`]) neither allocates nor copies the data more
//! than once.
//!
//! After an error that leaves the byte stream out of step (a bad frame, a
//! timeout in the middle of a payload, a partial write), that direction of
//! the connection refuses further use with [`NetError::Broken`] instead of
//! misreading what follows. A timeout while waiting for the next frame's
//! header is harmless: the bytes so far stay buffered and the caller may
//! wait again.
//!
//! After the handshake a connection is sealed ([`Connection::start_sealing`]):
//! every frame is encrypted and authenticated per direction (see
//! [`super::seal`]), unless the client chose plaintext. Dropping a sealed
//! connection, or [`Connection::close_write`] on one, sends a sealed close
//! frame first, so the peer can tell an end it meant from one cut short.
//! Unsealed connections (a handshake in progress, plaintext links) send
//! none: an unauthenticated client is sent nothing but refusals.
//!
//! [`Connection::emulate`] routes this side's sends through an emulated
//! link (latency, jitter, bandwidth; see [`super::link`]): the transport
//! sits inside a [`ShapedTransport`]. Receives are the same either way.
//!
//! - `send.rs`: control and tensor frames out, send failures to errors.
//! - `recv.rs`: frames in, within a deadline.

mod recv;
mod send;

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::error::NetError;
use super::frame::{FrameLimits, HEADER_LEN};
use super::heartbeat::LinkCutter;
use super::link::{LinkProfile, ShapedTransport, SwitchFail};
use super::seal::{LinkSecurity, Seal, SessionKeys, Side};
use super::transport::{Dialer, SetupError, TcpConfig, TcpDialer, TcpTransport, Transport};

/// Size of the header read buffer; reads ask for this much so that small
/// frames sent back to back arrive in one system call.
const READ_CHUNK: usize = 64 * 1024;
/// Sends have no deadline argument; this bounds a peer that stops reading.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// What a dropped connection waits to hand over its close frame.
const CLOSE_FRAME_TIMEOUT: Duration = Duration::from_millis(200);
/// Longest peer name kept, since a client chooses its own.
const MAX_NAME: usize = 64;

/// Keeps a self-chosen name printable and short.
fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    if cleaned.is_empty() {
        "unnamed peer".to_string()
    } else {
        cleaned
    }
}

/// `name (addr)`, or the bare name where the transport has no address.
fn described(name: &str, addr: Option<SocketAddr>) -> String {
    let name = clean_name(name);
    match addr {
        Some(a) => format!("{name} ({a})"),
        None => name,
    }
}

/// A framed, deadline-bounded conversation with one peer.
pub struct Connection {
    transport: ShapedTransport,
    peer: String,
    addr: Option<SocketAddr>,
    /// Bytes received but not yet consumed live in `rbuf[rstart..rend]`.
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    /// Frame and tensor headers being sent; reused.
    wbuf: Vec<u8>,
    /// Control payloads being received; reused.
    scratch: Vec<u8>,
    limits: FrameLimits,
    read_broken: Option<String>,
    write_broken: Option<String>,
    /// What sends may wait for a peer that is not reading.
    write_timeout: Duration,
    /// Why another thread cut this connection, once one has (see
    /// [`Connection::cutter`]): failures after it report this reason.
    cut: Arc<OnceLock<String>>,
    /// Both directions' ciphers once the handshake sealed the link.
    seal: Option<Seal>,
    /// Associated data of the frame being opened; reused.
    aad: Vec<u8>,
    /// One sealed segment being sent, with its tag; reused.
    sbuf: Vec<u8>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("transport", &self.transport)
            .field("buffered", &(self.rend - self.rstart))
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects over TCP to `addr`, trying each address it resolves to
    /// within `timeout`. `peer_name` is how errors will name the peer.
    pub fn connect<A>(addr: A, peer_name: &str, timeout: Duration) -> Result<Self, NetError>
    where
        A: ToSocketAddrs + std::fmt::Display,
    {
        Self::dial(&TcpDialer::default(), addr, peer_name, timeout)
    }

    /// Connects to `addr` through `dialer` (any transport kind), trying
    /// each address it resolves to within `timeout`.
    pub fn dial<A>(
        dialer: &dyn Dialer,
        addr: A,
        peer_name: &str,
        timeout: Duration,
    ) -> Result<Self, NetError>
    where
        A: ToSocketAddrs + std::fmt::Display,
    {
        let described = format!("{} ({addr})", clean_name(peer_name));
        let addrs = addr.to_socket_addrs().map_err(|source| NetError::Connect {
            peer: described.clone(),
            source,
        })?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing");
        for a in addrs {
            match dialer.dial(a, timeout) {
                Ok(transport) => return Self::from_transport(transport, peer_name),
                Err(e) => last = e,
            }
        }
        Err(NetError::Connect {
            peer: described,
            source: last,
        })
    }

    /// Wraps an accepted or connected TCP stream (with `TCP_NODELAY` on:
    /// see [`TcpConfig`]).
    pub fn from_stream(stream: TcpStream, peer_name: &str) -> Result<Self, NetError> {
        let addr = stream.peer_addr().ok();
        let transport =
            TcpTransport::new(stream, TcpConfig::default()).map_err(|e| NetError::Io {
                peer: described(peer_name, addr),
                op: e.op,
                source: e.source,
            })?;
        Self::from_transport(Box::new(transport), peer_name)
    }

    /// Wraps any transport to one peer.
    pub fn from_transport(
        transport: Box<dyn Transport>,
        peer_name: &str,
    ) -> Result<Self, NetError> {
        let addr = transport.peer_addr();
        let mut conn = Connection {
            transport: ShapedTransport::new(transport, DEFAULT_WRITE_TIMEOUT),
            peer: described(peer_name, addr),
            addr,
            rbuf: vec![0; READ_CHUNK],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(HEADER_LEN + 128),
            scratch: Vec::new(),
            limits: FrameLimits::default(),
            read_broken: None,
            write_broken: None,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            cut: Arc::new(OnceLock::new()),
            seal: None,
            aad: Vec::with_capacity(HEADER_LEN + 96),
            sbuf: Vec::new(),
        };
        conn.set_write_timeout(DEFAULT_WRITE_TIMEOUT)?;
        Ok(conn)
    }

    /// The name errors use, e.g. `node1 (127.0.0.1:7071)`.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Renames the peer (a server learns the client's name from its Hello).
    pub fn set_peer_name(&mut self, name: &str) {
        self.peer = described(name, self.addr);
    }

    /// Names the peer by a whole label, address included, in place of the
    /// connection's own (an accepted peer is better known by the address
    /// it listens on than by the port it dialled from).
    pub fn set_peer_label(&mut self, label: &str) {
        self.peer = clean_name(label);
    }

    /// Seals every frame from now on, both ways, under `keys` (the
    /// handshake calls this right after its last plaintext frame).
    pub(crate) fn start_sealing(&mut self, keys: &SessionKeys) {
        self.seal = Some(Seal::new(keys));
    }

    /// Seals this connection as one end (`client` or server) of a link
    /// whose keys come from `token` and all-zero nonces and shared secret. For the fuzz
    /// target and its seeds, which need sealed streams without a
    /// handshake; real links are sealed by the handshake, with fresh
    /// nonces. False for an empty token.
    #[doc(hidden)]
    pub fn seal_with_fixed_nonces(&mut self, token: &[u8], client: bool) -> bool {
        let side = if client { Side::Client } else { Side::Server };
        match SessionKeys::derive(token, &[0; 32], &[0; 32], &[0; 32], side) {
            Some(keys) if !token.is_empty() => {
                self.start_sealing(&keys);
                true
            }
            _ => false,
        }
    }

    /// Whether frames on this connection are sealed.
    pub fn security(&self) -> LinkSecurity {
        if self.seal.is_some() {
            LinkSecurity::Sealed
        } else {
            LinkSecurity::Plaintext
        }
    }

    /// The transport kind underneath ("tcp").
    pub fn transport_kind(&self) -> &'static str {
        self.transport.kind()
    }

    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    pub fn set_limits(&mut self, limits: FrameLimits) {
        self.limits = limits;
    }

    /// Bounds how long a send may wait for a peer that is not reading.
    pub fn set_write_timeout(&mut self, timeout: Duration) -> Result<(), NetError> {
        let t = if timeout.is_zero() {
            Duration::from_millis(1)
        } else {
            timeout
        };
        self.write_timeout = t;
        self.transport
            .set_write_timeout(t)
            .map_err(|e| self.setup_error(e))
    }

    /// Tells the peer nothing more will be sent (it reads end-of-stream
    /// after whatever is in flight, frames on an emulated link included),
    /// without discarding what it sent us.
    pub fn close_write(&mut self) -> Result<(), NetError> {
        if self.write_broken.is_none() && self.seal.is_some() {
            self.send_close()?;
        }
        let started = std::time::Instant::now();
        let result = self.transport.shutdown_write();
        self.write_broken = Some("this side closed its sending half".to_string());
        result.map_err(|fail| self.send_error(fail, "the end of the stream", 0, started))
    }

    /// Sends from now on go through an emulated link (`None`: straight to
    /// the transport). Frames already on the previous emulated link are
    /// delivered first, so switching never reorders them.
    pub fn emulate(&mut self, profile: Option<&LinkProfile>) -> Result<(), NetError> {
        let started = std::time::Instant::now();
        match self.transport.set_profile(profile, &self.peer) {
            Ok(()) => Ok(()),
            Err(SwitchFail::Drain(fail)) => {
                let what = "the frames queued on the emulated link";
                let err = self.send_error(fail, what, 0, started);
                Err(self.break_write(err))
            }
            Err(SwitchFail::Start(e)) => Err(self.setup_error(e)),
        }
    }

    /// A handle that cuts this connection from another thread, with a
    /// reason: whatever this side is blocked on, or does next, fails with
    /// [`NetError::Cut`] giving that reason.
    pub fn cutter(&self) -> Result<LinkCutter, NetError> {
        let cut = self.transport.cutter().map_err(|e| self.setup_error(e))?;
        Ok(LinkCutter::new(cut, self.cut.clone()))
    }

    /// The error for a failure after the connection was cut, if it was.
    fn cut_error(&self) -> Option<NetError> {
        self.cut.get().map(|reason| NetError::Cut {
            peer: self.peer.clone(),
            reason: reason.clone(),
        })
    }

    /// The link profile this side's sends are emulating, if any.
    pub fn emulation(&self) -> Option<&LinkProfile> {
        self.transport.profile()
    }

    // ---- error helpers ----

    fn io_error(&self, op: &'static str, source: io::Error) -> NetError {
        NetError::Io {
            peer: self.peer.clone(),
            op,
            source,
        }
    }

    fn setup_error(&self, e: SetupError) -> NetError {
        self.io_error(e.op, e.source)
    }

    fn encode_error(&self, what: &'static str, problem: impl std::fmt::Display) -> NetError {
        NetError::Encode {
            peer: self.peer.clone(),
            what,
            problem: problem.to_string(),
        }
    }

    fn break_read(&mut self, err: NetError) -> NetError {
        self.read_broken = Some(err.to_string());
        err
    }

    fn break_write(&mut self, err: NetError) -> NetError {
        self.write_broken = Some(err.to_string());
        err
    }

    fn check_readable(&self) -> Result<(), NetError> {
        match &self.read_broken {
            Some(reason) => Err(NetError::Broken {
                peer: self.peer.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn check_writable(&self) -> Result<(), NetError> {
        match &self.write_broken {
            Some(reason) => Err(NetError::Broken {
                peer: self.peer.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Connection {
    /// Says goodbye on a sealed link with a close frame, unless this side
    /// can no longer send (closed, broken or cut). Bounded: a peer that
    /// stopped reading gets no more than [`CLOSE_FRAME_TIMEOUT`].
    fn drop(&mut self) {
        if self.seal.is_none() || self.write_broken.is_some() || self.cut.get().is_some() {
            return;
        }
        if self
            .transport
            .set_write_timeout(CLOSE_FRAME_TIMEOUT)
            .is_ok()
        {
            let _ = self.send_close();
        }
    }
}
