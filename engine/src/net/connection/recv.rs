//! Receiving: frame headers through the connection's read buffer, payloads
//! straight from the transport into the caller's buffer, everything within
//! one deadline. On a sealed link each payload is opened in place once its
//! tag is in (see [`crate::net::seal`]); a sealed stream that ends without
//! its close frame is [`NetError::Closed`] with `cut_short` set.

use serde::de::DeserializeOwned;
use std::time::Duration;

use super::Connection;
use crate::net::deadline::Deadline;
use crate::net::error::{FrameError, NetError};
use crate::net::frame::{
    parse_header, tensor_layout, tensor_layout_of, FrameHeader, FrameKind, TensorHeader,
    HEADER_LEN, PROTOCOL_VERSION, TAG_LEN,
};
use crate::net::seal::{segment_range, segments, Unopened, SEGMENT};
use crate::net::transport::{RecvFail, ShortRead, Transport};
use crate::net::Frame;

/// How much of an unexpected control message an error quotes.
const SNIPPET: usize = 160;

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
    TensorTag(TensorHeader),
    Close,
}

impl std::fmt::Display for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::Control => f.write_str("a control message payload"),
            Payload::TensorData(th) => write!(f, "the data of {th}"),
            Payload::TensorTag(th) => write!(f, "the tag of {th}"),
            Payload::Close => f.write_str("the close frame's tag"),
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

impl Connection {
    /// Receives the next frame, whatever its kind, within `deadline`.
    pub fn recv_frame(&mut self, deadline: Duration) -> Result<Frame, NetError> {
        self.recv_frame_by(&Deadline::after(deadline))
    }

