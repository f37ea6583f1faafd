//! Receiving: frame headers through the connection's read buffer, payloads
//! straight from the transport into the caller's buffer, everything within
//! one deadline.

use serde::de::DeserializeOwned;
use std::time::Duration;

use super::Connection;
use crate::net::deadline::Deadline;
use crate::net::error::{FrameError, NetError};
use crate::net::frame::{
    parse_header, tensor_layout, FrameHeader, FrameKind, TensorHeader, HEADER_LEN, PROTOCOL_VERSION,
};
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

impl Connection {
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

    // ---- internals ----

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
    /// is buffered, then straight from the transport. Frame encryption,
    /// when it comes, opens the payload here, in place.
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
            RecvFail::Closed => self.break_read(NetError::Closed { peer, partial }),
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
