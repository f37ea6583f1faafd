//! `:trace`: the last step (one decoded token) on every node, as a
//! timeline: when each node computed, waited on peers, sent and received.

use shardlab_engine::cluster::messages::SpanKind;

use super::{Runner, Session, SessionError};
use crate::output::text::{bytes, duration};
use crate::output::{BarChart, BarKind, BarRow, BarSegment, Output, Rich, Varies};

impl Session {
    pub(super) fn trace(&mut self) -> Result<Output, SessionError> {
        let n = match (&self.runner, self.nodes.as_ref()) {
            (Runner::Cluster(_), Some(n)) => n,
            (Runner::InProcess(_), _) => {
                return Err(SessionError::state(
                    ":trace shows a step across nodes; the model runs in this process (`:connect local 2` and `:shard tensor`)",
                ))
            }
            _ => return Err(SessionError::state("nothing is sharded yet: `:shard LAYOUT`, then a prompt")),
        };
        let lits = self.literals();
        let mut rows = Vec::new();
        let mut span = 0.0f64;
        let mut notes = Vec::new();
        for (h, step) in n.cluster.nodes().iter().zip(&n.cluster.last_step) {
            let Some(step) = step else { continue };
            let segments: Vec<BarSegment> = step
                .spans
                .iter()
                .map(|s| BarSegment {
                    kind: match s.kind {
                        SpanKind::Compute => BarKind::Compute,
                        SpanKind::Send => BarKind::Send,
                        SpanKind::Wait => BarKind::Wait,
                        SpanKind::Receive => BarKind::Receive,
                    },
                    start: s.start,
                    seconds: s.seconds,
                })
                .collect();
            for s in &segments {
                span = span.max(s.start + s.seconds);
            }
            notes.push(
                Rich::masking(&h.label(), &lits)
                    .push(": compute ")
                    .push_varies(Varies::Time, duration(step.compute_seconds))
                    .push(", wait ")
                    .push_varies(Varies::Time, duration(step.wait_seconds))
                    .push(", sent ")
                    .push_varies(Varies::Bytes, bytes(step.bytes_sent))
                    .push(", received ")
                    .push_varies(Varies::Bytes, bytes(step.bytes_received)),
            );
            rows.push(BarRow {
                label: h.name.clone().into(),
                segments,
            });
        }
        if rows.is_empty() {
            return Err(SessionError::state(
                "no step has run since :shard: type a prompt first",
            ));
        }
        Ok(Output::Bars(BarChart {
            title: Rich::from("last step, ")
                .push_varies(Varies::Time, duration(span))
                .push(" end to end"),
            rows,
            span,
            notes,
        }))
    }
}
