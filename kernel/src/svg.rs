//! image/svg+xml charts: the `:trace` per-node timeline and the `:bench`
//! decode rate by layout, measured (filled) beside predicted (hollow). Plain SVG with inline styles, so it shows in any
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

/// One layout's bar: its label, measured decode tok/s, and predicted
/// decode tok/s with the error when the cost model gave one.
struct DecodeBar {
    name: String,
    measured: f64,
    predicted: Option<(f64, Option<f64>)>,
}

/// Colour of the measured bars; the predicted ones are hollow outlines.
const MEASURED: &str = "#4c78a8";
const PREDICTED: &str = "#e45756";

/// Horizontal bars of the decode rate per layout, from a bench report:
/// measured filled, the prediction for the same plan and workload as a
/// hollow outline over it; `None` when no layout ran.
pub fn bench(report: &BenchReport) -> Option<String> {
    let bars: Vec<DecodeBar> = report
        .rows
        .iter()
        .filter_map(|row| {
            let figures = row.result.as_ref().ok()?;
            Some(DecodeBar {
                name: format!("{} ×{}", row.layout, row.nodes.max(1)),
                measured: figures.decode_rate(),
                predicted: row
                    .predicted
                    .as_ref()
                    .map(|p| (p.decode_tok_s, row.decode_error)),
            })
        })
        .collect();
    if bars.is_empty() {
        return None;
    }
    let max = bars
        .iter()
        .flat_map(|b| [Some(b.measured), b.predicted.map(|p| p.0)])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let any_predicted = bars.iter().any(|b| b.predicted.is_some());
    // Room for the longest label at about 7 px a character.
    let longest = bars
        .iter()
        .map(|b| b.name.chars().count())
        .max()
        .unwrap_or(0);
    let label = LABEL.max(longest as f64 * 7.0 + 10.0).min(WIDTH / 2.0);
    let plot = WIDTH - label - if any_predicted { 240.0 } else { 90.0 };
    let legend = if any_predicted { 24.0 } else { 0.0 };
    let height = TOP + ROW * bars.len() as f64 + 10.0 + legend;
    let mut s = open(
        height,
        if any_predicted {
            "decode tok/s by layout: measured and predicted"
        } else {
            "decode tok/s by layout"
        },
    );
    for (i, bar) in bars.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let w = plot * bar.measured / max;
        let mut end = w;
        s.push_str(&format!(
            "<text x=\"4\" y=\"{:.1}\">{}</text>\
             <rect x=\"{label:.1}\" y=\"{:.1}\" width=\"{w:.2}\" height=\"{:.1}\" fill=\"{MEASURED}\"><title>measured {:.1} tok/s</title></rect>",
            y + ROW * 0.65,
            escape(&bar.name),
            y + 3.0,
            ROW - 6.0,
            bar.measured
        ));
        let mut text = format!("{:.1} tok/s", bar.measured);
        if let Some((predicted, error)) = bar.predicted.filter(|p| p.0.is_finite()) {
            let pw = (plot * predicted / max).max(0.5);
            end = end.max(pw);
            s.push_str(&format!(
                "<rect x=\"{label:.1}\" y=\"{:.1}\" width=\"{pw:.2}\" height=\"{:.1}\" fill=\"none\" stroke=\"{PREDICTED}\" stroke-width=\"2\" stroke-dasharray=\"4 2\"><title>predicted {predicted:.1} tok/s</title></rect>",
                y + 2.0,
                ROW - 4.0,
            ));
            text.push_str(&format!(" (predicted {predicted:.1}"));
            if let Some(e) = error {
                text.push_str(&format!(", {:+.0}%", 100.0 * e));
            }
            text.push(')');
        }
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            label + end + 6.0,
            y + ROW * 0.65,
            escape(&text)
        ));
    }
    if any_predicted {
        let y = TOP + ROW * bars.len() as f64 + 12.0;
        s.push_str(&format!(
            "<rect x=\"{label:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{MEASURED}\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\">measured</text>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"none\" stroke=\"{PREDICTED}\" stroke-width=\"2\" stroke-dasharray=\"4 2\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\">predicted (error = (measured - predicted) / predicted)</text>",
            y - 10.0,
            label + 16.0,
            label + 100.0,
            y - 10.0,
            label + 116.0,
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
    use shardlab_engine::shard::plan::speed::{SpeedPrediction, Workload};
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
        let ran = |layout: &str, nodes| {
            BenchRow::new(
                layout.into(),
                nodes,
                None,
                Ok(BenchFigures {
                    stats: stats.clone(),
                    aggregate: None,
                    comm_share: None,
                    allreduce_p50: None,
                    exchange: None,
                    nodes: Vec::new(),
                }),
            )
        };
        let mut report = BenchReport {
            model: "m".into(),
            prompt_tokens: 8,
            gen_tokens: 5,
            parallel: 1,
            threads: 1,
            wire: "f64".into(),
            link: None,
            limits: BenchLimits {
                weight_bytes: 1,
                bandwidth: None,
                raw_rtt: None,
                payload: 8,
                streamed_between_allreduces: 0,
                raw_rtt_streamed: None,
            },
            rows: vec![
                ran("tensor", 2),
                BenchRow::new("pipeline".into(), 2, None, Err("node1 failed".into())),
            ],
            restored: None,
        };
        let s = bench(&report).expect("one layout ran");
        assert!(s.contains("tensor ×2") && s.contains("40.0 tok/s"), "{s}");
        assert_eq!(s.matches("fill=\"#4c78a8\"").count(), 1);
        assert!(!s.contains("predicted"), "no prediction, none drawn: {s}");

        // Predicted 50 tok/s against 40 measured: a hollow bar past the
        // filled one (the longest bar sets the scale), and the error.
        let ok = report.rows[0].result.clone();
        report.rows[0] = BenchRow::new("tensor".into(), 2, Some(prediction(50.0)), ok);
        let s = bench(&report).expect("one layout ran");
        assert!(s.contains("measured and predicted"), "{s}");
        assert!(s.contains("40.0 tok/s (predicted 50.0, -20%)"), "{s}");
        let hollow = format!("fill=\"none\" stroke=\"{PREDICTED}\"");
        // One for the bar, one in the legend.
        assert_eq!(s.matches(&hollow).count(), 2, "{s}");
        let plot = WIDTH - LABEL - 240.0;
        assert!(s.contains(&format!("width=\"{plot:.2}\" height")), "{s}");
        assert!(s.contains(&format!("width=\"{:.2}\"", plot * 0.8)), "{s}");

        report.rows.remove(0);
        assert!(bench(&report).is_none());
    }

    fn prediction(decode: f64) -> SpeedPrediction {
        SpeedPrediction {
            workload: Workload {
                prompt_tokens: 8,
                gen_tokens: 5,
                in_flight: 1,
            },
            prefill_tok_s: 100.0,
            decode_tok_s: decode,
            ttft: 0.08,
            stages: Vec::new(),
            coordinator: 0.0,
            node_decode: Vec::new(),
        }
    }
}
