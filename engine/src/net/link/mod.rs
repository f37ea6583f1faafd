//! Link emulation in userspace, for machines whose kernel has no netem:
//! make a loopback link behave like Thunderbolt, Ethernet or Wi-Fi so that
//! a cluster's measured transfer timings answer "what would this do on two
//! laptops over Wi-Fi?".
//!
//! - [`profile`]: [`LinkProfile`] (latency, jitter, bandwidth), its spec
//!   syntax and the named profiles.
//! - [`shaper`]: [`Shaper`], the delivery thread behind one emulated
//!   sending direction.
//! - [`shaped`]: [`ShapedTransport`], the transport layer that sends
//!   through a shaper; every [`super::Connection`] holds one, and
//!   [`super::Connection::emulate`] sets its profile. It works over any
//!   [`super::transport::Transport`].
//!
//! Emulation acts on sends only: each side of a link emulates its own
//! outgoing frames, so a link is emulated both ways when both ends are.

pub mod profile;
pub mod shaped;
pub mod shaper;

pub use profile::{LinkProfile, LinkSpecError, NamedProfile, PROFILES};
pub use shaped::{ShapedTransport, SwitchFail};
pub use shaper::Shaper;
