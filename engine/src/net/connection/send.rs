//! Sending: each frame goes to the transport as one list of slices (frame
//! header, tensor header, data), so a tensor's data is never copied.

use std::io::IoSlice;
use std::time::Instant;

use serde::Serialize;

use super::Connection;
use crate::net::error::NetError;
use crate::net::frame::{checked_len, FrameHeader, FrameKind, TensorHeader, HEADER_LEN};
use crate::net::transport::{FrameSink, SendFail};
use crate::net::Frame;

impl Connection {
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
    /// write where the transport allows; `data` is never copied.
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

    /// One whole frame to the transport. Frame encryption, when it comes,
    /// seals `parts` here, before the transport sees them.
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
