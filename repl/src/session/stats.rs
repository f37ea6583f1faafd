//! `:stats`: where the memory and the time went, per node, since the last
//! `:shard`, and the last generation's rates.

use super::{Session, SessionError};
use crate::output::{views, Output, Report};

impl Session {
    pub(super) fn stats(&mut self) -> Result<Output, SessionError> {
        let mut report = self.core.stats()?;
        report.serving = self.serving_figures();
        let table = views::stats(&report, &self.literals());
        Ok(Output::report(Report::Stats(report), Output::Table(table)))
    }
}
