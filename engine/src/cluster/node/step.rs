//! Step execution: runs one step of one sequence through this node's
//! slice (embedding or the previous stage's hidden states in, the layers
//! with the tensor group's all-reduces, logits or a hand-off to the next
//! stage out) and answers `StepDone` with its metrics, or an error.

use std::time::Instant;

use super::shard::Shard;
use crate::cluster::messages::{FromNode, Phase, Span, SpanKind, StepMetrics, TensorTag};
use crate::model::error::ModelError;
use crate::model::transformer::{AllReduce, NoReduce};
use crate::net::{Connection, NetError, TensorDtype, TensorHeader};

/// Why a step failed on this node (the connection to the coordinator is fine).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("no shard is loaded")]
    NotLoaded,
    #[error("no tokens to run")]
    NoTokens,
    #[error("sequence {seq} appears twice in one step")]
    RepeatedSequence { seq: u32 },
    #[error("sequence id {seq} is out of range (at most {max} sequences)")]
    SequenceOutOfRange { seq: u32, max: u32 },
    #[error("no link to the previous stage")]
    NoPreviousStage,
    #[error("no link to the next stage")]
    NoNextStage,
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Peer(#[from] NetError),
}

impl StepError {
    /// The failure is a peer closing its link mid-step (see
    /// `FromNode::Error`'s `peer_closed`).
    pub fn peer_closed(&self) -> bool {
        match self {
            StepError::Peer(e) => e.peer_closed(),
            StepError::Model(ModelError::Collective { peer_closed, .. }) => *peer_closed,
            _ => false,
        }
    }

    /// The reply that reports this failure in `phase`.
    pub fn reply(&self, phase: Phase) -> FromNode {
        FromNode::Error {
            phase,
            message: self.to_string(),
            peer_closed: self.peer_closed(),
        }
    }
}

/// Runs a step and answers it. Only a failure to answer is returned: a
/// failed step is reported to the coordinator and the session goes on.
pub(super) fn step(
    conn: &mut Connection,
    shard: &mut Shard,
    pos: usize,
    tokens: &[u32],
    seq: u32,
) -> Result<(), NetError> {
    let started = Instant::now();
    if let Some(links) = shard.links.as_mut() {
        links.begin_step();
    }
    let logits = match shard
        .select(seq)
        .and_then(|()| run_step(shard, pos, tokens, seq))
    {
        Ok(logits) => logits,
        Err(e) => {
            shard.after_failure(&e);
            return conn.send_control(&e.reply(Phase::of_step(tokens.len(), pos)));
        }
    };
    let metrics = step_metrics(shard, tokens.len(), started);
    let done = FromNode::StepDone {
        logits: logits.is_some(),
        metrics,
    };
    conn.send_control(&done)?;
    // The span list travels in the reply and comes back afterwards, so its
    // allocation is reused step after step.
    if let (Some(links), FromNode::StepDone { metrics, .. }) = (shard.links.as_mut(), done) {
        links.stats.step_spans = metrics.spans;
    }
    if let Some(logits) = logits {
        let header = TensorHeader::new(
            TensorDtype::F32,
            &[logits.len() as u64],
            TensorTag::Logits.code(),
        )
        .map_err(|e| NetError::Encode {
            peer: conn.peer().to_string(),
            what: "logits",
            problem: e.to_string(),
        })?;
        conn.send_tensor(&header, crate::parallel::f32_bytes(&logits))?;
    }
    Ok(())
}

/// What the step just run cost, added to the shard's totals too, and the
/// memory the node holds after it.
pub(super) fn step_metrics(shard: &mut Shard, tokens: usize, started: Instant) -> StepMetrics {
    let total = started.elapsed().as_secs_f64();
    let (wait, sent, recv, mut spans) = match shard.links.as_mut() {
        Some(links) => (
            links.stats.step_wait,
            links.stats.step_sent,
            links.stats.step_received,
            std::mem::take(&mut links.stats.step_spans),
        ),
        None => (0.0, 0, 0, Vec::new()),
    };
    spans.insert(
        0,
        Span {
            kind: SpanKind::Compute,
            start: 0.0,
            seconds: total,
        },
    );
    spans.extend(
        shard
            .model
            .expert_spans()
            .iter()
            .map(|&(at, seconds)| Span {
                kind: SpanKind::Expert,
                start: at.saturating_duration_since(started).as_secs_f64(),
                seconds,
            }),
    );
    let metrics = StepMetrics {
        tokens: tokens as u32,
        compute_seconds: (total - wait).max(0.0),
        wait_seconds: wait,
        bytes_sent: sent,
        bytes_received: recv,
        spans,
        resident_bytes: crate::metrics::memory::current_rss_bytes().unwrap_or(0),
    };
    shard.metrics.steps += 1;
    shard.metrics.compute_seconds += metrics.compute_seconds;
    shard.metrics.wait_seconds += metrics.wait_seconds;
    metrics
}

/// Runs one step; returns this node's logits slice if it holds the head.
fn run_step(
    shard: &mut Shard,
    pos: usize,
    tokens: &[u32],
    seq: u32,
) -> Result<Option<Vec<f32>>, StepError> {
    let h = shard.model.config().hidden;
    let t = tokens.len();
    if t == 0 {
        return Err(StepError::NoTokens);
    }
    let (embed, head) = (shard.model.layout().embed, shard.model.layout().head);
    let mut x = std::mem::take(&mut shard.hidden);
    if embed {
        x = shard.model.embed(tokens)?;
    } else {
        let links = shard.links.as_mut().ok_or(StepError::NoPreviousStage)?;
        links.recv_hidden(&mut x, t, h, seq)?;
    }
    {
        let reduce: &mut dyn AllReduce = match shard.links.as_mut() {
            Some(links) if links.group_size() > 1 => links,
            _ => &mut NoReduce,
        };
        shard.model.forward_layers(&mut x, t, pos, reduce)?;
    }
    let out = if head {
        let last = &x[(t - 1) * h..t * h];
        Some(shard.model.head(last)?)
    } else {
        let links = shard.links.as_mut().ok_or(StepError::NoNextStage)?;
        links.send_hidden(&x, seq)?;
        None
    };
    shard.hidden = x;
    Ok(out)
}
