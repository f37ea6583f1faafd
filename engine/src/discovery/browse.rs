//! One bounded browse for `_shardlab._tcp`: every service resolved within
//! the window, as [`FoundNode`]s to try. Whether a found node may join is
//! for the token handshake to say, not for anything it advertised.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{ServiceDaemon, ServiceEvent};
use serde::Serialize;

use super::txt::{NodeAdvert, TxtError};
use super::{DiscoveryError, SERVICE_TYPE};

/// A node that answered on the LAN.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoundNode {
    /// The service instance name it advertised.
    pub instance: String,
    /// The address to dial, ADDR:PORT (an IPv4 address when it has one).
    pub addr: String,
    /// Every address it advertised.
    pub addresses: Vec<IpAddr>,
    /// What its TXT record says, or why the record could not be read.
    pub advert: Result<NodeAdvert, TxtError>,
}

/// A resolved service as a node to try; `None` when it gave no address
/// that can be dialled (only IPv6 link-local ones, which need their
/// interface).
pub fn found_node(
    fullname: &str,
    addresses: &[IpAddr],
    port: u16,
    txt: &HashMap<String, String>,
) -> Option<FoundNode> {
    let instance = fullname
        .strip_suffix(SERVICE_TYPE)
        .and_then(|s| s.strip_suffix('.'))
        .unwrap_or(fullname)
        .to_string();
    let mut usable: Vec<IpAddr> = addresses
        .iter()
        .copied()
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_unspecified(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80 && !v6.is_unspecified(),
        })
        .collect();
    // IPv4 first, then by address: the same node dials the same address.
    usable.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    usable.dedup();
    let first = *usable.first()?;
    Some(FoundNode {
        instance,
        addr: SocketAddr::new(first, port).to_string(),
        addresses: usable,
        advert: NodeAdvert::from_txt(txt),
    })
}

/// Browses for `window` and returns the nodes resolved in it, by instance
/// name. An empty list is not an error here: the caller says what it means.
pub fn browse(window: Duration) -> Result<Vec<FoundNode>, DiscoveryError> {
    let daemon = ServiceDaemon::new().map_err(|e| DiscoveryError::Daemon(e.to_string()))?;
    let failed = |e: mdns_sd::Error| DiscoveryError::Browse {
        message: e.to_string(),
    };
    let events = daemon.browse(SERVICE_TYPE).map_err(failed)?;
    let end = Instant::now() + window;
    let mut found: BTreeMap<String, FoundNode> = BTreeMap::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(info)) => {
                let txt: HashMap<String, String> = info
                    .get_properties()
                    .iter()
                    .map(|p| (p.key().to_string(), p.val_str().to_string()))
                    .collect();
                let addresses: Vec<IpAddr> = info.get_addresses().iter().copied().collect();
                if let Some(node) =
                    found_node(info.get_fullname(), &addresses, info.get_port(), &txt)
                {
                    found.insert(info.get_fullname().to_string(), node);
                }
            }
            Ok(ServiceEvent::ServiceRemoved(_, fullname)) => {
                found.remove(&fullname);
            }
            Ok(_) => {}
            // Timed out (the window is over) or the daemon went away.
            Err(_) => break,
        }
    }
    let _ = daemon.stop_browse(SERVICE_TYPE);
    let _ = daemon.shutdown();
    Ok(found.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt() -> HashMap<String, String> {
        NodeAdvert {
            name: "n1".into(),
            protocol: 1,
            version: "0.1.0".into(),
            threads: 2,
        }
        .to_txt()
        .into_iter()
        .collect()
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn a_resolved_service_becomes_a_node_to_dial_at_its_ipv4_address() {
        let node = found_node(
            "n1@box:7070._shardlab._tcp.local.",
            &ips(&["fd00::2", "10.0.0.2"]),
            7070,
            &txt(),
        )
        .unwrap();
        assert_eq!(node.instance, "n1@box:7070");
        assert_eq!(node.addr, "10.0.0.2:7070");
        assert_eq!(node.addresses, ips(&["10.0.0.2", "fd00::2"]));
        assert_eq!(node.advert.unwrap().name, "n1");
    }

    #[test]
    fn ipv6_only_nodes_are_dialled_in_brackets_and_link_local_is_skipped() {
        let node = found_node(
            "x._shardlab._tcp.local.",
            &ips(&["fe80::1", "fd00::2"]),
            7,
            &txt(),
        )
        .unwrap();
        assert_eq!(node.addr, "[fd00::2]:7");
        assert!(found_node("x._shardlab._tcp.local.", &ips(&["fe80::1"]), 7, &txt()).is_none());
    }

    #[test]
    fn a_node_with_an_unreadable_record_is_still_found() {
        let node = found_node(
            "x._shardlab._tcp.local.",
            &ips(&["10.0.0.9"]),
            7,
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(node.advert, Err(TxtError::Missing("proto")));
    }
}
