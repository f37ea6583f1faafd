//! Generation steps across the cluster: the cluster as a [`Backend`].

use super::step_many::batch_phase;
use super::{Cluster, ClusterError, CONTROL_DEADLINE};
use crate::cluster::messages::{FromNode, Phase, StepMetrics, StepSegment, ToNode};
use crate::model::error::ModelError;
use crate::model::generate::{Backend, SeqStep, SequenceBackend};
use crate::model::segments::passes;
use crate::net::TensorDtype;

/// One pass sent to every node and not yet collected.
pub(super) struct InFlight {
    phase: Phase,
    /// The pass's rows; they size the wait for it.
    rows: usize,
    /// Sent as a single `Step` (whose head always answers with logits)
    /// rather than a `StepMany`.
    single: bool,
    /// The steps of its batch whose last row this pass runs: (index in the
    /// batch, sequence). Their logits come back in this order.
    wanted: Vec<(usize, u32)>,
    /// The last pass of its batch: collecting it completes the batch.
    ends_batch: bool,
}

impl Cluster {
    /// Runs `tokens` of sequence 0 on every node; returns the gathered
    /// logits of the last. A long prompt goes as steps of at most
    /// `PREFILL_BATCH` tokens ([`Cluster::submit`]), so each step's
    /// deadline covers one batch however long the prompt is.
    pub fn step(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, ClusterError> {
        self.submit(&[SeqStep {
            seq: 0,
            tokens: tokens.to_vec(),
            pos,
        }])?;
        let mut out = self.collect()?;
        out.pop().map(|(_, logits)| logits).ok_or_else(|| {
            ClusterError::cluster(
                Phase::of_step(tokens.len(), pos),
                "a step returned no logits",
            )
        })
    }

    /// Batches sent with [`Cluster::submit`] and not yet collected.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().filter(|p| p.ends_batch).count()
    }

    /// Sends one step of each listed sequence (each at most once) to every
    /// node without waiting: one forward pass on each node, or one per
    /// `PREFILL_BATCH` rows (a `Step` for a pass of one sequence, else a
    /// `StepMany`). Several batches may be in flight, and pipeline stages
    /// work on them at once; [`Cluster::collect`] returns their logits in
    /// the order they were submitted.
    pub fn submit(&mut self, steps: &[SeqStep]) -> Result<(), ClusterError> {
        let phase = batch_phase(steps);
        self.check_steps(steps, phase)?;
        let shape: Vec<(usize, usize)> = steps.iter().map(|s| (s.pos, s.tokens.len())).collect();
        let passes = passes(&shape);
        let last = passes.len().saturating_sub(1);
        for (i, pass) in passes.into_iter().enumerate() {
            let mut wanted = Vec::new();
            let segments: Vec<StepSegment> = pass
                .iter()
                .map(|p| {
                    let step = &steps[p.segment];
                    let from = p.pos - step.pos;
                    let logits = from + p.rows == step.tokens.len();
                    if logits {
                        wanted.push((p.segment, step.seq));
                    }
                    StepSegment {
                        seq: step.seq,
                        pos: p.pos as u32,
                        tokens: step.tokens[from..from + p.rows].to_vec(),
                        logits,
                    }
                })
                .collect();
            let rows = pass.iter().map(|p| p.rows).sum();
            let single = segments.len() == 1;
            let msg = match <[StepSegment; 1]>::try_from(segments) {
                Ok([s]) => ToNode::Step {
                    pos: s.pos,
                    tokens: s.tokens,
                    seq: s.seq,
                },
                Err(segments) => ToNode::StepMany { segments },
            };
            self.send_step(&msg, phase)?;
            self.in_flight.push_back(InFlight {
                phase,
                rows,
                single,
                wanted,
                ends_batch: i == last,
            });
        }
        Ok(())
    }

