//! Which addresses a node may advertise: only those it listens on, and
//! never loopback to the LAN. A pure function of the listening address and
//! the machine's interface addresses, so it is tested without a network.

use std::net::IpAddr;

use super::DiscoveryError;

/// What a node listening on some address can tell the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advertisable {
    /// These addresses, each one the node accepts connections on.
    Addresses(Vec<IpAddr>),
    /// The node listens on loopback: no other machine could reach it.
    Loopback,
    /// It listens on every address, but the machine has none but loopback.
    NoLanAddress,
}

/// The addresses to advertise for a node listening on `listen`, given the
/// machine's interface addresses. A wildcard (`0.0.0.0`) stands for every
/// non-loopback IPv4 address; `[::]` for every non-loopback address of
/// either family (Linux listens dual-stack), leaving out IPv6 link-local
/// addresses, which cannot be dialled without their interface.
pub fn advertisable(listen: IpAddr, interfaces: &[IpAddr]) -> Advertisable {
    if listen.is_loopback() {
        return Advertisable::Loopback;
    }
    if !listen.is_unspecified() {
        return Advertisable::Addresses(vec![listen]);
    }
    let wanted = |ip: &IpAddr| match (listen, ip) {
        (_, ip) if ip.is_loopback() || ip.is_unspecified() => false,
        (IpAddr::V4(_), IpAddr::V4(_)) => true,
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
        (IpAddr::V6(_), IpAddr::V4(_)) => true,
        (IpAddr::V6(_), IpAddr::V6(v6)) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    };
    let mut addrs: Vec<IpAddr> = interfaces.iter().copied().filter(wanted).collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        Advertisable::NoLanAddress
    } else {
        Advertisable::Addresses(addrs)
    }
}

/// Every address on this machine's interfaces, loopback included (the
/// caller filters).
pub fn interface_addresses() -> Result<Vec<IpAddr>, DiscoveryError> {
    Ok(if_addrs::get_if_addrs()
        .map_err(DiscoveryError::Interfaces)?
        .into_iter()
        .map(|i| i.ip())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn machine() -> Vec<IpAddr> {
        [
            "127.0.0.1",
            "10.0.0.5",
            "192.168.1.7",
            "::1",
            "fe80::1",
            "fd00::5",
        ]
        .iter()
        .map(|t| ip(t))
        .collect()
    }

    #[test]
    fn loopback_is_never_advertised() {
        assert_eq!(
            advertisable(ip("127.0.0.1"), &machine()),
            Advertisable::Loopback
        );
        assert_eq!(
            advertisable(ip("127.0.0.2"), &machine()),
            Advertisable::Loopback
        );
        assert_eq!(advertisable(ip("::1"), &machine()), Advertisable::Loopback);
    }

    #[test]
    fn a_specific_address_is_the_only_one_advertised() {
        assert_eq!(
            advertisable(ip("10.0.0.5"), &machine()),
            Advertisable::Addresses(vec![ip("10.0.0.5")])
        );
    }

    #[test]
    fn the_ipv4_wildcard_advertises_every_lan_ipv4_address() {
        assert_eq!(
            advertisable(ip("0.0.0.0"), &machine()),
            Advertisable::Addresses(vec![ip("10.0.0.5"), ip("192.168.1.7")])
        );
    }

    #[test]
    fn the_ipv6_wildcard_leaves_out_loopback_and_link_local() {
        assert_eq!(
            advertisable(ip("::"), &machine()),
            Advertisable::Addresses(vec![ip("10.0.0.5"), ip("192.168.1.7"), ip("fd00::5")])
        );
    }

    #[test]
    fn a_machine_with_only_loopback_has_nothing_to_advertise() {
        assert_eq!(
            advertisable(ip("0.0.0.0"), &[ip("127.0.0.1"), ip("::1")]),
            Advertisable::NoLanAddress
        );
    }
}
