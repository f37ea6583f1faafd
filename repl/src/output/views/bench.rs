//! `:bench`: one row per layout, each measured rate beside the cost
//! model's prediction for the same plan and workload and its error, with
//! the rates' ratio to the baseline, the roofline fraction, the
//! communication share, the all-reduce exchange against a raw round trip
//! and the skew between peers.

use shardlab_engine::orchestrator::report::{BenchLimits, BenchReport};

use super::Literals;
use crate::output::text::{duration, rate};
use crate::output::{Rich, Table, Varies};

pub fn bench(report: &BenchReport, lits: &Literals) -> Table {
    let mut t = Table::new(&[
        "layout",
        "nodes",
        "prefill",
        "prefill predicted",
        "prefill error",
        "decode",
        "decode predicted",
        "decode error",
        "TTFT",
        "TTFT predicted",
        "decode vs 1 node",
        "roofline",
        "comm share",
        "all-reduce / raw RTT",
        "peer skew",
    ]);
    let base = report.baseline_decode();
    let float = |s: String| Rich::varies(Varies::Float, s);
    for row in &report.rows {
        match &row.result {
            Ok(f) => {
                let s = &f.stats;
                let decode = f.decode_rate();
                let p = row.predicted.as_ref();
                let predicted = |v: Option<f64>, varies, show: fn(f64) -> String| {
                    v.map_or("-".into(), |v| Rich::varies(varies, show(v)))
                };
                let error =
                    |e: Option<f64>| e.map_or("-".into(), |e| float(format!("{:+.0}%", 100.0 * e)));
                t.row(vec![
                    row.layout.clone().into(),
                    row.nodes.max(1).to_string().into(),
                    Rich::varies(Varies::Rate, rate(f.prefill_rate())),
                    predicted(p.map(|p| p.prefill_tok_s), Varies::Rate, rate),
                    error(row.prefill_error),
                    Rich::varies(Varies::Rate, rate(decode)),
                    predicted(p.map(|p| p.decode_tok_s), Varies::Rate, rate),
                    error(row.decode_error),
                    Rich::varies(Varies::Time, duration(s.time_to_first_token)),
                    predicted(p.map(|p| p.ttft), Varies::Time, duration),
                    float(match base {
                        Some(b) if b > 0.0 => format!("{:.2}x", decode / b),
                        _ => "-".into(),
                    }),
                    // Each node reads its own share of the weights from its own cores.
                    report
                        .roofline(f, row.nodes)
                        .map_or("-".into(), |r| float(format!("{:.0}%", 100.0 * r))),
                    f.comm_share
                        .map_or("-".into(), |c| float(format!("{:.0}%", 100.0 * c))),
                    match (f.allreduce_p50, report.allreduce_vs_rtt(f)) {
                        (Some(_), Some(r)) => float(format!("{r:.2}x")),
                        (Some(_), None) => float("-".into()),
                        _ => "-".into(),
                    },
                    f.exchange.map_or("-".into(), |x| {
                        Rich::varies(Varies::Time, duration(x.skew_p50))
                    }),
                ])
            }
            Err(e) => {
                let mut cells: Vec<Rich> = vec![
                    row.layout.clone().into(),
                    row.nodes.to_string().into(),
                    "failed".into(),
                ];
                cells.resize(t.headers.len(), "-".into());
                t.row(cells);
                t.note(Rich::from(format!("{}: ", row.layout)).append(Rich::masking(e, lits)));
            }
        }
    }
    if report.rows.iter().any(|r| r.predicted.is_some()) {
        t.note("predicted: the cost model's rates for the same plan and workload, computed before measuring; error = (measured - predicted) / predicted");
    }
    let limits = &report.limits;
    t.note(
        Rich::from(
            "roofline: weight bytes x decode tok/s / the memory bandwidth one node's cores read here (",
        )
        .append(Rich::varies(
            Varies::Rate,
            limits
                .bandwidth
                .map_or("-".to_string(), |b| format!("{:.1} GB/s", b / 1e9)),
        ))
        .append(Rich::from(
            "); all-reduce: from a node's partial ready to the sum, the last-ready node's p50 (the exchange itself; peer skew: how much earlier the first node was ready); raw RTT: a loopback TCP round trip of one all-reduce payload, p50 ",
        ))
        .append(Rich::varies(
            Varies::Time,
            limits
                .raw_rtt
                .map_or("-".to_string(), |r| format!("{:.0} µs", r * 1e6)),
        ))
        .append(streamed_rtt_note(limits)),
    );
    t
}

/// The round trip with caches as a decode step leaves them, when measured.
fn streamed_rtt_note(limits: &BenchLimits) -> Rich {
    let Some(rtt) = limits.raw_rtt_streamed else {
        return Rich::from("");
    };
    Rich::from(format!(
        ", and after each end reads {:.1} MiB (the weights a node reads between two all-reduces) p50 ",
        limits.streamed_between_allreduces as f64 / (1 << 20) as f64
    ))
    .append(Rich::varies(Varies::Time, format!("{:.0} µs", rtt * 1e6)))
}