    /// Sends a step message to every node, once the cluster is whole and
    /// loaded; a failed send marks the cluster broken.
    pub(super) fn send_step(&mut self, msg: &ToNode, phase: Phase) -> Result<(), ClusterError> {
        if let Some(e) = &self.broken {
            return Err(ClusterError::new(
                &e.node,
                phase,
                format!("the cluster must be re-planned after: {e}"),
            ));
        }
        let Some(loaded) = &self.loaded else {
            return Err(ClusterError::cluster(phase, "no model is loaded"));
        };
        let planned = loaded.plan.nodes.len();
        let live = self.nodes.iter().filter(|n| n.is_alive()).count();
        if live != planned {
            let e = self.left_the_cluster(phase);
            self.broken = Some(e.clone());
            return Err(e);
        }
        let mut errors: Vec<ClusterError> = Vec::new();
        for node in self.nodes.iter_mut().filter(|n| n.is_alive()) {
            let label = node.label();
            let sent = node.conn(phase).and_then(|c| {
                c.send_control(msg)
                    .map_err(|e| ClusterError::new(&label, phase, e))
            });
            if let Err(e) = sent {
                node.mark_failed(&e.message);
                errors.push(e);
            }
        }
        if !errors.is_empty() {
            let e = self.root_cause(errors, phase);
            self.broken = Some(e.clone());
            return Err(e);
        }
        Ok(())
    }

    /// Waits for the oldest batch in flight; returns each of its steps'
    /// sequence and last logits, in the order the steps were given.
    pub fn collect(&mut self) -> Result<Vec<(u32, Vec<f32>)>, ClusterError> {
        self.collect_observed(&mut |_| {})
    }

    /// [`Self::collect`], calling `on_step` with every node's metrics after
    /// each pass the nodes ran.
    pub fn collect_observed(
        &mut self,
        on_step: &mut dyn FnMut(&[Option<StepMetrics>]),
    ) -> Result<Vec<(u32, Vec<f32>)>, ClusterError> {
        let mut out: Vec<(usize, u32, Vec<f32>)> = Vec::new();
        loop {
            let Some(pass) = self.in_flight.pop_front() else {
                return Err(ClusterError::cluster(
                    Phase::Control,
                    "no step is in flight to collect",
                ));
            };
            if pass.single {
                // A single step wants at most its one segment's logits.
                let logits = self.gather_logits(pass.phase, pass.rows)?;
                if let Some(&(i, seq)) = pass.wanted.first() {
                    out.push((i, seq, logits));
                }
            } else {
                let rows = self.gather_rows(pass.wanted.len(), pass.rows, pass.phase)?;
                out.extend(
                    pass.wanted
                        .iter()
                        .zip(rows)
                        .map(|(&(i, seq), l)| (i, seq, l)),
                );
            }
            on_step(&self.last_step);
            if pass.ends_batch {
                out.sort_by_key(|(i, _, _)| *i);
                return Ok(out.into_iter().map(|(_, seq, l)| (seq, l)).collect());
            }
        }
    }

