//! Batched steps across the cluster: one `StepMany` carries a step of
//! several sequences, and every node runs it as one forward pass. A batch
//! of more than `PREFILL_BATCH` rows goes as several such steps (cut as
//! the engine cuts passes, in [`Cluster::submit`]), so each step's
//! deadline covers one pass.

use super::{Cluster, ClusterError};
use crate::cluster::messages::{FromNode, Phase, StepMetrics};
use crate::cluster::node::MAX_SEQUENCES;
use crate::model::generate::SeqStep;
use crate::model::segments::repeated;
use crate::net::TensorDtype;

impl Cluster {
    /// Runs one step of every listed sequence (each at most once) as one
    /// forward pass on each node; returns each one's last logits, in order.
    pub fn step_many(&mut self, steps: &[SeqStep]) -> Result<Vec<Vec<f32>>, ClusterError> {
        self.step_many_observed(steps, &mut |_| {})
    }

    /// [`Self::step_many`], calling `on_step` with every node's metrics
    /// after each step the nodes ran (one, unless the batch had more than
    /// `PREFILL_BATCH` rows).
    pub fn step_many_observed(
        &mut self,
        steps: &[SeqStep],
        on_step: &mut dyn FnMut(&[Option<StepMetrics>]),
    ) -> Result<Vec<Vec<f32>>, ClusterError> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        if !self.in_flight.is_empty() {
            return Err(ClusterError::cluster(
                batch_phase(steps),
                "steps are still in flight; collect them before a batched step",
            ));
        }
        self.submit(steps)?;
        let out = self.collect_observed(on_step)?;
        Ok(out.into_iter().map(|(_, logits)| logits).collect())
    }

    /// Refuses a batch the nodes would refuse, before any node sees it.
    pub(super) fn check_steps(&self, steps: &[SeqStep], phase: Phase) -> Result<(), ClusterError> {
        let bad = |m: String| Err(ClusterError::cluster(phase, m));
        if steps.is_empty() {
            return bad("a step needs at least one sequence".into());
        }
        let seqs: Vec<u32> = steps.iter().map(|s| s.seq).collect();
        if let Some(seq) = repeated(&seqs) {
            return bad(format!("sequence {seq} appears twice in one step"));
        }
        let context = self.loaded.as_ref().map_or(0, |l| l.context);
        for s in steps {
            if s.seq >= MAX_SEQUENCES {
                return bad(format!(
                    "sequence id {} is out of range (at most {MAX_SEQUENCES} sequences)",
                    s.seq
                ));
            }
            if s.tokens.is_empty() {
                return bad(format!("sequence {}: no tokens to run", s.seq));
            }
            if s.pos + s.tokens.len() > context {
                return bad(format!(
                    "sequence {}: position {} is past the context of {context} tokens",
                    s.seq,
                    s.pos + s.tokens.len()
                ));
            }
        }
        Ok(())
    }

    /// Gathers one batched step's answers: from each head node `rows`
    /// logits rows (its vocabulary slice of each), then every node's
    /// `StepDone`, within the deadline of a step of `step_rows` rows in
    /// all. Errors as [`Cluster::collect`]'s.
    pub(super) fn gather_rows(
        &mut self,
        rows: usize,
        step_rows: usize,
        phase: Phase,
    ) -> Result<Vec<Vec<f32>>, ClusterError> {
        let vocab = self.loaded.as_ref().map_or(0, |l| l.config.vocab);
        let mut out = vec![vec![f32::NEG_INFINITY; vocab]; rows];
        self.gather(phase, step_rows, |turn| {
            let (range, head) = (turn.vocab.clone(), turn.head);
            let mut got = 0usize;
            loop {
                match turn.recv_control()? {
                    FromNode::LogitRows { rows: r } => {
                        let r = r as usize;
                        if !head || got + r > rows {
                            return Err(turn.fail(format!(
                                "sent {} logits rows, expected {rows}",
                                got + r
                            )));
                        }
                        let h = turn.recv_tensor()?;
                        let n = range.len();
                        if h.dtype() != TensorDtype::F32 || h.dims() != [r as u64, n as u64] {
                            return Err(turn.fail(format!(
                                "sent logits of shape {:?}, expected [{r}, {n}] for vocab {range:?}",
                                h.dims()
                            )));
                        }
                        for (row, bytes) in out[got..got + r]
                            .iter_mut()
                            .zip(turn.buf.chunks_exact(4 * n))
                        {
                            for (o, c) in row[range.clone()].iter_mut().zip(bytes.chunks_exact(4)) {
                                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                            }
                        }
                        got += r;
                    }
                    FromNode::StepDone { metrics, .. } => {
                        *turn.last_step = Some(metrics);
                        if head && got != rows {
                            return Err(turn.fail(format!(
                                "sent {got} logits rows, expected {rows}"
                            )));
                        }
                        return Ok(if head { range.len() } else { 0 });
                    }
                    FromNode::Error {
                        message,
                        peer_closed,
                        ..
                    } => return Err(turn.reported(message, peer_closed)),
                    other => return Err(turn.fail(format!("unexpected reply {other:?}"))),
                }
            }
        })?;
        Ok(out)
    }
}

/// The phase of a batch: a prefill if any step is one.
pub(super) fn batch_phase(steps: &[SeqStep]) -> Phase {
    if steps
        .iter()
        .any(|s| Phase::of_step(s.tokens.len(), s.pos) == Phase::Prefill)
    {
        Phase::Prefill
    } else {
        Phase::Decode
    }
}
