//! `shardlab plan`'s text: the shell's `:plan` view (each node's share and
//! predicted memory, with the predicted rates under it) or its `:plan best`
//! view (every layout ranked), rendered as plain text.

use shardlab_engine::orchestrator::report::{PlanReport, RankReport};
use shardlab_repl::output::{text, views, Output};

pub fn plan(report: &PlanReport) {
    print!(
        "{}",
        text::render(&Output::Table(views::plan(report, &[])), false)
    );
    if let Some(refusal) = &report.refusal {
        println!("does not fit: {refusal}");
    }
}

/// Every layout, fastest predicted first; the ones that do not fit last.
pub fn ranking(report: &RankReport) {
    print!(
        "{}",
        text::render(&Output::Table(views::rank(report, &[])), false)
    );
    if report.best().is_none() {
        println!("no layout fits");
    }
}
