//! Finding nodes on the LAN with mDNS / DNS-SD (`_shardlab._tcp`).
//!
//! A node advertises the addresses it listens on ([`advertise`]); a
//! coordinator browses for a bounded window ([`browse`]) and gets
//! [`FoundNode`]s. Discovery only proposes addresses: whether a found node
//! joins is decided by the token handshake, as for a typed address. The
//! TXT record says what a list of found nodes shows (name, versions,
//! threads) and never anything secret.
//!
//! - `txt.rs`: the TXT record, built and read back ([`NodeAdvert`]).
//! - `addresses.rs`: which addresses a listening socket may advertise
//!   (never loopback to the LAN).
//! - `advertise.rs`: a node's registration, withdrawn when dropped.
//! - `browse.rs`: one bounded browse, and the resolved services it keeps.

mod addresses;
mod advertise;
mod browse;
mod txt;

pub use addresses::{advertisable, interface_addresses, Advertisable};
pub use advertise::{advertise, Advertisement, Advertising};
pub use browse::{browse, found_node, FoundNode};
pub use txt::{NodeAdvert, TxtError};

/// The DNS-SD service type shardlab nodes register, with mDNS's domain.
pub const SERVICE_TYPE: &str = "_shardlab._tcp.local.";

/// How long `:connect auto` and `--nodes auto` browse unless told.
pub const DEFAULT_BROWSE_WINDOW: std::time::Duration = std::time::Duration::from_secs(3);

/// A failure of the mDNS machinery itself (not of a node found with it).
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("mDNS: cannot start the responder: {0}")]
    Daemon(String),
    #[error("mDNS: cannot advertise {instance}: {message}")]
    Register { instance: String, message: String },
    #[error("mDNS: cannot browse for {SERVICE_TYPE}: {message}")]
    Browse { message: String },
    #[error("mDNS: listing this machine's interface addresses: {0}")]
    Interfaces(std::io::Error),
}
