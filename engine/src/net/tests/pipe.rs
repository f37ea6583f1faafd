//! A transport written for tests only, over a Unix socket pair: if a
//! `Connection` works over this, the `Transport` trait is the whole seam.

use std::io::{self, IoSlice, Read};
use std::net::{Shutdown, SocketAddr};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::net::transport::{
    is_disconnect, is_timeout, write_frame_to, Cut, FrameSink, RecvFail, SendFail, SetupError,
    Transport,
};

pub(super) struct PipeTransport {
    stream: UnixStream,
}

impl PipeTransport {
    /// Two connected ends.
    pub(super) fn pair() -> (PipeTransport, PipeTransport) {
        let (a, b) = UnixStream::pair().unwrap();
        (PipeTransport { stream: a }, PipeTransport { stream: b })
    }

    /// The raw stream, for tests that misbehave on purpose.
    pub(super) fn into_stream(self) -> UnixStream {
        self.stream
    }
}

struct PipeSender(UnixStream);

impl FrameSink for PipeSender {
    fn write_frame(&mut self, parts: &mut [IoSlice<'_>]) -> Result<(), SendFail> {
        write_frame_to(&mut self.0, parts)
    }
}

impl FrameSink for PipeTransport {
    fn write_frame(&mut self, parts: &mut [IoSlice<'_>]) -> Result<(), SendFail> {
        write_frame_to(&mut self.stream, parts)
    }
}

impl Transport for PipeTransport {
    fn kind(&self) -> &'static str {
        "pipe"
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        None
    }

    fn read_before(&mut self, into: &mut [u8], deadline: Instant) -> Result<usize, RecvFail> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvFail::Timeout);
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(RecvFail::Io)?;
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
        let clone = self
            .stream
            .try_clone()
            .map_err(|e| SetupError::new("clone the stream", e))?;
        Ok(Box::new(PipeSender(clone)))
    }

    fn cutter(&self) -> Result<Box<dyn Cut>, SetupError> {
        let clone = self
            .stream
            .try_clone()
            .map_err(|e| SetupError::new("clone the stream", e))?;
        Ok(Box::new(PipeCut(clone)))
    }
}

struct PipeCut(UnixStream);

impl Cut for PipeCut {
    fn cut(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}