    pub(crate) fn recv_frame_by(&mut self, dl: &Deadline) -> Result<Frame, NetError> {
        self.check_readable()?;
        let header = self.recv_header(dl, "a frame")?;
        match header.kind {
            FrameKind::Tensor => {
                let mut data = Vec::new();
                let th = self.recv_tensor_body(header, dl, &mut data)?;
                Ok(Frame::Tensor { header: th, data })
            }
            // recv_header turns a close frame into an error.
            FrameKind::Control | FrameKind::Close => {
                let mut payload = Vec::new();
                self.read_control_into(header, dl, &mut payload)?;
                Ok(Frame::Control(payload))
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
        let read = self.read_control_into(header, dl, &mut payload);
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
        if header.kind != FrameKind::Tensor {
            let mut payload = std::mem::take(&mut self.scratch);
            let read = self.read_control_into(header, dl, &mut payload);
            let quoted = snippet(&payload);
            self.scratch = payload;
            read?;
            return Err(NetError::UnexpectedFrame {
                peer: self.peer.clone(),
                expected: "a tensor".to_string(),
                got: format!("a control message: {quoted}"),
            });
        }
        self.recv_tensor_body(header, dl, out)
    }

    // ---- internals ----

    /// Reads a control payload into `payload` (exactly its bytes, opened on
    /// a sealed link).
    fn read_control_into(
        &mut self,
        header: FrameHeader,
        dl: &Deadline,
        payload: &mut Vec<u8>,
    ) -> Result<(), NetError> {
        let plain = self.plain_len(&header)?;
        set_len_for_overwrite(payload, header.len as usize);
        self.read_payload(payload, dl, Payload::Control)?;
        if self.seal.is_some() {
            // Segments and their tags lie interleaved: open each, closing
            // up the gaps the tags leave.
            for i in 0..segments(plain) {
                let r = segment_range(plain, i);
                let from = i * (SEGMENT + TAG_LEN);
                let mut tag = [0u8; TAG_LEN];
                tag.copy_from_slice(&payload[from + r.len()..from + r.len() + TAG_LEN]);
                payload.copy_within(from..from + r.len(), r.start);
                self.open(&header, None, &mut payload[r], &tag)?;
            }
            payload.truncate(plain);
        }
        Ok(())
    }

    /// The rest of a tensor frame whose header was read: its tensor header,
    /// its data into `out` (and, sealed, its tag, then opened in place).
    fn recv_tensor_body(
        &mut self,
        header: FrameHeader,
        dl: &Deadline,
        out: &mut Vec<u8>,
    ) -> Result<TensorHeader, NetError> {
        let (th, data_len) = self.recv_tensor_header(header.len, header.sealed, dl)?;
        set_len_for_overwrite(out, data_len);
        if !header.sealed {
            self.read_payload(out, dl, Payload::TensorData(th))?;
            return Ok(th);
        }
        // Each segment straight into its place in `out`, opened there.
        for i in 0..segments(data_len) {
            let r = segment_range(data_len, i);
            self.read_payload(&mut out[r.clone()], dl, Payload::TensorData(th))?;
            let mut tag = [0u8; TAG_LEN];
            self.read_payload(&mut tag, dl, Payload::TensorTag(th))?;
            self.open(&header, Some(&th), &mut out[r], &tag)?;
        }
        Ok(th)
    }

    /// Payload bytes once opened; a sealed length no run of segments
    /// gives leaves the stream out of step.
    fn plain_len(&mut self, header: &FrameHeader) -> Result<usize, NetError> {
        match header.plain_len() {
            Ok(n) => Ok(n),
            Err(e) => {
                let err = self.frame_error(e);
                Err(self.break_read(err))
            }
        }
    }

    /// Opens a sealed payload in place: the frame header (and a tensor's
    /// header) as associated data, `tag` from the wire. A failure closes
    /// the reading side for good.
    fn open(
        &mut self,
        header: &FrameHeader,
        tensor: Option<&TensorHeader>,
        body: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), NetError> {
        let Some(seal) = self.seal.as_mut() else {
            return Ok(());
        };
        self.aad.clear();
        self.aad.extend_from_slice(&header.encode());
        if let Some(th) = tensor {
            th.encode(&mut self.aad);
        }
        match seal.open(&self.aad, body, tag) {
            Ok(()) => Ok(()),
            Err(Unopened { segment }) => {
                let err = NetError::Unauthentic {
                    peer: self.peer.clone(),
                    segment,
                };
                Err(self.break_read(err))
            }
        }
    }

    /// The peer's close frame, whose header was just read: checks its tag
    /// on a sealed link, and returns the error every later receive gives.
    fn recv_close(&mut self, header: FrameHeader, dl: &Deadline) -> NetError {
        let mut tag = [0u8; TAG_LEN];
        let len = (header.len as usize).min(TAG_LEN);
        if let Err(e) = self.read_payload(&mut tag[..len], dl, Payload::Close) {
            return e;
        }
        if header.sealed {
            if let Err(e) = self.open(&header, None, &mut [], &tag) {
                return e;
            }
        }
        self.break_read(NetError::Closed {
            peer: self.peer.clone(),
            partial: None,
            cut_short: false,
        })
    }

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
    fn fill_more(&mut self, dl: &Deadline) -> Result<(), RecvFail> {
        if self.rend == self.rbuf.len() {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        let n = self
            .transport
            .read_before(&mut self.rbuf[self.rend..], dl.end())?;
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
                    if h.sealed != self.seal.is_some() {
                        let err = self.frame_error(FrameError::SealMismatch { sealed: h.sealed });
                        return Err(self.break_read(err));
                    }
                    if h.kind == FrameKind::Close {
                        return Err(self.recv_close(h, dl));
                    }
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
    /// number of data bytes it describes (once opened, when `sealed`).
    fn recv_tensor_header(
        &mut self,
        len: u32,
        sealed: bool,
        dl: &Deadline,
    ) -> Result<(TensorHeader, usize), NetError> {
        loop {
            match tensor_layout_of(self.buffered(), len, sealed) {
                Ok(Some((th, th_len, data_len))) => {
                    self.consume(th_len);
                    return Ok((th, data_len));
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
    /// is buffered, then straight from the transport.
    fn read_payload(
        &mut self,
        dst: &mut [u8],
        dl: &Deadline,
        what: Payload,
    ) -> Result<(), NetError> {
        let take = dst.len().min(self.buffered().len());
        dst[..take].copy_from_slice(&self.rbuf[self.rstart..self.rstart + take]);
        self.consume(take);
        if take == dst.len() {
            return Ok(());
        }
        match self.transport.read_exact_before(&mut dst[take..], dl.end()) {
            Ok(()) => Ok(()),
            Err(ShortRead { got, fail }) => {
                let (filled, total) = (take + got, dst.len());
                let what = format!("{what} ({filled} of {total} bytes received)");
                let partial = Some((filled as u64, total as u64));
                Err(self.read_failure(fail, dl, what, partial, true))
            }
        }
    }

    /// Turns a failed read into an error naming the peer; marks the read
    /// side broken unless this was a timeout between frames.
    fn read_failure(
        &mut self,
        fail: RecvFail,
        dl: &Deadline,
        what: String,
        partial: Option<(u64, u64)>,
        mid_frame: bool,
    ) -> NetError {
        if let Some(err) = self.cut_error() {
            return self.break_read(err);
        }
        let peer = self.peer.clone();
        match fail {
            RecvFail::Timeout => {
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
            RecvFail::Closed => {
                let cut_short = self.seal.is_some();
                self.break_read(NetError::Closed {
                    peer,
                    partial,
                    cut_short,
                })
            }
            RecvFail::Io(source) => {
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
}
