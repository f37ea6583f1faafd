//! `:trace`: the last step (one decoded token) on every node, as a
//! timeline: when each node computed, waited on peers, sent and received.

use super::{Session, SessionError};
use crate::output::{views, Output, Report};

impl Session {
    pub(super) fn trace(&mut self) -> Result<Output, SessionError> {
        let report = self.core.trace()?;
        let chart = views::trace(&report, &self.literals());
        Ok(Output::report(Report::Trace(report), Output::Bars(chart)))
    }
}
