//! `shardlab bench --json`: one JSON object on one line. The first row
//! measured (the layout with --nodes, else this process) is flattened to
//! the top level, every row is in `layouts`, and the whole `BenchReport`'s
//! own fields sit beside them (scripts read `rows[0].result.Ok.stats`).

use serde::Serialize;
use shardlab_engine::orchestrator::report::{BenchReport, BenchRow};

#[derive(Debug, Serialize)]
pub struct BenchJson<'a> {
    /// The first row's figures; absent when no row was measured.
    #[serde(flatten)]
    pub first: Option<LayoutJson<'a>>,
    pub layouts: Vec<LayoutJson<'a>>,
    #[serde(flatten)]
    pub report: &'a BenchReport,
}

/// One row: measured and predicted rates side by side.
#[derive(Debug, Serialize)]
pub struct LayoutJson<'a> {
    pub layout: &'a str,
    pub nodes: usize,
    /// Measured; `null` when the layout failed (`error` says why).
    pub prefill_tok_s: Option<f64>,
    pub decode_tok_s: Option<f64>,
    pub ttft_s: Option<f64>,
    pub predicted_prefill_tok_s: Option<f64>,
    pub predicted_decode_tok_s: Option<f64>,
    pub predicted_ttft_s: Option<f64>,
    /// (measured - predicted) / predicted.
    pub prefill_error: Option<f64>,
    pub decode_error: Option<f64>,
    pub error: Option<&'a str>,
}

impl<'a> LayoutJson<'a> {
    fn new(row: &'a BenchRow) -> Self {
        let measured = row.result.as_ref().ok();
        let p = row.predicted.as_ref();
        Self {
            layout: &row.layout,
            nodes: row.nodes.max(1),
            prefill_tok_s: measured.map(|f| f.prefill_rate()),
            decode_tok_s: measured.map(|f| f.decode_rate()),
            ttft_s: measured.map(|f| f.stats.time_to_first_token),
            predicted_prefill_tok_s: p.map(|p| p.prefill_tok_s),
            predicted_decode_tok_s: p.map(|p| p.decode_tok_s),
            predicted_ttft_s: p.map(|p| p.ttft),
            prefill_error: row.prefill_error,
            decode_error: row.decode_error,
            error: row.result.as_ref().err().map(String::as_str),
        }
    }
}

impl<'a> BenchJson<'a> {
    pub fn new(report: &'a BenchReport) -> Self {
        let layouts: Vec<LayoutJson> = report.rows.iter().map(LayoutJson::new).collect();
        Self {
            first: report.rows.first().map(LayoutJson::new),
            layouts,
            report,
        }
    }
}
