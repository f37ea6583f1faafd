//! Sending: each frame goes to the transport as one list of slices (frame
//! header, tensor header, data), so a plaintext tensor's data is never
//! copied. On a sealed link the body goes out a segment at a time, each
//! copied into a small buffer, encrypted there and followed by its tag
//! (see [`crate::net::seal`]): the next is sealed while the last is sent.

use std::io::IoSlice;
use std::time::Instant;

use serde::Serialize;

use super::Connection;
use crate::net::error::NetError;
use crate::net::frame::{checked_len, FrameHeader, FrameKind, TensorHeader, HEADER_LEN};
use crate::net::seal::{sealed_len, segment_range, segments};
use crate::net::transport::{FrameSink, SendFail};
use crate::net::Frame;

impl Connection {
    /// Sends one control message as JSON.
    pub fn send_control<T: Serialize>(&mut self, msg: &T) -> Result<(), NetError> {
        self.check_writable()?;
        let mut w = std::mem::take(&mut self.wbuf);
        w.clear();
        w.extend_from_slice(&[0; HEADER_LEN]);
        let result = match serde_json::to_writer(&mut w, msg) {
            Ok(()) => {
                let (head, body) = w.split_at_mut(HEADER_LEN);
                self.send_parts(head, body, FrameKind::Control)
            }
            Err(e) => Err(self.encode_error("a control message", e)),
        };
        self.wbuf = w;
        result
    }

    /// Sends one tensor. The headers and `data` go out in one vectored
    /// write where the transport allows; plaintext, `data` is never
    /// copied, sealed it is encrypted a segment at a time.
    pub fn send_tensor(&mut self, header: &TensorHeader, data: &[u8]) -> Result<(), NetError> {
        self.check_writable()?;
        header
            .check_data_len(data.len() as u64)
            .map_err(|e| self.encode_error("a tensor", e))?;
        let mut w = std::mem::take(&mut self.wbuf);
        w.clear();
        w.extend_from_slice(&[0; HEADER_LEN]);
        header.encode(&mut w);
        let result = self.send_parts(&mut w, data, FrameKind::Tensor);
        self.wbuf = w;
        result
    }

    /// Sends an already-built frame (tests, tools; not the hot path).
    pub fn send_frame(&mut self, frame: &Frame) -> Result<(), NetError> {
        match frame {
            Frame::Tensor { header, data } => self.send_tensor(header, data),
            Frame::Control(payload) => {
                self.check_writable()?;
                let mut head = [0; HEADER_LEN];
                self.send_parts(&mut head, payload, FrameKind::Control)
            }
            Frame::Close => self.send_close(),
        }
    }

    /// Sends the close frame: the peer can tell this end meant to stop from
    /// a connection cut short. Nothing may be sent after it.
    pub(super) fn send_close(&mut self) -> Result<(), NetError> {
        self.check_writable()?;
        let mut head = [0; HEADER_LEN];
        self.send_parts(&mut head, &[], FrameKind::Close)?;
        self.write_broken = Some("this side sent its close frame".to_string());
        Ok(())
    }

    /// Sends one frame: `head` is room for the frame header followed by
    /// the part of the payload that travels readable (a tensor's header),
    /// `body` the rest. Fills in the header; on a sealed link the body goes
    /// out in sealed segments, `head` as their associated data.
    fn send_parts(
        &mut self,
        head: &mut [u8],
        body: &[u8],
        kind: FrameKind,
    ) -> Result<(), NetError> {
        let what = match kind {
            FrameKind::Control => "a control message",
            FrameKind::Tensor => "a tensor",
            FrameKind::Close => "the close frame",
        };
        let sealed = self.seal.is_some();
        let body_wire = if sealed {
            sealed_len(body.len())
        } else {
            body.len()
        };
        let payload = (head.len() - HEADER_LEN + body_wire) as u64;
        let len =
            checked_len(kind, payload, &self.limits).map_err(|e| self.encode_error(what, e))?;
        head[..HEADER_LEN].copy_from_slice(&FrameHeader { kind, len, sealed }.encode());
        let total = HEADER_LEN + len as usize;
        if !sealed {
            return self.write_parts(&mut [IoSlice::new(head), IoSlice::new(body)], total, what);
        }
        let mut segment = std::mem::take(&mut self.sbuf);
        let mut result = Ok(());
        for i in 0..segments(body.len()) {
            segment.clear();
            segment.extend_from_slice(&body[segment_range(body.len(), i)]);
            let tag = match self.seal.as_mut().map(|s| s.seal(head, &mut segment)) {
                Some(Ok(tag)) => tag,
                _ => {
                    let err = self.encode_error(what, "this connection has sealed 2^64 segments");
                    result = Err(self.break_write(err));
                    break;
                }
            };
            segment.extend_from_slice(&tag);
            result = if i == 0 {
                let parts = &mut [IoSlice::new(head), IoSlice::new(&segment)];
                self.write_parts(parts, total, what)
            } else {
                self.write_parts(&mut [IoSlice::new(&segment)], total, what)
            };
            if result.is_err() {
                break;
            }
        }
        self.sbuf = segment;
        result
    }

    /// One whole frame to the transport.
    fn write_parts(
        &mut self,
        parts: &mut [IoSlice<'_>],
        total: usize,
        what: &'static str,
    ) -> Result<(), NetError> {
        let started = Instant::now();
        match self.transport.write_frame(parts) {
            Ok(()) => Ok(()),
            Err(fail) => {
                let err = self.send_error(fail, what, total, started);
                Err(self.break_write(err))
            }
        }
    }

    /// Turns a failed send of `what` (`total` bytes) into an error naming
    /// the peer.
    pub(super) fn send_error(
        &self,
        fail: SendFail,
        what: &str,
        total: usize,
        started: Instant,
    ) -> NetError {
        if let Some(err) = self.cut_error() {
            return err;
        }
        let timeout = |what: String| NetError::Timeout {
            peer: self.peer.clone(),
            what,
            after: started.elapsed(),
        };
        match fail {
            SendFail::Stalled { sent } => timeout(format!(
                "it to accept {what} ({sent} of {total} bytes sent; it is not reading)"
            )),
            SendFail::Backlog { queued } => timeout(format!(
                "room in the send queue for {what} ({queued} bytes still queued; it is not reading)"
            )),
            SendFail::Closed => NetError::Closed {
                peer: self.peer.clone(),
                partial: None,
                cut_short: false,
            },
            SendFail::Earlier(first) => match *first {
                SendFail::Stalled { .. } | SendFail::Backlog { .. } => NetError::Timeout {
                    peer: self.peer.clone(),
                    what: format!("it to accept frames queued before {what}; it is not reading"),
                    after: self.write_timeout,
                },
                other => self.send_error(other, what, total, started),
            },
            SendFail::Io { op, source } => self.io_error(op, source),
        }
    }
}
