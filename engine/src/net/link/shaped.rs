//! Link emulation as a transport layer: [`ShapedTransport`] wraps any
//! [`Transport`] and, while a profile is set, sends through a [`Shaper`]
//! (whose delivery thread writes to the inner transport's
//! [`Transport::sender`]). Receives always go straight to the inner
//! transport, so their deadlines and end-of-stream are untouched.
//!
//! With no profile it passes every call through, so a connection always
//! holds one and switching emulation on and off never rebuilds anything.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::profile::LinkProfile;
use super::shaper::Shaper;
use crate::net::transport::{Cut, FrameSink, RecvFail, SendFail, SetupError, ShortRead, Transport};

/// Why emulation could not be switched.
#[derive(Debug)]
pub enum SwitchFail {
    /// Frames queued on the previous emulated link could not be delivered.
    Drain(SendFail),
    /// The new emulated link could not be started.
    Start(SetupError),
}

/// A transport whose sends may go through an emulated link.
pub struct ShapedTransport {
    inner: Box<dyn Transport>,
    shaper: Option<Shaper>,
    /// What a send may wait for room on the emulated link.
    write_timeout: Duration,
}

impl std::fmt::Debug for ShapedTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShapedTransport")
            .field("kind", &self.inner.kind())
            .field("link", &self.profile().map(|p| &p.name))
            .finish_non_exhaustive()
    }
}

impl ShapedTransport {
    /// `inner` with emulation off.
    pub fn new(inner: Box<dyn Transport>, write_timeout: Duration) -> Self {
        ShapedTransport {
            inner,
            shaper: None,
            write_timeout,
        }
    }

    /// The link profile sends are emulating, if any.
    pub fn profile(&self) -> Option<&LinkProfile> {
        self.shaper.as_ref().map(Shaper::profile)
    }

    /// Sends from now on emulate `profile` (`None`: straight to the inner
    /// transport). Frames already on the previous emulated link are
    /// delivered first, so switching never reorders them. `peer` names the
    /// delivery thread.
    pub fn set_profile(
        &mut self,
        profile: Option<&LinkProfile>,
        peer: &str,
    ) -> Result<(), SwitchFail> {
        if let Some(old) = self.shaper.take() {
            old.drain(self.write_timeout).map_err(SwitchFail::Drain)?;
        }
        if let Some(p) = profile {
            let sink = self.inner.sender().map_err(SwitchFail::Start)?;
            let shaper = Shaper::start(p.clone(), sink, peer)
                .map_err(|e| SwitchFail::Start(SetupError::new("start the link thread", e)))?;
            self.shaper = Some(shaper);
        }
        Ok(())
    }
}

impl FrameSink for ShapedTransport {
    fn write_frame(&mut self, parts: &mut [IoSlice<'_>]) -> Result<(), SendFail> {
        match self.shaper.as_mut() {
            Some(shaper) => shaper.send(parts, self.write_timeout),
            None => self.inner.write_frame(parts),
        }
    }
}

impl Transport for ShapedTransport {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr()
    }

    fn read_before(&mut self, into: &mut [u8], deadline: Instant) -> Result<usize, RecvFail> {
        self.inner.read_before(into, deadline)
    }

    fn read_exact_before(&mut self, into: &mut [u8], deadline: Instant) -> Result<(), ShortRead> {
        self.inner.read_exact_before(into, deadline)
    }

    fn set_write_timeout(&mut self, timeout: Duration) -> Result<(), SetupError> {
        self.write_timeout = timeout;
        self.inner.set_write_timeout(timeout)
    }

    /// Delivers what the emulated link holds, then shuts the inner
    /// transport's sending side, so the peer reads every frame before the
    /// end of the stream.
    fn shutdown_write(&mut self) -> Result<(), SendFail> {
        if let Some(old) = self.shaper.take() {
            old.drain(self.write_timeout)?;
        }
        self.inner.shutdown_write()
    }

    fn sender(&self) -> Result<Box<dyn FrameSink>, SetupError> {
        // Writes straight to the inner transport: a second sender is not
        // itself emulated (nothing in shardlab stacks two emulated links).
        self.inner.sender()
    }

    fn cutter(&self) -> Result<Box<dyn Cut>, SetupError> {
        self.inner.cutter()
    }
}
