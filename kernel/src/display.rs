//! One command's [`Output`] as what a notebook shows: mime bundles for
//! display_data (text/plain always, text/html for tables, image/svg+xml
//! for charts, application/json with the raw figures), or an error.

use serde_json::{json, Map, Value};
use shardlab_repl::output::{text, Report, ReportOutput, Table};
use shardlab_repl::Output;

use crate::{html, svg};

#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// display_data with this mime bundle.
    Data(Value),
    /// The command failed with this message.
    Error(String),
}

/// The parts of `output`, in order.
pub fn show(output: &Output) -> Vec<Shown> {
    let mut out = Vec::new();
    collect(output, &mut out);
    out
}

fn collect(output: &Output, out: &mut Vec<Shown>) {
    match output {
        Output::Empty | Output::Quit => {}
        Output::Many(parts) => parts.iter().for_each(|p| collect(p, out)),
        Output::Error(t) => out.push(Shown::Error(t.render(false))),
        Output::Text(_) | Output::Generation(_) => {
            out.push(Shown::Data(bundle(output, Map::new())));
        }
        Output::Table(t) => {
            let mut extra = Map::new();
            extra.insert("text/html".into(), html::table(t).into());
            extra.insert("application/json".into(), table_json(t));
            out.push(Shown::Data(bundle(output, extra)));
        }
        Output::Report(r) => report(r, out),
        Output::Bars(b) => {
            let mut extra = Map::new();
            extra.insert("image/svg+xml".into(), svg::timeline(b).into());
            extra.insert(
                "application/json".into(),
                serde_json::to_value(b).unwrap_or(Value::Null),
            );
            out.push(Shown::Data(bundle(output, extra)));
        }
    }
}

/// A typed report: its view's parts, each carrying the report's own
/// figures as JSON, and a chart drawn from those figures where one helps.
fn report(r: &ReportOutput, out: &mut Vec<Shown>) {
    let first = out.len();
    collect(&r.view, out);
    let data = serde_json::to_value(&r.report).unwrap_or(Value::Null);
    let chart = match &r.report {
        Report::Bench(b) => svg::bench(b),
        _ => None,
    };
    for (i, shown) in out[first..].iter_mut().enumerate() {
        if let Shown::Data(Value::Object(bundle)) = shown {
            bundle.insert("application/json".into(), data.clone());
            if let (0, Some(chart)) = (i, &chart) {
                bundle.insert("image/svg+xml".into(), chart.clone().into());
            }
        }
    }
}

fn bundle(output: &Output, mut extra: Map<String, Value>) -> Value {
    let plain = text::render(output, false);
    extra.insert(
        "text/plain".into(),
        plain.trim_end_matches('\n').to_string().into(),
    );
    Value::Object(extra)
}

/// A table's figures as they print, for a notebook to plot its own way.
fn table_json(t: &Table) -> Value {
    let rows: Vec<Value> = t
        .rows
        .iter()
        .map(|row| {
            let mut obj = Map::new();
            for (h, c) in t.headers.iter().zip(row) {
                obj.insert(h.clone(), c.render(false).into());
            }
            Value::Object(obj)
        })
        .collect();
    json!({
        "title": t.title.as_ref().map(|r| r.render(false)),
        "headers": t.headers,
        "rows": rows,
        "notes": t.notes.iter().map(|n| n.render(false)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_carry_html_and_json_and_errors_stay_errors() {
        let mut t = Table::new(&["node", "RSS"]);
        t.row(vec!["node0".into(), "5 MiB".into()]);
        let shown = show(&Output::Table(t).then(Output::error("no model")));
        assert_eq!(shown.len(), 2);
        let Shown::Data(b) = &shown[0] else {
            panic!("{shown:?}")
        };
        assert!(b["text/html"].as_str().unwrap().contains("<td>5 MiB</td>"));
        assert_eq!(b["application/json"]["rows"][0]["RSS"], "5 MiB");
        assert!(b["text/plain"].as_str().unwrap().contains("node0"));
        assert!(b.get("image/svg+xml").is_none());
        assert_eq!(shown[1], Shown::Error("no model".into()));
        assert!(show(&Output::Empty).is_empty());
    }

    #[test]
    fn a_layout_ranking_is_a_table_with_its_figures() {
        use shardlab_engine::orchestrator::report::{Objective, RankReport, RankRow};
        use shardlab_engine::shard::plan::speed::Workload;
        use shardlab_engine::shard::plan::LayoutRequest;
        use shardlab_repl::output::views;

        let ranking = RankReport {
            objective: Objective::Decode,
            workload: Workload::default(),
            rows: vec![RankRow {
                layout: LayoutRequest::Tensor,
                refusal: Some("node 'node0' does not fit; try pipeline".into()),
                prediction: None,
            }],
        };
        let view = Output::Table(views::rank(&ranking, &[]));
        let shown = show(&Output::report(Report::Rank(ranking), view));
        let [Shown::Data(b)] = shown.as_slice() else {
            panic!("{shown:?}")
        };
        let html = b["text/html"].as_str().unwrap();
        assert!(
            html.contains("does not fit</td>"),
            "cut at its first clause: {html}"
        );
        assert!(!html.contains("try pipeline"), "{html}");
        assert_eq!(b["application/json"]["report"], "rank");
        assert_eq!(b["application/json"]["rows"][0]["layout"], "Tensor");
        assert!(b["text/plain"].as_str().unwrap().contains("no layout fits"));
    }
}
