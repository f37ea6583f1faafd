//! A framed connection to one named peer over a blocking `TcpStream`.
//!
//! Receives take a deadline for the whole frame: before every read the
//! socket's read timeout is set to the time left, so a peer that dribbles
//! bytes (slowloris) cannot stretch a receive past its deadline. Headers are
//! read through a small reusable buffer; payloads go straight from the socket
//! into the caller's buffer, so the tensor hot path
//! ([`Connection::recv_tensor_into`], [`Connection::send_tensor`]) neither
//! allocates nor copies the data more than once.
//!
//! After an error that leaves the byte stream out of step (a bad frame, a
//! timeout in the middle of a payload, a partial write), that direction of
//! the connection refuses further use with [`NetError::Broken`] instead of
//! misreading what follows. A timeout while waiting for the next frame's
//! header is harmless: the bytes so far stay buffered and the caller may
//! wait again.
//!
//! [`Connection::emulate`] routes this side's sends through an emulated
//! link (latency, jitter, bandwidth; see [`super::link`]); receives are the
//! same either way.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{FrameError, NetError};
use super::frame::{
    checked_len, parse_header, tensor_layout, FrameHeader, FrameKind, FrameLimits, TensorHeader,
    HEADER_LEN, PROTOCOL_VERSION,
};
use super::link::{LinkProfile, ShapeFail, Shaper};
use super::Frame;

/// Size of the header read buffer; reads ask for this much so that small
/// frames sent back to back arrive in one system call.
const READ_CHUNK: usize = 64 * 1024;
/// Sends have no deadline argument; this bounds a peer that stops reading.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest peer name kept, since a client chooses its own.
const MAX_NAME: usize = 64;
/// How much of an unexpected control message an error quotes.
const SNIPPET: usize = 160;

/// The span of one receive (or of a whole handshake).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    start: Instant,
    end: Instant,
}

impl Deadline {
    pub(crate) fn after(budget: Duration) -> Self {
        let start = Instant::now();
        // An absurd budget (Duration::MAX) means "a very long time", not a panic.
        let end = start
            .checked_add(budget)
            .or_else(|| start.checked_add(Duration::from_secs(100 * 365 * 86_400)))
            .unwrap_or(start);
        Deadline { start, end }
    }

    fn remaining(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Why one bounded read did not deliver bytes.
enum ReadFail {
    Timeout,
    Closed,
    Io(io::Error),
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

/// One read into `into`, giving up at the deadline.
fn read_before(stream: &mut TcpStream, into: &mut [u8], dl: &Deadline) -> Result<usize, ReadFail> {
    loop {
        let remaining = dl.remaining();
        if remaining.is_zero() {
            return Err(ReadFail::Timeout);
        }
        stream
            .set_read_timeout(Some(remaining))
            .map_err(ReadFail::Io)?;
        match stream.read(into) {
            Ok(0) => return Err(ReadFail::Closed),
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) if is_disconnect(&e) => return Err(ReadFail::Closed),
            Err(e) => return Err(ReadFail::Io(e)),
        }
    }
}

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

fn snippet(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(SNIPPET)]);
    let ellipsis = if payload.len() > SNIPPET { "..." } else { "" };
    format!("{text}{ellipsis}")
}

/// Which payload a read is for, formatted only if an error needs it (the
/// tensor path must not allocate a description per receive).
#[derive(Clone, Copy)]
enum Payload {
    Control,
    TensorData(TensorHeader),
}

impl std::fmt::Display for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::Control => f.write_str("a control message payload"),
            Payload::TensorData(th) => write!(f, "the data of {th}"),
        }
    }
}

/// Makes `out` exactly `n` bytes long without zeroing what it already holds
/// (every byte is about to be overwritten) and without allocating once its
/// capacity has reached `n`.
fn set_len_for_overwrite(out: &mut Vec<u8>, n: usize) {
    if out.len() >= n {
        out.truncate(n);
    } else {
        out.resize(n, 0);
    }
}