    /// Gathers a single step's logits from the head nodes (each its slice
    /// of the vocabulary) and every node's `StepDone`.
    fn gather_logits(&mut self, phase: Phase, rows: usize) -> Result<Vec<f32>, ClusterError> {
        let vocab = self.loaded.as_ref().map_or(0, |l| l.config.vocab);
        // Lent to the receive below and put back, so its allocation is
        // reused step after step.
        let mut logits = std::mem::take(&mut self.logits);
        logits.clear();
        logits.resize(vocab, f32::NEG_INFINITY);
        let gathered = self.gather(phase, rows, |turn| match turn.recv_control()? {
            FromNode::StepDone {
                logits: sent,
                metrics,
            } => {
                *turn.last_step = Some(metrics);
                if !sent {
                    return Ok(0);
                }
                let h = turn.recv_tensor()?;
                let vocab_range = turn.vocab.clone();
                let n = vocab_range.len();
                if !turn.head || h.dtype() != TensorDtype::F32 || h.numel() != Some(n as u64) {
                    return Err(turn.fail(format!(
                        "sent logits of shape {:?}, expected {n} for vocab {vocab_range:?}",
                        h.dims()
                    )));
                }
                for (o, c) in logits[vocab_range].iter_mut().zip(turn.buf.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
                Ok(n)
            }
            FromNode::Error {
                message,
                peer_closed,
                ..
            } => Err(turn.reported(message, peer_closed)),
            other => Err(turn.fail(format!("unexpected reply {other:?}"))),
        });
        self.logits = logits;
        gathered?;
        Ok(self.logits.clone())
    }

    /// The error for a step on a cluster that lost a node: names the node
    /// that left, not "the cluster".
    pub(super) fn left_the_cluster(&self, phase: Phase) -> ClusterError {
        let gone = self
            .nodes
            .iter()
            .find(|n| !n.is_alive())
            .map_or_else(|| "the cluster".to_string(), |n| n.label());
        ClusterError::new(
            &gone,
            phase,
            "it left the cluster; re-plan on the survivors",
        )
    }

    /// Picks the error that names the node that actually failed: a node
    /// that is gone beats a survivor complaining about a peer.
    pub(super) fn root_cause(&mut self, errors: Vec<ClusterError>, phase: Phase) -> ClusterError {
        // Probe the others quickly: a dead peer shows up as a dead
        // connection. The replies to steps still in flight come first; they
        // are read and dropped, so each live connection is in step again.
        for node in self.nodes.iter_mut().filter(|n| n.is_alive()) {
            if node.resync(phase, CONTROL_DEADLINE / 5).is_err() {
                node.mark_failed("did not answer a ping after a failed step");
            }
        }
        self.in_flight.clear();
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !n.is_alive())
            .map(|n| n.label())
            .collect();
        let detail: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.node, e.message))
            .collect();
        match dead.first() {
            Some(node) => {
                let own = errors.iter().find(|e| &e.node == node);
                ClusterError {
                    node: node.clone(),
                    phase,
                    message: match own {
                        Some(e) => e.message.clone(),
                        None => format!("lost ({})", detail.join("; ")),
                    },
                }
            }
            None => errors
                .into_iter()
                .next()
                .unwrap_or_else(|| ClusterError::cluster(phase, "step failed")),
        }
    }

    /// Drops cached positions of sequence 0 from `pos` on, everywhere.
    pub fn truncate_all(&mut self, pos: usize) -> Result<(), ClusterError> {
        self.truncate_seq(0, pos)
    }

    /// Drops cached positions of sequence `seq` from `pos` on, everywhere.
    pub fn truncate_seq(&mut self, seq: u32, pos: usize) -> Result<(), ClusterError> {
        if self.loaded.is_none() {
            return Ok(());
        }
        if !self.in_flight.is_empty() {
            return Err(ClusterError::cluster(
                Phase::Control,
                "steps are still in flight; collect them before truncating",
            ));
        }
        for node in self.nodes.iter_mut().filter(|n| n.is_alive()) {
            node.request(
                &ToNode::Truncate {
                    pos: pos as u32,
                    seq,
                },
                Phase::Control,
                CONTROL_DEADLINE,
            )?;
        }
        Ok(())
    }
}

impl Cluster {
    /// Each live node's KV cache for sequence `seq`: (node label, positions,
    /// hex SHA-256 of the cached bits).
    pub fn kv_digests(&mut self, seq: u32) -> Result<Vec<(String, u32, String)>, ClusterError> {
        let mut out = Vec::new();
        for node in self.nodes.iter_mut().filter(|n| n.is_alive()) {
            let label = node.label();
            match node.request(&ToNode::KvDigest { seq }, Phase::Control, CONTROL_DEADLINE)? {
                FromNode::KvDigest { positions, sha256 } => out.push((label, positions, sha256)),
                other => {
                    return Err(ClusterError::new(
                        &label,
                        Phase::Control,
                        format!("unexpected reply {other:?}"),
                    ))
                }
            }
        }
        Ok(out)
    }
}

impl Backend for Cluster {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, ModelError> {
        Ok(self.step(tokens, pos)?)
    }

    fn truncate(&mut self, pos: usize) -> Result<(), ModelError> {
        Ok(self.truncate_all(pos)?)
    }

    fn context(&self) -> usize {
        self.loaded.as_ref().map_or(0, |l| l.context)
    }
}

impl SequenceBackend for Cluster {
    fn submit(&mut self, steps: &[SeqStep]) -> Result<(), ModelError> {
        Ok(Cluster::submit(self, steps)?)
    }

    fn collect(&mut self) -> Result<Vec<(u32, Vec<f32>)>, ModelError> {
        Ok(Cluster::collect(self)?)
    }

    fn reset(&mut self, seq: u32) -> Result<(), ModelError> {
        Ok(self.truncate_seq(seq, 0)?)
    }

    fn context(&self) -> usize {
        self.loaded.as_ref().map_or(0, |l| l.context)
    }

    fn lanes(&self) -> usize {
        self.loaded
            .as_ref()
            .map_or(1, |l| l.plan.stages.len().max(1))
    }
}
