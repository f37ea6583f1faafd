//! An all-reduce's time split into the exchange itself and the skew
//! between peers, without a shared clock.
//!
//! Each node times every all-reduce from the moment its partial is ready
//! until the sum is. The member that finished computing first also waits
//! for the last one to finish: its figure holds the skew. Members of one
//! tensor group take part in the same all-reduces in the same order, so
//! sample k of each member is the same event. Per event, the last-ready
//! member's time is the exchange itself (nobody's compute is left to wait
//! for, only the wire and the sum), and the spread between the slowest
//! and the fastest member's times is the skew (how much earlier the first
//! was ready, plus the wire it then waits on).

use serde::Serialize;

use super::quantile;

/// Medians over the events of every tensor group, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ExchangeSplit {
    /// The last-ready member's time: the exchange without anyone's compute.
    pub exchange_p50: f64,
    pub exchange_p99: f64,
    /// The slowest member's time minus the fastest's.
    pub skew_p50: f64,
    pub skew_p99: f64,
    /// Events paired across members.
    pub events: usize,
}

/// Splits the samples of each group (one sample list per member, in the
/// nodes' own order). A group whose members hold different sample counts
/// cannot be paired event by event (a member joined later) and is left
/// out; `None` when no group of two or more members remains.
pub fn split_exchanges(groups: &[Vec<&[f64]>]) -> Option<ExchangeSplit> {
    let (mut exchange, mut skew) = (Vec::new(), Vec::new());
    for members in groups {
        let Some(first) = members.first() else {
            continue;
        };
        let events = first.len();
        if members.len() < 2 || members.iter().any(|m| m.len() != events) {
            continue;
        }
        for k in 0..events {
            let (lo, hi) = members
                .iter()
                .map(|m| m[k])
                .fold((f64::INFINITY, 0.0f64), |(lo, hi), t| {
                    (lo.min(t), hi.max(t))
                });
            exchange.push(lo);
            skew.push(hi - lo);
        }
    }
    Some(ExchangeSplit {
        exchange_p50: quantile(&exchange, 0.5)?,
        exchange_p99: quantile(&exchange, 0.99)?,
        skew_p50: quantile(&skew, 0.5)?,
        skew_p99: quantile(&skew, 0.99)?,
        events: exchange.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_ready_member_gives_the_exchange_and_the_spread_the_skew() {
        // Event 0: node b was ready 40 late, so a waited 50 and b 10.
        // Event 1: a was late by 5: a 10, b 15.
        let a = [50.0, 10.0, 20.0];
        let b = [10.0, 15.0, 20.0];
        let s = split_exchanges(&[vec![&a[..], &b[..]]]).unwrap();
        assert_eq!(s.events, 3);
        assert_eq!(s.exchange_p50, 10.0); // of 10, 10, 20
        assert_eq!(s.skew_p50, 5.0); // of 40, 5, 0
        assert_eq!(s.skew_p99, 40.0);
    }

    #[test]
    fn groups_are_paired_within_themselves_only() {
        let (a, b) = ([1.0, 1.0], [3.0, 3.0]);
        let (c, d) = ([100.0], [100.0]);
        let s = split_exchanges(&[vec![&a[..], &b[..]], vec![&c[..], &d[..]]]).unwrap();
        assert_eq!(s.events, 3);
        assert_eq!(s.skew_p99, 2.0);
        assert_eq!(s.exchange_p99, 100.0);
    }

    #[test]
    fn unpairable_groups_are_left_out() {
        let (a, b) = ([1.0, 2.0], [1.0]);
        let lone = [5.0];
        assert_eq!(split_exchanges(&[vec![&a[..], &b[..]]]), None);
        assert_eq!(split_exchanges(&[vec![&lone[..]]]), None);
        assert_eq!(split_exchanges(&[]), None);
    }
}
