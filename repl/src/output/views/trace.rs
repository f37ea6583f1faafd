//! `:trace`: the last step on every node as horizontal timelines.

use shardlab_engine::cluster::messages::SpanKind;
use shardlab_engine::orchestrator::report::TraceReport;

use super::Literals;
use crate::output::text::{bytes, duration};
use crate::output::{BarChart, BarKind, BarRow, BarSegment, Rich, Varies};

pub fn trace(report: &TraceReport, lits: &Literals) -> BarChart {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for n in &report.nodes {
        let step = &n.step;
        rows.push(BarRow {
            label: n.name.clone().into(),
            segments: step
                .spans
                .iter()
                .map(|s| BarSegment {
                    kind: match s.kind {
                        SpanKind::Compute => BarKind::Compute,
                        SpanKind::Expert => BarKind::Expert,
                        SpanKind::Send => BarKind::Send,
                        SpanKind::Wait => BarKind::Wait,
                        SpanKind::Receive => BarKind::Receive,
                    },
                    start: s.start,
                    seconds: s.seconds,
                })
                .collect(),
        });
        notes.push(
            Rich::masking(&n.label, lits)
                .push(": compute ")
                .push_varies(Varies::Time, duration(step.compute_seconds))
                .push(", wait ")
                .push_varies(Varies::Time, duration(step.wait_seconds))
                .push(", sent ")
                .push_varies(Varies::Bytes, bytes(step.bytes_sent))
                .push(", received ")
                .push_varies(Varies::Bytes, bytes(step.bytes_received)),
        );
    }
    BarChart {
        title: Rich::from("last step, ")
            .push_varies(Varies::Time, duration(report.span))
            .push(" end to end"),
        rows,
        span: report.span,
        notes,
    }
}
