//! image/svg+xml charts: the `:trace` per-node timeline and the `:bench`
//! decode rate by layout. Plain SVG with inline styles, so it shows in any
//! front end and in a saved notebook.

use shardlab_engine::orchestrator::report::BenchReport;
use shardlab_repl::output::{BarChart, BarKind};

use crate::html::escape;

const WIDTH: f64 = 760.0;
const LABEL: f64 = 150.0;
const ROW: f64 = 26.0;
const TOP: f64 = 30.0;

fn colour(kind: BarKind) -> &'static str {
    match kind {
        BarKind::Compute => "#4c78a8",
        BarKind::Expert => "#72b7b2",
        BarKind::Send => "#f58518",
        BarKind::Wait => "#d0d0d0",
        BarKind::Receive => "#54a24b",
    }
}

fn kind_name(kind: BarKind) -> &'static str {
    match kind {
        BarKind::Compute => "compute",
        BarKind::Expert => "experts",
        BarKind::Send => "send",
        BarKind::Wait => "wait",
        BarKind::Receive => "receive",
    }
}

fn open(height: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"4\" y=\"16\" font-weight=\"bold\">{}</text>",
        escape(title)
    )
}

/// One row per node, segments coloured by what the node was doing.
pub fn timeline(chart: &BarChart) -> String {
    let plot = WIDTH - LABEL - 10.0;
    let height = TOP + ROW * chart.rows.len() as f64 + 50.0;
    let mut s = open(height, &chart.title.render(false));
    let span = if chart.span > 0.0 { chart.span } else { 1.0 };
    for (i, row) in chart.rows.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        s.push_str(&format!(
            "<text x=\"4\" y=\"{:.1}\">{}</text>",
            y + ROW * 0.65,
            escape(&row.label.render(false))
        ));
        for seg in &row.segments {
            let x = LABEL + plot * (seg.start / span);
            let w = (plot * (seg.seconds / span)).max(0.5);
            s.push_str(&format!(
                "<rect x=\"{x:.2}\" y=\"{:.1}\" width=\"{w:.2}\" height=\"{:.1}\" fill=\"{}\"><title>{} {:.3} ms</title></rect>",
                y + 3.0,
                ROW - 6.0,
                colour(seg.kind),
                kind_name(seg.kind),
                seg.seconds * 1e3
            ));
        }
    }
    let axis = TOP + ROW * chart.rows.len() as f64 + 4.0;
    s.push_str(&format!(
        "<line x1=\"{LABEL}\" y1=\"{axis}\" x2=\"{:.1}\" y2=\"{axis}\" stroke=\"black\"/>\
         <text x=\"{LABEL}\" y=\"{:.1}\">0</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.2} ms</text>",
        LABEL + plot,
        axis + 14.0,
        LABEL + plot,
        axis + 14.0,
        chart.span * 1e3
    ));
    let legend_y = axis + 34.0;
    let has_experts = chart
        .rows
        .iter()
        .flat_map(|r| &r.segments)
        .any(|seg| seg.kind == BarKind::Expert);
    let mut kinds = vec![
        BarKind::Compute,
        BarKind::Send,
        BarKind::Receive,
        BarKind::Wait,
    ];
    if has_experts {
        kinds.push(BarKind::Expert);
    }
    for (i, kind) in kinds.into_iter().enumerate() {
        let x = LABEL + 100.0 * i as f64;
        s.push_str(&format!(
            "<rect x=\"{x}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{legend_y:.1}\">{}</text>",
            legend_y - 10.0,
            colour(kind),
            x + 16.0,
            kind_name(kind)
        ));
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars of the decode rate per layout, from a bench report;
/// `None` when no layout ran.
pub fn bench(report: &BenchReport) -> Option<String> {
    let bars: Vec<(String, f64)> = report
        .rows
        .iter()
        .filter_map(|row| {
            let figures = row.result.as_ref().ok()?;
            Some((
                format!("{} ×{}", row.layout, row.nodes.max(1)),
                figures.decode_rate(),
            ))
        })
        .collect();
    if bars.is_empty() {
        return None;
    }
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max).max(1e-9);
    // Room for the longest label at about 7 px a character.
    let longest = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(0);
    let label = LABEL.max(longest as f64 * 7.0 + 10.0).min(WIDTH / 2.0);
    let plot = WIDTH - label - 90.0;
    let height = TOP + ROW * bars.len() as f64 + 10.0;
    let mut s = open(height, "decode tok/s by layout");
    for (i, (name, rate)) in bars.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let w = plot * rate / max;
        s.push_str(&format!(
            "<text x=\"4\" y=\"{:.1}\">{}</text>\
             <rect x=\"{label:.1}\" y=\"{:.1}\" width=\"{w:.2}\" height=\"{:.1}\" fill=\"#4c78a8\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{rate:.1} tok/s</text>",
            y + ROW * 0.65,
            escape(name),
            y + 3.0,
            ROW - 6.0,
            label + w + 6.0,
            y + ROW * 0.65
        ));
    }
    s.push_str("</svg>");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardlab_engine::model::generate::{GenerationStats, StopReason};
    use shardlab_engine::orchestrator::report::{BenchFigures, BenchLimits, BenchRow};
    use shardlab_repl::output::{BarRow, BarSegment};

    #[test]
    fn timeline_draws_one_rect_per_segment_scaled_to_the_span() {
        let chart = BarChart {
            title: "trace".into(),
            rows: vec![BarRow {
                label: "node0".into(),
                segments: vec![
                    BarSegment {
                        kind: BarKind::Compute,
                        start: 0.0,
                        seconds: 0.5,
                    },
                    BarSegment {
                        kind: BarKind::Send,
                        start: 0.5,
                        seconds: 0.5,
                    },
                ],
            }],
            span: 1.0,
            notes: vec![],
        };
        let s = timeline(&chart);
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(s.ends_with("</svg>"));
        let plot = WIDTH - LABEL - 10.0;
        assert!(
            s.contains(&format!("x=\"{:.2}\"", LABEL + plot / 2.0)),
            "{s}"
        );
        assert!(s.contains("fill=\"#f58518\"><title>send 500.000 ms"));
        assert!(s.contains(">node0</text>"));
    }

    #[test]
    fn bench_chart_draws_the_decode_rate_of_each_layout_that_ran() {
        let stats = GenerationStats {
            prompt_tokens: 8,
            reused_tokens: 0,
            generated_tokens: 5,
            prefill_seconds: 1.0,
            decode_seconds: 0.1,
            time_to_first_token: 1.0,
            stop: StopReason::MaxTokens,
        };
        let ran = |layout: &str, nodes| BenchRow {
            layout: layout.into(),
            nodes,
            result: Ok(BenchFigures {
                stats: stats.clone(),
                aggregate: None,
                comm_share: None,
                allreduce_p50: None,
                nodes: Vec::new(),
            }),
        };
        let mut report = BenchReport {
            model: "m".into(),
            prompt_tokens: 8,
            gen_tokens: 5,
            threads: 1,
            wire: "f64".into(),
            link: None,
            limits: BenchLimits {
                weight_bytes: 1,
                bandwidth: None,
                raw_rtt: None,
                payload: 8,
            },
            rows: vec![
                ran("tensor", 2),
                BenchRow {
                    layout: "pipeline".into(),
                    nodes: 2,
                    result: Err("node1 failed".into()),
                },
            ],
            restored: None,
        };
        let s = bench(&report).expect("one layout ran");
        assert!(s.contains("tensor ×2") && s.contains("40.0 tok/s"), "{s}");
        assert_eq!(s.matches("fill=\"#4c78a8\"").count(), 1);
        report.rows.remove(0);
        assert!(bench(&report).is_none());
    }
}
