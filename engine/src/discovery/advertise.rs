//! A node's advertisement: registered with an mDNS responder of its own on
//! the interfaces that carry the advertised addresses, withdrawn (with
//! goodbye packets) when dropped.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};

use super::addresses::{advertisable, interface_addresses, Advertisable};
use super::txt::NodeAdvert;
use super::{DiscoveryError, SERVICE_TYPE};

/// How long dropping an advertisement waits for its goodbye to go out.
const GOODBYE_WAIT: Duration = Duration::from_millis(500);
/// DNS-SD instance names are one DNS label.
const MAX_INSTANCE_BYTES: usize = 63;

/// A live registration on the LAN.
pub struct Advertisement {
    daemon: ServiceDaemon,
    fullname: String,
    /// The service instance name browsers see.
    pub instance: String,
    /// The addresses advertised, each one the node listens on.
    pub addresses: Vec<IpAddr>,
}

/// What [`advertise`] did.
pub enum Advertising {
    On(Advertisement),
    /// Nothing was advertised, and why ([`Advertisable::Loopback`] or
    /// [`Advertisable::NoLanAddress`]).
    Off(Advertisable),
}

impl std::fmt::Display for Advertising {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Advertising::On(a) => {
                let addrs: Vec<String> = a.addresses.iter().map(IpAddr::to_string).collect();
                write!(
                    f,
                    "advertised on the LAN as '{}' ({SERVICE_TYPE} on {})",
                    a.instance,
                    addrs.join(", ")
                )
            }
            Advertising::Off(Advertisable::Loopback) => {
                f.write_str("not advertised on the LAN: it listens on loopback")
            }
            Advertising::Off(Advertisable::NoLanAddress) => f.write_str(
                "not advertised on the LAN: this machine has no address besides loopback",
            ),
            Advertising::Off(Advertisable::Addresses(_)) => f.write_str("not advertised"),
        }
    }
}

/// The instance name for node `name` on this machine at `port`: unique on
/// a LAN of nodes that all keep the default name.
pub(crate) fn instance_name(name: &str, host: Option<&str>, port: u16) -> String {
    let host = host
        .and_then(|h| h.split('.').next())
        .filter(|h| !h.is_empty());
    let full = match host {
        Some(h) => format!("{name}@{h}:{port}"),
        None => format!("{name}:{port}"),
    };
    // Dots would split the label; mDNS names are case-insensitive anyway.
    let mut cleaned: String = full
        .chars()
        .map(|c| if c == '.' { '-' } else { c })
        .collect();
    while cleaned.len() > MAX_INSTANCE_BYTES {
        cleaned.pop();
    }
    cleaned
}

/// Advertises a node listening on `listen` as `advert` says, if it can be
/// reached from the LAN at all.
pub fn advertise(listen: SocketAddr, advert: &NodeAdvert) -> Result<Advertising, DiscoveryError> {
    let addresses = match advertisable(listen.ip(), &interface_addresses()?) {
        Advertisable::Addresses(a) => a,
        other => return Ok(Advertising::Off(other)),
    };
    let daemon = ServiceDaemon::new().map_err(|e| DiscoveryError::Daemon(e.to_string()))?;
    let instance = instance_name(
        &advert.name,
        crate::platform::hostname().as_deref(),
        listen.port(),
    );
    let failed = |e: mdns_sd::Error| DiscoveryError::Register {
        instance: instance.clone(),
        message: e.to_string(),
    };
    // Speak only where the advertised addresses live.
    daemon.disable_interface(IfKind::All).map_err(failed)?;
    for a in &addresses {
        daemon.enable_interface(IfKind::Addr(*a)).map_err(failed)?;
    }
    // A host name of its own: two nodes on one machine (or in network
    // namespaces sharing a host name) must not pool their addresses.
    let host = format!("shardlab-{:08x}.local.", rand::random::<u32>());
    let info = ServiceInfo::new(
        SERVICE_TYPE,
        &instance,
        &host,
        &addresses[..],
        listen.port(),
        &advert.to_txt()[..],
    )
    .map_err(failed)?;
    let fullname = info.get_fullname().to_string();
    daemon.register(info).map_err(failed)?;
    Ok(Advertising::On(Advertisement {
        daemon,
        fullname,
        instance,
        addresses,
    }))
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(GOODBYE_WAIT);
        }
        let _ = self.daemon.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::instance_name;

    #[test]
    fn instance_names_carry_name_host_and_port_in_one_label() {
        assert_eq!(
            instance_name("node", Some("box.example.com"), 7070),
            "node@box:7070"
        );
        assert_eq!(instance_name("a.b", None, 1), "a-b:1");
        let long = instance_name(&"n".repeat(100), Some("h"), 7070);
        assert_eq!(long.len(), 63);
    }
}
