//! Predicted speed: calibrating the nodes (at connect, and again for links
//! whose emulation changed), predicting a plan's tokens per second, and
//! ranking every layout of the connected nodes (`:plan best`,
//! `:shard best`, `--layout auto`).

use crate::calibration::{self, Calibration};
use crate::shard::plan::speed::{predict_speed, LinkCost, SpeedInputs, SpeedPrediction, Workload};
use crate::shard::plan::{check_fits, plan, LayoutRequest, Plan};

use super::report::{Objective, RankReport, RankRow};
use super::{Orchestrator, OrchestratorError};

impl Orchestrator {
    /// Calibrates the nodes not yet calibrated and measures the links not
    /// yet measured (nothing to do when all are).
    pub fn calibrate(&mut self) -> Result<(), OrchestratorError> {
        if let Some(n) = self.nodes.as_mut() {
            n.cluster.calibrate()?;
        }
        Ok(())
    }

    /// Each plan node's calibration and the coordinator's link to it, or
    /// this process's calibration when the model runs here.
    fn speed_inputs(&self) -> (Vec<Calibration>, Vec<LinkCost>) {
        match &self.nodes {
            Some(n) => n
                .cluster
                .nodes()
                .iter()
                .filter(|h| h.is_alive())
                .filter_map(|h| Some((h.calibration.clone()?, h.link_cost?)))
                .unzip(),
            None => (
                vec![self.calibration_here(rayon::current_num_threads())],
                Vec::new(),
            ),
        }
    }

    /// This process's calibration at `threads` threads (kept under the
    /// store's home, as nodes keep theirs).
    pub(super) fn calibration_here(&self, threads: usize) -> Calibration {
        let dir = self.config.store.home().join("calibration");
        calibration::cached(threads, Some(&dir))
    }

    /// The predicted speed of `plan` for `workload`.
    pub fn predict(
        &self,
        plan: &Plan,
        workload: Workload,
    ) -> Result<SpeedPrediction, OrchestratorError> {
        let m = self.require_model()?;
        let summary = m.summary()?;
        let (nodes, links) = self.speed_inputs();
        Ok(predict_speed(
            summary,
            plan,
            &SpeedInputs {
                nodes: &nodes,
                links: &links,
                wire: self.wire,
                workload,
            },
        )?)
    }

    /// Every layout the connected nodes can take (one node: single; more:
    /// tensor, pipeline, each hybrid shape, expert for a mixture of
    /// experts), ranked by predicted `objective`; ones that do not fit last.
    pub fn rank_layouts(
        &mut self,
        objective: Objective,
        workload: Workload,
    ) -> Result<RankReport, OrchestratorError> {
        self.calibrate()?;
        let m = self.require_model()?;
        let summary = m.summary()?;
        let n = self.nodes.as_ref().map_or(1, |s| s.cluster.budgets().len());
        let mut candidates = if n <= 1 {
            vec![LayoutRequest::Single]
        } else {
            vec![
                LayoutRequest::Tensor,
                LayoutRequest::Pipeline { layers: None },
            ]
        };
        for t in 2..n {
            if n.is_multiple_of(t) && n / t >= 2 {
                candidates.push(LayoutRequest::Hybrid {
                    tensor: t,
                    pipeline: n / t,
                });
            }
        }
        if n > 1 && summary.config.moe.is_some() {
            candidates.push(LayoutRequest::Expert);
        }
        let cache = self.kv_spec()?;
        let mut rows = Vec::new();
        for layout in candidates {
            let budgets = self.budgets(&layout)?;
            let row = match plan(summary, &budgets, &layout, cache) {
                Ok(p) => RankRow {
                    refusal: check_fits(summary, &p, &budgets)
                        .err()
                        .map(|e| e.to_string()),
                    prediction: self.predict(&p, workload).ok(),
                    layout,
                },
                Err(e) => RankRow {
                    layout,
                    refusal: Some(e.to_string()),
                    prediction: None,
                },
            };
            rows.push(row);
        }
        let key = |r: &RankRow| -> f64 {
            match (&r.refusal, &r.prediction) {
                (None, Some(p)) => match objective {
                    Objective::Decode => p.decode_tok_s,
                    Objective::Prefill => p.prefill_tok_s,
                },
                _ => -1.0,
            }
        };
        rows.sort_by(|a, b| key(b).total_cmp(&key(a)));
        Ok(RankReport {
            objective,
            workload,
            rows,
        })
    }

    /// The fastest layout that fits, or why there is none.
    pub fn best_layout(
        &mut self,
        objective: Objective,
        workload: Workload,
    ) -> Result<LayoutRequest, OrchestratorError> {
        let ranking = self.rank_layouts(objective, workload)?;
        match ranking.best() {
            Some(l) => Ok(l.clone()),
            None => Err(OrchestratorError::NothingFits {
                tried: ranking
                    .rows
                    .iter()
                    .map(|r| {
                        format!(
                            "{}: {}",
                            r.layout,
                            r.refusal.as_deref().unwrap_or("no prediction")
                        )
                    })
                    .collect(),
            }),
        }
    }
}
