//! `:plan` and `:shard`: how the open model splits over the nodes, and
//! applying that split. With no nodes, `single` means this process.

use shardlab_engine::cluster::coordinator::LoadProgress;
use shardlab_engine::orchestrator::report::{Objective, PlanReport};
use shardlab_engine::shard::plan::speed::Workload;
use shardlab_engine::shard::plan::LayoutRequest;

use super::{Session, SessionError, Sink};
use crate::command::{LayoutChoice, PlanArgs};
use crate::output::text::{bytes, duration, rate};
use crate::output::{views, Output, Report, Rich, Varies};

impl Session {
    /// `:plan LAYOUT` or `:plan best`, predicted for `args.workload`.
    /// The workload applies to this command only.
    pub(super) fn plan(&mut self, args: &PlanArgs) -> Result<Output, SessionError> {
        let before = std::mem::replace(&mut self.core.workload, args.workload);
        let out = match &args.choice {
            LayoutChoice::Given(request) => self.plan_layout(request),
            LayoutChoice::Best(objective) => self.rank(*objective, args.workload),
        };
        self.core.workload = before;
        out
    }

    fn plan_layout(&mut self, request: &LayoutRequest) -> Result<Output, SessionError> {
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

    /// `:plan best`: every layout ranked by predicted speed.
    fn rank(&mut self, objective: Objective, workload: Workload) -> Result<Output, SessionError> {
        let report = self.core.rank_layouts(objective, workload)?;
        let table = views::rank(&report, &self.literals());
        Ok(Output::report(Report::Rank(report), Output::Table(table)))
    }

    /// `:shard LAYOUT`, or `:shard best`: the fastest layout that fits,
    /// named with its predicted rate before the usual shard output.
    pub(super) fn shard(
        &mut self,
        args: &PlanArgs,
        sink: &mut dyn Sink,
    ) -> Result<Output, SessionError> {
        let before = std::mem::replace(&mut self.core.workload, args.workload);
        let out = match &args.choice {
            LayoutChoice::Given(request) => self.shard_layout(request, sink),
            LayoutChoice::Best(objective) => self.shard_best(*objective, args.workload, sink),
        };
        self.core.workload = before;
        out
    }

    fn shard_best(
        &mut self,
        objective: Objective,
        workload: Workload,
        sink: &mut dyn Sink,
    ) -> Result<Output, SessionError> {
        let request = self.core.best_layout(objective, workload)?;
        let loaded = self.shard_layout(&request, sink)?;
        let predicted = match report_of(&loaded).and_then(|p| p.speed.as_ref()) {
            Some(s) => Rich::from(", predicted ")
                .push_varies(Varies::Rate, rate(s.decode_tok_s))
                .push(" decode, ")
                .push_varies(Varies::Rate, rate(s.prefill_tok_s))
                .push(" prefill"),
            None => Rich::new(),
        };
        let line = Rich::from(format!(
            "best layout for {objective} ({}): {request}",
            views::speed::workload(&workload)
        ))
        .append(predicted);
        Ok(Output::Text(line).then(loaded))
    }

    fn shard_layout(
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
        let mut out = out
            .then(Output::report(
                Report::Plan(outcome.plan),
                Output::Table(table),
            ))
            .then(Output::Text(line));
        // A node whose own copy of the file could not serve its slices
        // says why: the user expected nothing to be streamed to it.
        let misses = outcome.load.iter().flat_map(|summary| &summary.nodes);
        for (node, report) in misses {
            if let Some(miss) = &report.local_file_miss {
                out = out.then(Output::Text(Rich::masking(
                    &format!("{node}: {miss}; its slices were streamed instead"),
                    &lits,
                )));
            }
        }
        Ok(out)
    }
}

/// The plan report among `out`'s parts: what `:shard` loaded.
fn report_of(out: &Output) -> Option<&PlanReport> {
    match out {
        Output::Report(r) => match &r.report {
            Report::Plan(p) => Some(p),
            _ => None,
        },
        Output::Many(parts) => parts.iter().find_map(report_of),
        _ => None,
    }
}