/// A framed, deadline-bounded conversation with one peer.
pub struct Connection {
    stream: TcpStream,
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
    /// Present while this side's sends go through an emulated link.
    shaper: Option<Shaper>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("buffered", &(self.rend - self.rstart))
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr`, trying each address it resolves to within
    /// `timeout`. `peer_name` is how errors will name the peer.
    pub fn connect<A>(addr: A, peer_name: &str, timeout: Duration) -> Result<Self, NetError>
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
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => return Self::from_stream(stream, peer_name),
                Err(e) => last = e,
            }
        }
        Err(NetError::Connect {
            peer: described,
            source: last,
        })
    }

    /// Wraps an accepted or connected stream. Turns Nagle off: frames are
    /// written whole, and a decode step waits on every small one.
    pub fn from_stream(stream: TcpStream, peer_name: &str) -> Result<Self, NetError> {
        let addr = stream.peer_addr().ok();
        let mut conn = Connection {
            stream,
            peer: String::new(),
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
            shaper: None,
        };
        conn.set_peer_name(peer_name);
        conn.stream
            .set_nodelay(true)
            .map_err(|source| conn.io_error("set TCP_NODELAY", source))?;
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
        let name = clean_name(name);
        self.peer = match self.addr {
            Some(a) => format!("{name} ({a})"),
            None => name,
        };
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
        self.stream
            .set_write_timeout(Some(t))
            .map_err(|source| self.io_error("set the write timeout", source))
    }

    /// Tells the peer nothing more will be sent (it reads end-of-stream
    /// after whatever is in flight), without discarding what it sent us.
    pub fn close_write(&mut self) -> Result<(), NetError> {
        // Frames still on the emulated link arrive before the end of stream.
        self.emulate(None)?;
        self.write_broken = Some("this side closed its sending half".to_string());
        self.stream
            .shutdown(Shutdown::Write)
            .map_err(|source| self.io_error("shut down sending", source))
    }

    /// Sends from now on go through an emulated link (`None`: straight to
    /// the socket). Frames already on the previous emulated link are
    /// delivered first, so switching never reorders them.
    pub fn emulate(&mut self, profile: Option<&LinkProfile>) -> Result<(), NetError> {
        if let Some(old) = self.shaper.take() {
            old.drain(self.write_timeout)
                .map_err(|fail| {
                    self.shape_error(fail, "deliver frames queued on the emulated link")
                })
                .map_err(|e| self.break_write(e))?;
        }
        if let Some(p) = profile {
            let clone = self
                .stream
                .try_clone()
                .map_err(|source| self.io_error("clone the socket for link emulation", source))?;
            let shaper = Shaper::start(p.clone(), clone, &self.peer)
                .map_err(|source| self.io_error("start the link emulation thread", source))?;
            self.shaper = Some(shaper);
        }
        Ok(())
    }

    /// The link profile this side's sends are emulating, if any.
    pub fn emulation(&self) -> Option<&LinkProfile> {
        self.shaper.as_ref().map(Shaper::profile)
    }

    fn shape_error(&self, fail: ShapeFail, what: &str) -> NetError {
        match fail {
            ShapeFail::Delivery(e) if is_disconnect(&e) => NetError::Closed {
                peer: self.peer.clone(),
                partial: None,
            },
            ShapeFail::Delivery(e)
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                NetError::Timeout {
                    peer: self.peer.clone(),
                    what: format!("it to accept frames from the emulated link ({what}); it is not reading"),
                    after: self.write_timeout,
                }
            }
            ShapeFail::Delivery(source) => self.io_error("send over the emulated link", source),
            ShapeFail::Full { queued } => NetError::Timeout {
                peer: self.peer.clone(),
                what: format!(
                    "room on the emulated link to {what} ({queued} bytes still queued; it is not reading)"
                ),
                after: self.write_timeout,
            },
        }
    }

    // ---- sending ----

    /// Sends one control message as JSON.
    pub fn send_control<T: Serialize>(&mut self, msg: &T) -> Result<(), NetError> {
        self.check_writable()?;
        let mut w = std::mem::take(&mut self.wbuf);
        w.clear();
        w.extend_from_slice(&[0; HEADER_LEN]);
        let result = self.encode_control_into(&mut w, msg).and_then(|()| {
            let total = w.len();
            self.write_parts(&mut [IoSlice::new(&w)], total, "a control message")
        });
        self.wbuf = w;
        result
    }

    fn encode_control_into<T: Serialize>(&self, w: &mut Vec<u8>, msg: &T) -> Result<(), NetError> {
        serde_json::to_writer(&mut *w, msg)
            .map_err(|e| self.encode_error("a control message", e))?;
        let len = checked_len(
            FrameKind::Control,
            (w.len() - HEADER_LEN) as u64,
            &self.limits,
        )
        .map_err(|e| self.encode_error("a control message", e))?;
        w[..HEADER_LEN].copy_from_slice(
            &FrameHeader {
                kind: FrameKind::Control,
                len,
            }
            .encode(),
        );
        Ok(())
    }

    /// Sends one tensor. The headers and `data` go out in one vectored
    /// write where the kernel allows; `data` is never copied.
    pub fn send_tensor(&mut self, header: &TensorHeader, data: &[u8]) -> Result<(), NetError> {
        self.check_writable()?;
        header
            .check_data_len(data.len() as u64)
            .map_err(|e| self.encode_error("a tensor", e))?;
        let payload = header.encoded_len() as u64 + data.len() as u64;
        let len = checked_len(FrameKind::Tensor, payload, &self.limits)
            .map_err(|e| self.encode_error("a tensor", e))?;
        let mut w = std::mem::take(&mut self.wbuf);
        w.clear();
        w.extend_from_slice(
            &FrameHeader {
                kind: FrameKind::Tensor,
                len,
            }
            .encode(),
        );
        header.encode(&mut w);
        let total = w.len() + data.len();
        let result = self.write_parts(
            &mut [IoSlice::new(&w), IoSlice::new(data)],
            total,
            "a tensor",
        );
        self.wbuf = w;
        result
    }

    /// Sends an already-built frame (tests, tools; not the hot path).
    pub fn send_frame(&mut self, frame: &Frame) -> Result<(), NetError> {
        match frame {
            Frame::Tensor { header, data } => self.send_tensor(header, data),
            Frame::Control(payload) => {
                self.check_writable()?;
                let len = checked_len(FrameKind::Control, payload.len() as u64, &self.limits)
                    .map_err(|e| self.encode_error("a control message", e))?;
                let head = FrameHeader {
                    kind: FrameKind::Control,
                    len,
                }
                .encode();
                let total = head.len() + payload.len();
                self.write_parts(
                    &mut [IoSlice::new(&head), IoSlice::new(payload)],
                    total,
                    "a control message",
                )
            }
        }
    }

    fn write_parts(
        &mut self,
        mut parts: &mut [IoSlice<'_>],
        total: usize,
        what: &'static str,
    ) -> Result<(), NetError> {
        if let Some(shaper) = self.shaper.as_mut() {
            return match shaper.send(parts, total, self.write_timeout) {
                Ok(()) => Ok(()),
                Err(fail) => {
                    let err = self.shape_error(fail, &format!("send {what}"));
                    Err(self.break_write(err))
                }
            };
        }
        let start = Instant::now();
        let mut sent = 0usize;
        while sent < total {
            match self.stream.write_vectored(parts) {
                Ok(0) => {
                    return Err(self.break_write(NetError::Closed {
                        peer: self.peer.clone(),
                        partial: None,
                    }))
                }
                Ok(n) => {
                    sent += n;
                    IoSlice::advance_slices(&mut parts, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    let err = NetError::Timeout {
                        peer: self.peer.clone(),
                        what: format!(
                            "it to accept {what} ({sent} of {total} bytes sent; it is not reading)"
                        ),
                        after: start.elapsed(),
                    };
                    return Err(self.break_write(err));
                }
                Err(e) if is_disconnect(&e) => {
                    let err = NetError::Closed {
                        peer: self.peer.clone(),
                        partial: None,
                    };
                    return Err(self.break_write(err));
                }
                Err(source) => {
                    let err = self.io_error("send", source);
                    return Err(self.break_write(err));
                }
            }
        }
        Ok(())
    }

    // ---- receiving ----

    /// Receives the next frame, whatever its kind, within `deadline`.
    pub fn recv_frame(&mut self, deadline: Duration) -> Result<Frame, NetError> {
        self.recv_frame_by(&Deadline::after(deadline))
    }

    pub(crate) fn recv_frame_by(&mut self, dl: &Deadline) -> Result<Frame, NetError> {
        self.check_readable()?;
        let header = self.recv_header(dl, "a frame")?;
        match header.kind {
            FrameKind::Control => {
                let mut payload = vec![0; header.len as usize];
                self.read_payload(&mut payload, dl, Payload::Control)?;
                Ok(Frame::Control(payload))
            }
            FrameKind::Tensor => {
                let (th, data_len) = self.recv_tensor_header(header.len, dl)?;
                let mut data = vec![0; data_len];
                self.read_payload(&mut data, dl, Payload::TensorData(th))?;
                Ok(Frame::Tensor { header: th, data })
            }
        }
    }

    /// Receives one control message and decodes it as `T`.
    pub fn recv_control<T: DeserializeOwned>(&mut self, deadline: Duration) -> Result<T, NetError> {
        self.recv_control_by(&Deadline::after(deadline))
    }

    pub(crate) fn recv_control_by<T: DeserializeOwned>(
        &mut self,
        dl: &Deadline,
    ) -> Result<T, NetError> {
        self.check_readable()?;
        let header = self.recv_header(dl, "a control message")?;
        if header.kind == FrameKind::Tensor {
            let got = match tensor_layout(self.buffered(), header.len) {
                Ok(Some((th, _))) => format!("a tensor frame, {th}"),
                _ => format!("a tensor frame of {} bytes", header.len),
            };
            // Its payload is left unread, so the stream is out of step.
            let err = NetError::UnexpectedFrame {
                peer: self.peer.clone(),
                expected: "a control message".to_string(),
                got,
            };
            return Err(self.break_read(err));
        }
        let mut payload = std::mem::take(&mut self.scratch);
        set_len_for_overwrite(&mut payload, header.len as usize);
        let read = self.read_payload(&mut payload, dl, Payload::Control);
        let decoded = read.and_then(|()| {
            serde_json::from_slice(&payload).map_err(|source| NetError::BadMessage {
                peer: self.peer.clone(),
                what: std::any::type_name::<T>(),
                source,
            })
        });
        self.scratch = payload;
        decoded
    }

    /// Receives one tensor into `out`, reusing its allocation: once `out`
    /// has held a tensor this large, receiving another allocates nothing.
    /// On error `out`'s contents are unspecified. A control message where a
    /// tensor was expected is an error quoting it (the connection stays
    /// usable, since that frame was read whole).
    pub fn recv_tensor_into(
        &mut self,
        deadline: Duration,
        out: &mut Vec<u8>,
    ) -> Result<TensorHeader, NetError> {
        self.recv_tensor_into_by(&Deadline::after(deadline), out)
    }

    pub(crate) fn recv_tensor_into_by(
        &mut self,
        dl: &Deadline,
        out: &mut Vec<u8>,
    ) -> Result<TensorHeader, NetError> {
        self.check_readable()?;
        let header = self.recv_header(dl, "a tensor")?;
        if header.kind == FrameKind::Control {
            let mut payload = std::mem::take(&mut self.scratch);
            set_len_for_overwrite(&mut payload, header.len as usize);
            let read = self.read_payload(&mut payload, dl, Payload::Control);
            let quoted = snippet(&payload);
            self.scratch = payload;
            read?;
            return Err(NetError::UnexpectedFrame {
                peer: self.peer.clone(),
                expected: "a tensor".to_string(),
                got: format!("a control message: {quoted}"),
            });
        }
        let (th, data_len) = self.recv_tensor_header(header.len, dl)?;
        set_len_for_overwrite(out, data_len);
        self.read_payload(out, dl, Payload::TensorData(th))?;
        Ok(th)
    }

    // ---- receive internals ----

    fn buffered(&self) -> &[u8] {
        &self.rbuf[self.rstart..self.rend]
    }

    fn consume(&mut self, n: usize) {
        self.rstart += n;
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
    }

    /// One more read into the header buffer.
    fn fill_more(&mut self, dl: &Deadline) -> Result<(), ReadFail> {
        if self.rend == self.rbuf.len() {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        let n = read_before(&mut self.stream, &mut self.rbuf[self.rend..], dl)?;
        self.rend += n;
        Ok(())
    }

    /// Waits for the next frame header and consumes it. A timeout here
    /// leaves the connection usable.
    fn recv_header(&mut self, dl: &Deadline, expecting: &str) -> Result<FrameHeader, NetError> {
        loop {
            match parse_header(self.buffered(), &self.limits) {
                Ok(Some(h)) => {
                    self.consume(HEADER_LEN);
                    return Ok(h);
                }
                Ok(None) => {}
                Err(e) => {
                    let err = self.frame_error(e);
                    return Err(self.break_read(err));
                }
            }
            if let Err(fail) = self.fill_more(dl) {
                let have = self.buffered().len();
                let what = if have == 0 {
                    expecting.to_string()
                } else {
                    format!("{expecting} ({have} of {HEADER_LEN} header bytes received)")
                };
                let partial = (have > 0).then_some((have as u64, HEADER_LEN as u64));
                return Err(self.read_failure(fail, dl, what, partial, false));
            }
        }
    }

    /// Reads and consumes a tensor payload's header; returns it and the
    /// number of data bytes that follow.
    fn recv_tensor_header(
        &mut self,
        len: u32,
        dl: &Deadline,
    ) -> Result<(TensorHeader, usize), NetError> {
        loop {
            match tensor_layout(self.buffered(), len) {
                Ok(Some((th, th_len))) => {
                    self.consume(th_len);
                    return Ok((th, len as usize - th_len));
                }
                Ok(None) => {}
                Err(e) => {
                    let err = self.frame_error(e);
                    return Err(self.break_read(err));
                }
            }
            if let Err(fail) = self.fill_more(dl) {
                let have = self.buffered().len().min(len as usize);
                let total = (HEADER_LEN + len as usize) as u64;
                let what = "the header of a tensor".to_string();
                let partial = Some(((HEADER_LEN + have) as u64, total));
                return Err(self.read_failure(fail, dl, what, partial, true));
            }
        }
    }

    /// Fills `dst` with the next `dst.len()` payload bytes: first whatever
    /// is buffered, then straight from the socket.
    fn read_payload(
        &mut self,
        dst: &mut [u8],
        dl: &Deadline,
        what: Payload,
    ) -> Result<(), NetError> {
        let take = dst.len().min(self.buffered().len());
        dst[..take].copy_from_slice(&self.rbuf[self.rstart..self.rstart + take]);
        self.consume(take);
        let mut filled = take;
        while filled < dst.len() {
            match read_before(&mut self.stream, &mut dst[filled..], dl) {
                Ok(n) => filled += n,
                Err(fail) => {
                    let total = dst.len();
                    let what = format!("{what} ({filled} of {total} bytes received)");
                    let partial = Some((filled as u64, total as u64));
                    return Err(self.read_failure(fail, dl, what, partial, true));
                }
            }
        }
        Ok(())
    }

    /// Turns a failed read into an error naming the peer; marks the read
    /// side broken unless this was a timeout between frames.
    fn read_failure(
        &mut self,
        fail: ReadFail,
        dl: &Deadline,
        what: String,
        partial: Option<(u64, u64)>,
        mid_frame: bool,
    ) -> NetError {
        let peer = self.peer.clone();
        match fail {
            ReadFail::Timeout => {
                let err = NetError::Timeout {
                    peer,
                    what,
                    after: dl.elapsed(),
                };
                if mid_frame {
                    self.break_read(err)
                } else {
                    err
                }
            }
            ReadFail::Closed => self.break_read(NetError::Closed { peer, partial }),
            ReadFail::Io(source) => {
                let err = self.io_error("receive", source);
                self.break_read(err)
            }
        }
    }

    fn frame_error(&self, e: FrameError) -> NetError {
        match e {
            FrameError::UnsupportedVersion { found, .. } => NetError::VersionMismatch {
                peer: self.peer.clone(),
                ours: PROTOCOL_VERSION,
                theirs: found,
            },
            source => NetError::Frame {
                peer: self.peer.clone(),
                source,
            },
        }
    }

    // ---- error helpers ----

    fn io_error(&self, op: &'static str, source: io::Error) -> NetError {
        NetError::Io {
            peer: self.peer.clone(),
            op,
            source,
        }
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
