//! Plans and sharding: how the open model splits over the nodes, checking
//! it fits, and applying it (streaming each node its slices, or loading the
//! whole model into this process when there are no nodes).

use std::time::Instant;

use crate::cluster::coordinator::{LoadProgress, LoadSummary};
use crate::metrics::memory::system_memory_bytes;
use crate::model::loader;
use crate::shard::plan::{check_fits, plan, LayoutRequest, NodeBudget, Plan};

use super::recovery::load_plan;
use super::report::{PlanReport, PlanRow};
use super::{Orchestrator, OrchestratorError, Runner};

/// What the in-process "node" is called in plans.
pub const THIS_PROCESS: &str = "this process";

/// What applying a layout did.
#[derive(Debug, Clone)]
pub struct ShardOutcome {
    pub plan: PlanReport,
    /// Nodes dropped first because they had failed ("node1 (addr)").
    pub dropped: Vec<String>,
    /// Nodes lost earlier that answered at their address again and joined.
    pub readmitted: Vec<String>,
    /// What the nodes reported; `None` when the model loaded in this process.
    pub load: Option<LoadSummary>,
    pub seconds: f64,
}

impl Orchestrator {
    /// The nodes a plan is made over: the live cluster nodes, or this
    /// process (with its free memory as budget) when none are connected.
    pub(super) fn budgets(
        &self,
        request: &LayoutRequest,
    ) -> Result<Vec<NodeBudget>, OrchestratorError> {
        match &self.nodes {
            Some(n) => Ok(n.cluster.budgets()),
            None if *request == LayoutRequest::Single => Ok(vec![NodeBudget {
                name: THIS_PROCESS.into(),
                budget_bytes: system_memory_bytes().map_or(u64::MAX, |(_, free)| free),
                speed: 1.0,
            }]),
            None => Err(OrchestratorError::LayoutNeedsNodes {
                layout: request.to_string(),
            }),
        }
    }

    /// The plan for `request` with each node's prediction, and whether
    /// `shard` would refuse it. Nothing loads.
    pub fn plan(&mut self, request: &LayoutRequest) -> Result<PlanReport, OrchestratorError> {
        self.calibrate()?;
        let m = self.require_model()?;
        let summary = m.summary()?;
        let budgets = self.budgets(request)?;
        let p = plan(summary, &budgets, request, self.kv_spec()?)?;
        let refusal = check_fits(summary, &p, &budgets)
            .err()
            .map(|e| e.to_string());
        Ok(self.plan_report(p, refusal))
    }

    /// The report for `plan`, with its predicted speed for the workload set.
    fn plan_report(&self, plan: Plan, refusal: Option<String>) -> PlanReport {
        let (speed, speed_missing) = if plan.nodes.is_empty() {
            (
                None,
                Some("the model runs unplanned in this process".to_string()),
            )
        } else {
            match self.predict(&plan, self.workload) {
                Ok(p) => (Some(p), None),
                Err(e) => (None, Some(e.to_string())),
            }
        };
        let config = self.model.as_ref().map(|m| &m.config);
        let rows = plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, np)| PlanRow {
                node: i,
                kv_heads: config.map_or(0..0, |c| np.layout.kv_heads(c)),
                budget_fixed: self
                    .nodes
                    .as_ref()
                    .is_some_and(|n| n.budget_is_fixed(&np.name)),
            })
            .collect();
        PlanReport {
            plan,
            rows,
            refusal,
            speed,
            speed_missing,
        }
    }

    /// Applies `request`: drops failed nodes, plans, checks the fit, frees
    /// what ran before and loads. With no nodes, `single` loads the whole
    /// model into this process.
    pub fn shard(
        &mut self,
        request: &LayoutRequest,
        progress: &(dyn Fn(LoadProgress) + Sync),
        on_local_load: &mut dyn FnMut(&str),
    ) -> Result<ShardOutcome, OrchestratorError> {
        self.require_model()?;
        let mut dropped = Vec::new();
        let mut readmitted = Vec::new();
        if let Some(n) = self.nodes.as_mut() {
            dropped = n.cluster.remove_failed();
            readmitted = n.cluster.readmit();
            if n.cluster.nodes().is_empty() {
                self.nodes = None;
                self.set_runner(Runner::Idle);
                return Err(OrchestratorError::NoSurvivors);
            }
        }
        // Nodes that joined since the last plan measure themselves, so the
        // split follows the same speeds `:plan` showed.
        self.calibrate()?;
        let m = self.require_model()?;
        let budgets = self.budgets(request)?;
        let cache = self.kv_spec()?;
        let p = match &m.summary {
            Some(summary) => {
                let p = plan(summary, &budgets, request, cache)?;
                check_fits(summary, &p, &budgets)?;
                Some(p)
            }
            // A Hugging Face directory runs whole in this process, unplanned.
            None if self.nodes.is_none() && *request == LayoutRequest::Single => None,
            None => return Err(m.summary().err().unwrap_or(OrchestratorError::NoModel)),
        };
        self.unload();
        let started = Instant::now();
        let load = if self.nodes.is_some() {
            let p = p.as_ref().ok_or(OrchestratorError::NoModel)?;
            let summary = self.load_on_cluster(p, progress)?;
            self.set_runner(Runner::Cluster(request.clone()));
            Some(summary)
        } else {
            self.load_in_process(on_local_load)?;
            None
        };
        self.after_load();
        let plan = match p {
            Some(p) => self.plan_report(p, None),
            None => self.plan_report(
                Plan {
                    request: request.clone(),
                    context: cache.context,
                    kv: cache.kv,
                    nodes: Vec::new(),
                    stages: Vec::new(),
                },
                None,
            ),
        };
        Ok(ShardOutcome {
            plan,
            dropped,
            readmitted,
            load,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Loads the layout in place again (after a benchmark tried others).
    pub(super) fn reshard(&mut self, request: &LayoutRequest) -> Result<(), OrchestratorError> {
        self.shard(request, &|_| {}, &mut |_| {}).map(|_| ())
    }

    /// Streams each node its slices.
    fn load_on_cluster(
        &mut self,
        p: &Plan,
        progress: &(dyn Fn(LoadProgress) + Sync),
    ) -> Result<LoadSummary, OrchestratorError> {
        let wire = self.wire;
        let (Some(m), Some(n)) = (self.model.as_ref(), self.nodes.as_mut()) else {
            return Err(OrchestratorError::NoModel);
        };
        load_plan(&mut n.cluster, m, p, wire, progress)
    }

    fn load_in_process(&mut self, on_load: &mut dyn FnMut(&str)) -> Result<(), OrchestratorError> {
        let m = self.require_model()?;
        on_load(&m.name);
        let loaded = loader::load(&m.source, m.context(self.context), self.kv)?;
        self.set_runner(Runner::InProcess(Box::new(loaded.transformer)));
        Ok(())
    }

    /// Fresh counters for whatever runs now.
    pub(super) fn after_load(&mut self) {
        self.cached.clear();
        self.tokens_since_load = 0;
        match &self.nodes {
            Some(n) if self.is_sharded() => {
                self.monitor.reset(n.cluster.nodes().len());
                self.monitor.name_nodes(
                    n.cluster
                        .nodes()
                        .iter()
                        .map(|h| (h.name.clone(), h.label())),
                );
            }
            _ => self.monitor.reset(0),
        }
    }
}
