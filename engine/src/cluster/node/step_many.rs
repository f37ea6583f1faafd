//! A batched step (`StepMany`): several sequences through this node's
//! slice in one forward pass. Stage 0 embeds every segment's tokens, a
//! later stage receives all segments' hidden rows in one hand-off; the
//! layers run once over all rows (each segment on its own KV cache); a
//! head node sends the logits of the segments that want them, a group of
//! rows at a time, then `StepDone` with the step's metrics.

use std::time::Instant;

use super::shard::Shard;
use super::step::{step_metrics, StepError};
use crate::cluster::messages::{FromNode, StepSegment, TensorTag};
use crate::model::error::ModelError;
use crate::model::segments::{last_rows, Segment};
use crate::model::transformer::{AllReduce, NoReduce};
use crate::net::{Connection, NetError, TensorDtype, TensorHeader};

/// Runs a batched step and answers it. Only a failure to answer is
/// returned: a failed step is reported to the coordinator.
pub(super) fn step_many(
    conn: &mut Connection,
    shard: &mut Shard,
    segments: &[StepSegment],
) -> Result<(), NetError> {
    let started = Instant::now();
    if let Some(links) = shard.links.as_mut() {
        links.begin_step();
    }
    let phase = StepSegment::phase(segments);
    let fail = |conn: &mut Connection, e: &StepError| conn.send_control(&e.reply(phase));
    let x = match run_layers(shard, segments) {
        Ok(x) => x,
        Err(e) => {
            shard.after_failure(&e);
            return fail(conn, &e);
        }
    };
    if shard.model.layout().head {
        if let Err(e) = send_logits(conn, shard, &x, segments) {
            shard.hidden = x;
            return match e {
                Sent::Conn(e) => Err(e),
                Sent::Model(e) => fail(conn, &StepError::Model(e)),
            };
        }
    }
    shard.hidden = x;
    let rows: usize = segments.iter().map(|s| s.tokens.len()).sum();
    let metrics = step_metrics(shard, rows, started);
    let done = FromNode::StepDone {
        logits: false,
        metrics,
    };
    conn.send_control(&done)?;
    // The span list comes back for reuse, as after a single step.
    if let (Some(links), FromNode::StepDone { metrics, .. }) = (shard.links.as_mut(), done) {
        links.stats.step_spans = metrics.spans;
    }
    Ok(())
}

/// Embeds (or receives) every segment's rows and runs the owned layers
/// over them; a node of an earlier stage hands the rows on.
fn run_layers(shard: &mut Shard, segments: &[StepSegment]) -> Result<Vec<f32>, StepError> {
    shard.check_batch(segments)?;
    let h = shard.model.config().hidden;
    let rows: usize = segments.iter().map(|s| s.tokens.len()).sum();
    let digest = StepSegment::digest(segments);
    let mut x = std::mem::take(&mut shard.hidden);
    if shard.model.layout().embed {
        x.clear();
        for s in segments {
            let e = shard
                .model
                .embed(&s.tokens)
                .map_err(|e| ModelError::InSequence {
                    seq: s.seq,
                    source: Box::new(e),
                })?;
            x.extend_from_slice(&e);
        }
    } else {
        let links = shard.links.as_mut().ok_or(StepError::NoPreviousStage)?;
        links.recv_hidden_batch(&mut x, rows, h, digest)?;
    }
    let seqs: Vec<u32> = segments.iter().map(|s| s.seq).collect();
    let (model, links, caches) = shard.batch_parts(&seqs);
    let mut batch: Vec<Segment> = segments
        .iter()
        .zip(caches)
        .map(|(s, cache)| Segment {
            seq: s.seq,
            rows: s.tokens.len(),
            pos: s.pos as usize,
            cache,
        })
        .collect();
    let head = model.layout().head;
    match links {
        Some(links) if links.group_size() > 1 => {
            model.forward_layers_segments(&mut x, &mut batch, links as &mut dyn AllReduce)?
        }
        _ => model.forward_layers_segments(&mut x, &mut batch, &mut NoReduce)?,
    }
    drop(batch);
    if !head {
        let links = shard.links.as_mut().ok_or(StepError::NoNextStage)?;
        links.send_hidden_batch(&x, digest)?;
    }
    Ok(x)
}

/// Why the logits did not all go out.
enum Sent {
    /// The coordinator's connection failed: the session ends.
    Conn(NetError),
    Model(ModelError),
}

/// The head on the last row of every segment that wants logits, sent as
/// `LogitRows` and a tensor frame per group.
fn send_logits(
    conn: &mut Connection,
    shard: &mut Shard,
    x: &[f32],
    segments: &[StepSegment],
) -> Result<(), Sent> {
    let last: Vec<usize> = last_rows(segments.iter().map(|s| s.tokens.len()))
        .into_iter()
        .zip(segments)
        .filter(|(_, s)| s.logits)
        .map(|(r, _)| r)
        .collect();
    let vocab = shard.model.layout().vocab.len();
    let mut broken: Option<NetError> = None;
    let result = shard.model.head_segments(x, &last, &mut |logits| {
        let rows = logits.len() / vocab.max(1);
        let sent = send_rows(conn, logits, rows, vocab);
        sent.map_err(|e| {
            broken = Some(e);
            ModelError::Other("the coordinator's connection failed".into())
        })
    });
    match (broken, result) {
        (Some(e), _) => Err(Sent::Conn(e)),
        (None, Err(e)) => Err(Sent::Model(e)),
        (None, Ok(())) => Ok(()),
    }
}

fn send_rows(
    conn: &mut Connection,
    logits: &[f32],
    rows: usize,
    vocab: usize,
) -> Result<(), NetError> {
    conn.send_control(&FromNode::LogitRows { rows: rows as u32 })?;
    let header = TensorHeader::new(
        TensorDtype::F32,
        &[rows as u64, vocab as u64],
        TensorTag::Logits.code(),
    )
    .map_err(|e| NetError::Encode {
        peer: conn.peer().to_string(),
        what: "logits",
        problem: e.to_string(),
    })?;
    conn.send_tensor(&header, crate::parallel::f32_bytes(logits))
}
