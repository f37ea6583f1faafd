//! Calibration, coordinator side: each node measures itself once
//! (`ToNode::Calibrate`), and the coordinator measures its link to each
//! node, so the planner can predict a layout's speed. Nodes on one machine
//! with the same thread count share one measurement: asking the second
//! would only measure the same cores again, and measuring them one after
//! another would still differ by the noise of a shared machine.

use std::time::{Duration, Instant};

use super::{Cluster, ClusterError, NodeHandle};
use crate::cluster::messages::{FromNode, Phase, ToNode};
use crate::shard::plan::speed::LinkCost;

/// A node measuring itself on a busy machine may take a while, and nodes
/// in one process measure one at a time (`calibration::cached`), so a
/// node may first wait for others' measurements: on a crowded 2-core test
/// machine that passed 60 s. A node that stops answering is named by its
/// heartbeat within seconds; this bounds a live one.
const CALIBRATE_DEADLINE: Duration = Duration::from_secs(300);
/// Pings per link; the median counts (a link's jitter is part of it).
const LINK_PINGS: usize = 5;
/// Bytes sent each way to measure a link's bandwidth.
const LINK_BYTES: u64 = 1 << 20;

impl Cluster {
    /// Calibrates every live node not yet calibrated, and measures every
    /// link not yet measured. Returns the labels newly measured.
    pub fn calibrate(&mut self) -> Result<Vec<String>, ClusterError> {
        let mut measured = Vec::new();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_alive() {
                continue;
            }
            if self.nodes[i].calibration.is_none() {
                let twin = self.nodes.iter().find_map(|other| {
                    other
                        .calibration
                        .as_ref()
                        .filter(|c| {
                            other.info.hostname == self.nodes[i].info.hostname
                                && c.threads == self.nodes[i].info.threads
                        })
                        .cloned()
                });
                let figures = match twin {
                    Some(c) => c,
                    None => ask(&mut self.nodes[i])?,
                };
                self.nodes[i].calibration = Some(figures);
                measured.push(self.nodes[i].label());
            }
            if self.nodes[i].link_cost.is_none() {
                let rtt = self.median_ping(i)?;
                // The better of two probes: a busy machine only slows one.
                let (up, down) = self.measure_bandwidth(i, LINK_BYTES)?;
                let (up2, down2) = self.measure_bandwidth(i, LINK_BYTES)?;
                self.nodes[i].link_cost = Some(LinkCost {
                    rtt,
                    bandwidth: up.max(up2).min(down.max(down2)),
                });
            }
        }
        Ok(measured)
    }

    /// Forgets the measured links (after the emulated link changed); the
    /// next `calibrate` measures them again.
    pub fn forget_link_costs(&mut self) {
        for n in &mut self.nodes {
            n.link_cost = None;
        }
    }

    /// Replaces node `i`'s calibration: figures taken elsewhere, or a
    /// node's as a slower machine would measure them (the tests' way to
    /// give one node of a local cluster another speed).
    pub fn set_calibration(&mut self, i: usize, figures: crate::calibration::Calibration) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.calibration = Some(figures);
        }
    }

    fn median_ping(&mut self, i: usize) -> Result<f64, ClusterError> {
        let node = &mut self.nodes[i];
        let mut times = Vec::with_capacity(LINK_PINGS);
        for _ in 0..LINK_PINGS {
            let started = Instant::now();
            node.request(&ToNode::Ping, Phase::Control, super::CONTROL_DEADLINE)?;
            times.push(started.elapsed().as_secs_f64());
        }
        Ok(crate::metrics::quantile(&times, 0.5).unwrap_or(0.0))
    }
}

fn ask(node: &mut NodeHandle) -> Result<crate::calibration::Calibration, ClusterError> {
    match node.request(&ToNode::Calibrate, Phase::Control, CALIBRATE_DEADLINE)? {
        FromNode::Calibration(c) => Ok(c),
        other => Err(ClusterError::new(
            &node.label(),
            Phase::Control,
            format!("unexpected reply {other:?} to a calibration request"),
        )),
    }
}
