//! `:nodes`: one row per connected node.

use shardlab_engine::orchestrator::report::{NodeOrigin, NodeState, NodesReport};

use crate::output::text::{bytes, duration};
use crate::output::{Rich, Table, Varies};

pub fn nodes(report: &NodesReport) -> Table {
    let mut t = Table::new(&[
        "node", "address", "found", "state", "cores", "threads", "memory", "free", "budget",
        "version", "RTT",
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
        ]);
    }
    t
}
