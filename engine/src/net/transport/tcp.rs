//! [`Transport`] over a blocking `TcpStream`: the transport every
//! connection uses today.
//!
//! Receives keep the socket's read timeout no longer than the time left,
//! so the deadline covers a whole frame however the peer paces its bytes.
//! Sends rely on the socket's write timeout.

use std::io::{self, IoSlice, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{
    is_disconnect, is_timeout, write_frame_to, Cut, Dialer, FrameSink, Listener, RecvFail,
    SendFail, SetupError, Transport,
};

/// TCP options applied to every stream a connection uses.
#[derive(Debug, Clone, Copy)]
pub struct TcpConfig {
    /// `TCP_NODELAY`: frames are written whole, and a decode step waits on
    /// every small one, so Nagle's delay only costs.
    pub nodelay: bool,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig { nodelay: true }
    }
}

/// One TCP stream to one peer.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
    peer: Option<SocketAddr>,
    /// The read timeout last set on the socket (`None`: not set by us).
    read_timeout: Option<Duration>,
}

impl TcpTransport {
    /// Wraps a connected or accepted stream, applying `config`.
    pub fn new(stream: TcpStream, config: TcpConfig) -> Result<Self, SetupError> {
        stream
            .set_nodelay(config.nodelay)
            .map_err(|e| SetupError::new("set TCP_NODELAY", e))?;
        let peer = stream.peer_addr().ok();
        Ok(TcpTransport {
            stream,
            peer,
            read_timeout: None,
        })
    }
}

/// Whether the read timeout already on the socket serves a read with
/// `remaining` left: no longer than that (the read must not outlast the
/// deadline) and at least half of it (so a long wait wakes a bounded number
/// of times, each wake looping back here). Setting it is a system call, and
/// a decode step reads a few frames per all-reduce, each with a fresh
/// deadline of about the same length: the timeout set for the first
/// serves them all.
fn read_timeout_fits(set: Option<Duration>, remaining: Duration) -> bool {
    set.is_some_and(|t| t <= remaining && t >= remaining / 2)
}

impl FrameSink for TcpTransport {
    fn write_frame(&mut self, parts: &mut [IoSlice<'_>]) -> Result<(), SendFail> {
        write_frame_to(&mut self.stream, parts)
    }
}

impl Transport for TcpTransport {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    fn read_before(&mut self, into: &mut [u8], deadline: Instant) -> Result<usize, RecvFail> {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(RecvFail::Timeout);
            }
            if !read_timeout_fits(self.read_timeout, remaining) {
                self.stream
                    .set_read_timeout(Some(remaining))
                    .map_err(RecvFail::Io)?;
                self.read_timeout = Some(remaining);
            }
            match self.stream.read(into) {
                Ok(0) => return Err(RecvFail::Closed),
                Ok(n) => return Ok(n),
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_disconnect(&e) => return Err(RecvFail::Closed),
                Err(e) => return Err(RecvFail::Io(e)),
            }
        }
    }

    fn set_write_timeout(&mut self, timeout: Duration) -> Result<(), SetupError> {
        self.stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| SetupError::new("set the write timeout", e))
    }

    fn shutdown_write(&mut self) -> Result<(), SendFail> {
        self.stream
            .shutdown(Shutdown::Write)
            .map_err(|source| SendFail::Io {
                op: "shut down sending",
                source,
            })
    }

    fn sender(&self) -> Result<Box<dyn FrameSink>, SetupError> {
        // A clone shares the socket and its write timeout.
        let clone = self
            .stream
            .try_clone()
            .map_err(|e| SetupError::new("clone the socket", e))?;
        Ok(Box::new(TcpSender(clone)))
    }

    fn cutter(&self) -> Result<Box<dyn Cut>, SetupError> {
        let clone = self
            .stream
            .try_clone()
            .map_err(|e| SetupError::new("clone the socket", e))?;
        Ok(Box::new(TcpCut(clone)))
    }
}

/// A handle on a [`TcpTransport`]'s socket that shuts it down: a thread
/// blocked reading it wakes at once with end-of-stream.
struct TcpCut(TcpStream);

impl Cut for TcpCut {
    fn cut(&self) {
        // Already shut down or closed: nothing more to do.
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// A second handle on a [`TcpTransport`]'s socket, for sending only.
struct TcpSender(TcpStream);

impl FrameSink for TcpSender {
    fn write_frame(&mut self, parts: &mut [IoSlice<'_>]) -> Result<(), SendFail> {
        write_frame_to(&mut self.0, parts)
    }
}

/// Opens TCP transports.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer {
    pub config: TcpConfig,
}

impl Dialer for TcpDialer {
    fn dial(&self, addr: SocketAddr, timeout: Duration) -> io::Result<Box<dyn Transport>> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        let transport = TcpTransport::new(stream, self.config).map_err(|e| e.source)?;
        Ok(Box::new(transport))
    }
}

/// Accepts TCP transports on a bound socket.
#[derive(Debug)]
pub struct TcpTransportListener {
    listener: TcpListener,
    config: TcpConfig,
}

impl TcpTransportListener {
    pub fn bind(addr: impl ToSocketAddrs, config: TcpConfig) -> Result<Self, SetupError> {
        let listener = TcpListener::bind(addr).map_err(|e| SetupError::new("bind", e))?;
        Ok(TcpTransportListener { listener, config })
    }
}

impl Listener for TcpTransportListener {
    fn accept(&self) -> Result<Box<dyn Transport>, SetupError> {
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| SetupError::new("accept", e))?;
        Ok(Box::new(TcpTransport::new(stream, self.config)?))
    }

    fn local_addr(&self) -> Result<SocketAddr, SetupError> {
        self.listener
            .local_addr()
            .map_err(|e| SetupError::new("read the listening address", e))
    }
}

#[cfg(test)]
mod tests {
    use super::read_timeout_fits;
    use std::time::Duration;

    #[test]
    fn a_set_read_timeout_is_kept_only_while_it_fits_the_time_left() {
        let s = Duration::from_secs;
        assert!(!read_timeout_fits(None, s(60)), "never set");
        assert!(read_timeout_fits(Some(s(60)), s(60)));
        assert!(
            read_timeout_fits(Some(s(59)), s(60)),
            "a step's next deadline"
        );
        assert!(read_timeout_fits(Some(s(30)), s(60)));
        assert!(!read_timeout_fits(Some(s(29)), s(60)), "too many wakes");
        assert!(
            !read_timeout_fits(Some(s(61)), s(60)),
            "would outlast the deadline"
        );
    }
}
