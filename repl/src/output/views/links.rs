//! `:links`: coordinator-to-node round trips and bandwidth, then what the
//! nodes measured between themselves while running.

use shardlab_engine::net::LinkSecurity;
use shardlab_engine::orchestrator::report::{LinkSetting, LinksReport};

use crate::output::text::duration;
use crate::output::{Output, Rich, Table, Varies};

pub fn links(report: &LinksReport) -> Output {
    let mut t = Table::new(&[
        "from",
        "to",
        "address",
        "RTT min",
        "RTT median",
        "up",
        "down",
        "link",
    ])
    .titled("links: coordinator to each node");
    let time = |v: Option<f64>| v.map_or("-".into(), |v| Rich::varies(Varies::Time, duration(v)));
    let mbps = |v: Option<f64>| {
        v.map_or("-".into(), |v| {
            Rich::varies(Varies::Rate, format!("{:.0} MB/s", v / 1e6))
        })
    };
    for l in &report.coordinator {
        t.row(vec![
            "coordinator".into(),
            l.node.clone().into(),
            Rich::varies(Varies::Addr, l.addr.clone()),
            time(l.rtt_min),
            time(l.rtt_median),
            mbps(l.up),
            mbps(l.down),
            link_cell(&l.link),
        ]);
    }
    t.note(format!(
        "{} control-message round trips per node (ping + node info); bandwidth from one {} MiB transfer each way.",
        report.pings,
        report.probe_bytes >> 20
    ));
    t.note(match report.security {
        LinkSecurity::Sealed => {
            "Every frame is sealed (AES-256-GCM, a key per direction): the path can neither read nor alter it."
        }
        LinkSecurity::Plaintext => {
            "Frames travel in plaintext (--insecure-plaintext): anyone on the path can read and alter them."
        }
    });
    if let Some(l) = &report.emulated {
        t.note(format!(
            "Emulating {l} on every link: the figures above and below include it."
        ));
    }
    let mut peers = Table::new(&[
        "node",
        "peer traffic",
        "all-reduce p50",
        "all-reduce p99",
        "hop p50",
        "hop p99",
        "link",
    ])
    .titled("links: node to node, as measured during generation");
    for p in &report.peers {
        peers.row(vec![
            Rich::varies(Varies::Addr, p.label.clone()),
            p.peers.join(", ").into(),
            time(p.allreduce_p50),
            time(p.allreduce_p99),
            time(p.hop_p50),
            time(p.hop_p99),
            link_cell(&p.link),
        ]);
    }
    if report.peers.is_empty() {
        peers.note("No node-to-node traffic yet: shard a model across nodes and run a prompt.");
    } else {
        peers.note("Timings cover every step since the shard loaded; `link` is the setting now.");
    }
    Output::Many(vec![Output::Table(t), Output::Table(peers)])
}

/// "wifi" when both directions emulate one profile, "real" when neither
/// does; otherwise each direction.
fn link_cell(l: &LinkSetting) -> Rich {
    let name = |p: &Option<String>| p.clone().unwrap_or_else(|| "real".to_string());
    if l.out == l.back {
        name(&l.out).into()
    } else {
        format!("{} out, {} back", name(&l.out), name(&l.back)).into()
    }
}
