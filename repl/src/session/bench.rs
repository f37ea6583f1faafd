//! `:bench`: one workload (a prompt of N tokens, M greedy tokens) under
//! several layouts, against the whole model in this process with one
//! node's thread count. The layout in place before is put back after.
//! The orchestrator measures; this file picks the layouts and draws.

use shardlab_engine::orchestrator::{BenchEvent, BenchRequest};
use shardlab_engine::shard::plan::LayoutRequest;

use super::{Session, SessionError, Sink};
use crate::command::BenchArgs;
use crate::output::{views, Output, Report, Rich};

impl Session {
    pub(super) fn bench(
        &mut self,
        args: &BenchArgs,
        sink: &mut dyn Sink,
    ) -> Result<Output, SessionError> {
        self.core.require_model()?;
        let nodes = self.core.cluster().map_or(0, |c| c.budgets().len());
        let layouts: Vec<LayoutRequest> = match (nodes, args.layouts.is_empty()) {
            (_, false) => args.layouts.clone(),
            (2.., true) => vec![
                LayoutRequest::Tensor,
                LayoutRequest::Pipeline { layers: None },
            ],
            (1, true) => vec![LayoutRequest::Tensor],
            (_, true) => Vec::new(),
        };
        let threads = self.core.bench_threads();
        sink.note(&Rich::from(format!(
            "bench: {} prompt tokens, {} generated, greedy; baseline: this process with {threads} thread{}",
            args.prompt_tokens,
            args.gen_tokens,
            if threads == 1 { "" } else { "s" }
        )));
        let request = BenchRequest {
            prompt_tokens: args.prompt_tokens,
            gen_tokens: args.gen_tokens,
            baseline_threads: Some(threads),
            layouts,
            parallel: 1,
            probe_threads: Some(threads),
        };
        let report = self.core.bench(&request, &mut |event| {
            if let BenchEvent::Layout(layout) = event {
                sink.note(&Rich::from(format!("bench: {layout}")));
            }
        })?;
        let table = views::bench(&report, &self.literals());
        let restored = report.restored.clone();
        let mut out = Output::report(Report::Bench(report), Output::Table(table));
        if let Some(r) = restored {
            out = out.then(match r.error {
                None => Output::text(format!("restored {}", r.layout)),
                Some(e) => Output::Error(self.mask(&format!("restoring {}: {e}", r.layout))),
            });
        }
        Ok(out)
    }
}
