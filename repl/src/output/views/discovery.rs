//! `:connect auto` / `--nodes auto`: one row per node found on the LAN and
//! what became of it.

use shardlab_engine::orchestrator::report::{DiscoveryOutcome, DiscoveryReport};

use crate::output::text::duration;
use crate::output::{Rich, Table, Varies};

pub fn discovery(report: &DiscoveryReport) -> Table {
    let mut t = Table::new(&[
        "instance", "address", "name", "version", "threads", "result",
    ])
    .titled(format!(
        "nodes found on the LAN (mDNS, {})",
        duration(report.window)
    ));
    for r in &report.rows {
        let (name, version, threads) = match &r.advert {
            Some(a) => (a.name.clone(), a.version.clone(), a.threads.to_string()),
            None => ("?".into(), "?".into(), "?".into()),
        };
        let result = match &r.outcome {
            DiscoveryOutcome::Joined { node } => format!("joined as {node}"),
            DiscoveryOutcome::Refused(why) => format!("refused: {why}"),
        };
        t.row(vec![
            r.instance.clone().into(),
            Rich::varies(Varies::Addr, r.addr.clone()),
            name.into(),
            version.into(),
            threads.into(),
            result.into(),
        ]);
    }
    t
}
