//! The last step on every node as a timeline, from the live monitor, so it
//! can be read while a generation runs.

use super::report::TraceReport;
use super::{Orchestrator, OrchestratorError, Runner};

impl Orchestrator {
    pub fn trace(&self) -> Result<TraceReport, OrchestratorError> {
        match (&self.runner, self.nodes.as_ref()) {
            (Runner::Cluster(_), Some(_)) => {}
            (Runner::InProcess(_), _) => return Err(OrchestratorError::TraceInProcess),
            _ => return Err(OrchestratorError::TraceNothingSharded),
        }
        self.monitor.trace().ok_or(OrchestratorError::TraceNoStep)
    }
}
