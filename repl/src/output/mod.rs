//! What a command returns: structured values, never pre-rendered text, so
//! the shell, a transcript and a notebook each draw the same result their
//! own way.
//!
//! Measured values (timings, rates, byte counts that depend on the machine,
//! addresses, paths) are marked as [`Varies`]: a transcript renders them as
//! placeholders such as `{time}`, which is what lets a recorded session
//! replay exactly while still checking every deterministic character.

mod rich;
pub mod text;
pub mod views;

pub use rich::{Fragment, Rich, Varies};

use serde::Serialize;
use shardlab_engine::model::generate::GenerationStats;
use shardlab_engine::orchestrator::report::{
    BenchReport, DiscoveryReport, LinksReport, NodesReport, PlanReport, RankReport, StatsReport,
    TraceReport,
};

/// The result of one command.
#[derive(Debug, Clone, Serialize)]
pub enum Output {
    /// Nothing to show (an empty line, a setting changed silently).
    Empty,
    Text(Rich),
    Table(Table),
    /// A finished generation. Its text already went to the sink as it was
    /// produced; `text` is kept for front ends that show it afterwards.
    Generation(GenerationReport),
    /// Horizontal timelines, one row per node (`:trace`).
    Bars(BarChart),
    /// A typed report from the engine, with how this crate draws it.
    /// Renderers that want the figures themselves (JSON, charts) read
    /// `report`; the others draw `view`.
    Report(Box<ReportOutput>),
    /// The command failed; the session goes on.
    Error(Rich),
    /// Several parts in order, e.g. a plan followed by what loading did.
    Many(Vec<Output>),
    /// The session should end (`:quit`).
    Quit,
}

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub title: Option<Rich>,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Rich>>,
    /// Lines printed under the table.
    pub notes: Vec<Rich>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table {
            title: None,
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn titled(mut self, title: impl Into<Rich>) -> Self {
        self.title = Some(title.into());
        self
    }

    pub fn row(&mut self, cells: Vec<Rich>) {
        self.rows.push(cells);
    }

    pub fn note(&mut self, line: impl Into<Rich>) {
        self.notes.push(line.into());
    }
}

/// The engine's typed results, one variant per report.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    Nodes(NodesReport),
    /// `:connect auto`: the nodes found on the LAN and what became of each.
    Discovery(DiscoveryReport),
    Links(LinksReport),
    Plan(PlanReport),
    /// `:plan best`: every layout ranked by predicted speed.
    Rank(RankReport),
    Stats(StatsReport),
    Trace(TraceReport),
    Bench(BenchReport),
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportOutput {
    pub report: Report,
    /// The report as tables or timelines.
    pub view: Output,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerationReport {
    pub text: String,
    pub stats: GenerationStats,
    /// Set when the generation ran across a cluster, for the summary line.
    pub layout: Option<String>,
}

/// What one bar segment is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BarKind {
    Compute,
    Expert,
    Send,
    Wait,
    Receive,
}

#[derive(Debug, Clone, Serialize)]
pub struct BarSegment {
    pub kind: BarKind,
    /// Seconds from the start of the timeline.
    pub start: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BarRow {
    pub label: Rich,
    pub segments: Vec<BarSegment>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BarChart {
    pub title: Rich,
    pub rows: Vec<BarRow>,
    /// The length of the time axis in seconds.
    pub span: f64,
    pub notes: Vec<Rich>,
}

impl Output {
    pub fn text(t: impl Into<Rich>) -> Self {
        Output::Text(t.into())
    }

    pub fn error(t: impl Into<Rich>) -> Self {
        Output::Error(t.into())
    }

    /// `report` drawn as `view`.
    pub fn report(report: Report, view: Output) -> Self {
        Output::Report(Box::new(ReportOutput { report, view }))
    }

    pub fn is_error(&self) -> bool {
        match self {
            Output::Error(_) => true,
            Output::Report(r) => r.view.is_error(),
            Output::Many(parts) => parts.iter().any(Output::is_error),
            _ => false,
        }
    }

    /// Appends `next`, flattening nested lists.
    pub fn then(self, next: Output) -> Output {
        match (self, next) {
            (Output::Empty, n) => n,
            (s, Output::Empty) => s,
            (Output::Many(mut a), Output::Many(b)) => {
                a.extend(b);
                Output::Many(a)
            }
            (Output::Many(mut a), n) => {
                a.push(n);
                Output::Many(a)
            }
            (s, n) => Output::Many(vec![s, n]),
        }
    }
}
