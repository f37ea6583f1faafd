//! The cluster as the backend of a generation, a scoring run or a serving
//! turn. Every collected step is reported to the [`Monitor`]; every step
//! that succeeds is recorded in the tokens each sequence holds; and when a
//! node dies and recovery is on, the cluster is re-planned on the
//! survivors, every sequence's cache is rebuilt by replay, the steps that
//! were in flight are sent again, and the call that failed is retried. The
//! generation loops above never see the failure.

use std::collections::VecDeque;

use crate::cluster::coordinator::{Cluster, ClusterError};
use crate::model::error::ModelError;
use crate::model::generate::{Backend, SeqStep, SequenceBackend};
use crate::shard::plan::LayoutRequest;

use super::monitor::Monitor;
use super::recovery::{recover, Recovery, RecoveryFailed, RecoveryState, Reload};
use super::OrchestratorError;

pub(super) struct ClusterRun<'a> {
    pub cluster: &'a mut Cluster,
    pub monitor: &'a Monitor,
    pub state: &'a mut RecoveryState,
    /// What a recovery reloads; `None` when the model cannot be re-planned.
    pub reload: Option<Reload<'a>>,
    /// The layout in place (changes with a recovery).
    pub layout: LayoutRequest,
    /// Batches submitted and not yet collected, oldest first.
    pending: VecDeque<Vec<SeqStep>>,
}

impl<'a> ClusterRun<'a> {
    pub fn new(
        cluster: &'a mut Cluster,
        monitor: &'a Monitor,
        state: &'a mut RecoveryState,
        reload: Option<Reload<'a>>,
        layout: LayoutRequest,
    ) -> Self {
        Self {
            cluster,
            monitor,
            state,
            reload,
            layout,
            pending: VecDeque::new(),
        }
    }

    /// Counts a step toward the planned kills, and kills those due.
    fn count_step(&mut self) {
        let kills = &mut self.state.planned_kills;
        if kills.is_empty() {
            return;
        }
        let due: Vec<usize> = kills
            .iter()
            .filter(|k| k.after_steps == 0)
            .map(|k| k.index)
            .collect();
        kills.retain(|k| k.after_steps > 0);
        for k in kills.iter_mut() {
            k.after_steps -= 1;
        }
        for index in due {
            if let Some(local) = self.cluster.local_nodes() {
                // A kill that fails leaves the node running; the step goes on.
                let _ = local.kill(index);
            }
        }
    }

    /// Runs `op` on the cluster; after a node failure it recovers and runs
    /// `op` again, as long as recoveries succeed.
    fn attempt<T>(
        &mut self,
        mut op: impl FnMut(&mut Cluster, &Monitor) -> Result<T, ClusterError>,
    ) -> Result<T, ModelError> {
        loop {
            match op(self.cluster, self.monitor) {
                Ok(v) => return Ok(v),
                Err(cause) => self.recover_from(cause)?,
            }
        }
    }

    /// Recovers from `cause` when recovery is on and a node is gone (an
    /// error a live node reported is not a lost node, and is returned).
    fn recover_from(&mut self, cause: ClusterError) -> Result<(), ModelError> {
        let node_lost = self.cluster.nodes().iter().any(|h| !h.is_alive());
        let reload = match &self.reload {
            Some(r) if self.state.enabled && node_lost => r,
            _ => return Err(cause.into()),
        };
        let started = std::time::Instant::now();
        let mut lost = Vec::new();
        loop {
            let attempt = recover(
                self.cluster,
                &self.layout,
                &self.state.held,
                reload,
                &mut lost,
            )
            .and_then(|(layout, replayed)| {
                for batch in &self.pending {
                    self.cluster.submit(batch)?;
                }
                Ok((layout, replayed))
            });
            match attempt {
                Ok((layout, replayed_tokens)) => {
                    let recovery = Recovery {
                        lost,
                        phase: cause.phase,
                        nodes: self
                            .cluster
                            .nodes()
                            .iter()
                            .map(|h| h.name.clone())
                            .collect(),
                        layout: layout.clone(),
                        sequences: self.state.held.sequences(),
                        replayed_tokens,
                        seconds: started.elapsed().as_secs_f64(),
                    };
                    self.layout = layout;
                    self.state.happened(recovery);
                    return Ok(());
                }
                // Another node left during the recovery itself: again, on fewer.
                Err(OrchestratorError::Cluster(_))
                    if self.cluster.nodes().iter().any(|h| !h.is_alive()) => {}
                Err(why) => {
                    self.state.failed = Some(RecoveryFailed {
                        cause: cause.clone(),
                        lost,
                        why: Box::new(why),
                    });
                    return Err(cause.into());
                }
            }
        }
    }
}

impl Backend for ClusterRun<'_> {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, ModelError> {
        self.count_step();
        let logits = self.attempt(|c, monitor| {
            let logits = c.step(tokens, pos)?;
            monitor.record_step(&c.last_step);
            Ok(logits)
        })?;
        self.state.held.ran(0, tokens, pos);
        Ok(logits)
    }
    fn truncate(&mut self, pos: usize) -> Result<(), ModelError> {
        self.attempt(|c, _| c.truncate_all(pos))?;
        self.state.held.truncate(0, pos);
        Ok(())
    }
    fn context(&self) -> usize {
        Backend::context(&*self.cluster)
    }
}

impl SequenceBackend for ClusterRun<'_> {
    fn submit(&mut self, steps: &[SeqStep]) -> Result<(), ModelError> {
        self.count_step();
        self.attempt(|c, _| c.submit(steps))?;
        self.pending.push_back(steps.to_vec());
        Ok(())
    }
    /// Each pass the nodes ran reaches the monitor.
    fn collect(&mut self) -> Result<Vec<(u32, Vec<f32>)>, ModelError> {
        let out = self.attempt(|c, monitor| {
            c.collect_observed(&mut |metrics| monitor.record_step(metrics))
        })?;
        for s in self.pending.pop_front().unwrap_or_default() {
            self.state.held.ran(s.seq, &s.tokens, s.pos);
        }
        Ok(out)
    }
    fn reset(&mut self, seq: u32) -> Result<(), ModelError> {
        self.attempt(|c, _| c.truncate_seq(seq, 0))?;
        self.state.held.truncate(seq, 0);
        Ok(())
    }
    /// One forward pass per step on each node; each step the nodes ran
    /// reaches the monitor.
    fn step_many(&mut self, steps: &[SeqStep]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.count_step();
        let out = self.attempt(|c, monitor| {
            c.step_many_observed(steps, &mut |metrics| monitor.record_step(metrics))
        })?;
        for s in steps {
            self.state.held.ran(s.seq, &s.tokens, s.pos);
        }
        Ok(out)
    }
    fn context(&self) -> usize {
        SequenceBackend::context(&*self.cluster)
    }
    fn lanes(&self) -> usize {
        self.cluster.lanes()
    }
}
