//! `:nodes`: one row per connected node.

use shardlab_engine::model::gguf::GgmlType;
use shardlab_engine::orchestrator::report::{NodeOrigin, NodeState, NodesReport};

use crate::output::text::{bytes, duration};
use crate::output::{Rich, Table, Varies};

pub fn nodes(report: &NodesReport) -> Table {
    let mut t = Table::new(&[
        "node",
        "address",
        "found",
        "state",
        "cores",
        "threads",
        "memory",
        "free",
        "budget",
        "version",
        "RTT",
        "mem GB/s",
        "Q4_0 GB/s",
    ]);
    for n in &report.nodes {
        t.row(vec![
            n.name.clone().into(),
            Rich::varies(Varies::Addr, n.addr.clone()),
            match &n.found {
                NodeOrigin::Local => "local".into(),
                NodeOrigin::Address => "address".into(),
                NodeOrigin::Mdns { instance } => format!("mDNS {instance}").into(),
            },
            match n.state {
                NodeState::Up => "up",
                NodeState::Lost => "lost",
                NodeState::Closed => "closed",
            }
            .into(),
            Rich::varies(Varies::Int, n.cores.to_string()),
            n.threads.to_string().into(),
            Rich::varies(Varies::Bytes, bytes(n.mem_total)),
            Rich::varies(Varies::Bytes, bytes(n.mem_free)),
            if n.budget_fixed {
                Rich::from(bytes(n.budget))
            } else {
                Rich::varies(Varies::Bytes, bytes(n.budget))
            },
            n.version.clone().into(),
            n.rtt
                .map_or("-".into(), |rtt| Rich::varies(Varies::Time, duration(rtt))),
            gb_per_s(n.calibration.as_ref().map(|c| c.bandwidth)),
            gb_per_s(n.calibration.as_ref().and_then(|c| {
                c.kernels
                    .iter()
                    .find(|k| k.dtype == GgmlType::Q4_0)
                    .map(|k| k.decode)
            })),
        ]);
    }
    if report.nodes.iter().any(|n| n.calibration.is_some()) {
        t.note("measured at :connect: mem GB/s = memory read with the node's threads; Q4_0 GB/s = Q4_0 weight bytes a one-token matmul reads per second");
    }
    t
}

/// Bytes per second as "12.3" (GB/s), or "-" when not measured.
fn gb_per_s(bytes_per_s: Option<f64>) -> Rich {
    match bytes_per_s {
        Some(b) => Rich::varies(Varies::Float, format!("{:.1}", b / 1e9)),
        None => "-".into(),
    }
}
