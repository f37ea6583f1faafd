//! `:plan` and `:shard`: how the open model splits over the nodes, and
//! applying that split. With no nodes, `single` means this process.

use shardlab_engine::cluster::coordinator::LoadProgress;
use shardlab_engine::shard::plan::LayoutRequest;

use super::{Session, SessionError, Sink};
use crate::output::text::{bytes, duration};
use crate::output::{views, Output, Report, Rich, Varies};

impl Session {
    pub(super) fn plan(&mut self, request: &LayoutRequest) -> Result<Output, SessionError> {
        let report = self.core.plan(request)?;
        let table = views::plan(&report, &self.literals());
        let verdict = match &report.refusal {
            None => Output::text("fits: every node's prediction is within its budget"),
            Some(e) => Output::Text(Rich::from(":shard would refuse: ").append(self.mask(e))),
        };
        Ok(Output::report(
            Report::Plan(report),
            Output::Table(table).then(verdict),
        ))
    }

    pub(super) fn shard(
        &mut self,
        request: &LayoutRequest,
        sink: &mut dyn Sink,
    ) -> Result<Output, SessionError> {
        let lits = self.literals();
        let quiet = |_: LoadProgress| {};
        let outcome = if self.core.nodes().is_some() {
            let progress = sink.load_progress().unwrap_or(&quiet);
            self.core.shard(request, progress, &mut |_| {})?
        } else {
            // The whole model loads here: say so before the wait.
            self.core.shard(request, &quiet, &mut |name| {
                sink.note(&Rich::from(format!("loading {name} into this process")))
            })?
        };
        let mut out = Output::Empty;
        for gone in &outcome.dropped {
            out = out.then(Output::Text(
                Rich::from("dropped ").append(Rich::masking(gone, &lits)),
            ));
        }
        for back in &outcome.readmitted {
            out = out.then(Output::Text(
                Rich::from("admitted again ")
                    .append(Rich::masking(back, &lits))
                    .push(" (it answers at its address again)"),
            ));
        }
        let nodes = outcome.plan.plan.nodes.len().max(1);
        let done = match &outcome.load {
            Some(summary) => {
                let cached = summary.nodes.iter().filter(|(_, r)| r.from_cache).count();
                // Whether a node had its shard cached depends on earlier runs.
                Rich::from(" (streamed ")
                    .push_varies(Varies::Bytes, bytes(summary.bytes_sent))
                    .push("; ")
                    .push_varies(Varies::Int, cached.to_string())
                    .push(format!(
                        " of {} {} the shard cached)",
                        summary.nodes.len(),
                        if summary.nodes.len() == 1 {
                            "node had"
                        } else {
                            "nodes had"
                        }
                    ))
            }
            None => Rich::from(" (this process)"),
        };
        let line = Rich::from(format!("sharded {request} over {nodes} "))
            .push(if nodes == 1 { "node" } else { "nodes" })
            .push(" in ")
            .push_varies(Varies::Time, duration(outcome.seconds))
            .append(done);
        let table = views::plan(&outcome.plan, &lits);
        Ok(out
            .then(Output::report(
                Report::Plan(outcome.plan),
                Output::Table(table),
            ))
            .then(Output::Text(line)))
    }
}
