//! `:stats`, and the per-node table `shardlab run` prints after a
//! generation across nodes: the same table in both places.

use shardlab_engine::cluster::messages::ExpertMetrics;
use shardlab_engine::orchestrator::report::{NodeStats, Percentiles, ServingFigures, StatsReport};

use super::Literals;
use crate::output::text::{bytes, duration, rate};
use crate::output::{Rich, Table, Varies};

pub fn stats(report: &StatsReport, lits: &Literals) -> Table {
    let mut t = Table::new(&[
        "node",
        "RSS",
        "peak RSS",
        "weights",
        "KV cache",
        "budget",
        "compute",
        "wait",
        "sent/token",
        "recv/token",
        "all-reduce p50/p99",
        "hop p50/p99",
    ]);
    t.title = Some(if report.in_process {
        "stats: single, this process".into()
    } else {
        format!("stats: {}, counters since :shard", report.layout).into()
    });
    for row in &report.rows {
        let name = Rich::masking(&row.label, lits);
        match (&row.stats, report.in_process) {
            (Some(s), true) => t.row(in_process_row(name, s)),
            (Some(s), false) => t.row(node_row(name, s, report.tokens)),
            (None, _) => {
                let mut cells = vec![name, "lost".into()];
                cells.resize(t.headers.len(), "-".into());
                t.row(cells);
            }
        }
    }
    let moe = report
        .rows
        .iter()
        .any(|r| r.stats.as_ref().is_some_and(|s| s.experts.is_some()));
    if moe {
        t.headers.push("experts: routed".into());
        for (cells, row) in t.rows.iter_mut().zip(&report.rows) {
            let e = row.stats.as_ref().and_then(|s| s.experts.as_ref());
            cells.push(e.map_or("-".into(), expert_cell));
        }
        if let Some(x) = report.expert_imbalance() {
            t.note(
                Rich::from("expert load: the busiest node's experts got ")
                    .push_varies(Varies::Float, format!("{x:.2}x"))
                    .push(" the mean routed choices (1.00x is even)"),
            );
        }
    }
    if let Some(s) = &report.straggler {
        t.note(
            Rich::from("straggler: ")
                .push_varies(Varies::Any, s.label.clone())
                .push(": its peers waited ")
                .push_varies(Varies::Time, duration(s.waited_on))
                .push(" on it, against a median of ")
                .push_varies(Varies::Time, duration(s.median_others))
                .push(" for the others"),
        );
    }
    match &report.last {
        Some(s) => t.note(
            Rich::from("last generation: prefill ")
                .push_varies(Varies::Rate, rate(s.prefill_tokens_per_second()))
                .push(" · decode ")
                .push_varies(Varies::Rate, rate(s.decode_tokens_per_second()))
                .push(" · TTFT ")
                .push_varies(Varies::Time, duration(s.time_to_first_token))
                .push(format!(
                    " · {} prompt + {} generated tokens",
                    s.prompt_tokens, s.generated_tokens
                )),
        ),
        None => t.note("no generation yet"),
    }
    if let Some(s) = &report.serving {
        t.note(serving_note(s));
    }
    t
}

/// One line for the server: where, and its requests so far.
fn serving_note(s: &ServingFigures) -> Rich {
    let c = &s.counts;
    let line = Rich::from("server ")
        .push_varies(Varies::Addr, s.url.clone())
        .push(format!(" ({} at once): requests ", s.parallel))
        .push_varies(Varies::Int, c.in_flight.to_string())
        .push(" in flight · ")
        .push_varies(Varies::Int, c.queued.to_string())
        .push(" queued · ")
        .push_varies(Varies::Int, c.done.to_string())
        .push(" done · ")
        .push_varies(Varies::Int, c.failed.to_string())
        .push(" failed · ")
        .push_varies(Varies::Int, c.cancelled.to_string())
        .push(" cancelled · ")
        .push_varies(Varies::Int, c.generated_tokens.to_string())
        .push(" tokens generated");
    let line = match &s.kv_room {
        Some(room) => line
            .push(" · KV ")
            .push_varies(Varies::Int, s.kv_reserved.to_string())
            .push(" of ")
            .push_varies(Varies::Int, room.positions.to_string())
            .push(" positions reserved"),
        None => line,
    };
    match &s.broken {
        Some(why) => line.push(format!(
            "; a step failed ({why}): requests get a 503 until :shard re-plans"
        )),
        None => line,
    }
}

/// This process does all the work and sends nothing.
fn in_process_row(name: Rich, s: &NodeStats) -> Vec<Rich> {
    vec![
        name,
        if s.rss > 0 {
            Rich::varies(Varies::Bytes, bytes(s.rss))
        } else {
            "-".into()
        },
        if s.peak_rss > 0 {
            Rich::varies(Varies::Bytes, bytes(s.peak_rss))
        } else {
            "-".into()
        },
        bytes(s.weight_bytes).into(),
        bytes(s.kv_bytes).into(),
        "-".into(),
        "100%".into(),
        "0%".into(),
        "0 B".into(),
        "0 B".into(),
        "-".into(),
        "-".into(),
    ]
}

fn node_row(name: Rich, s: &NodeStats, tokens: u64) -> Vec<Rich> {
    let share = |x: Option<f64>| {
        Rich::varies(
            Varies::Float,
            x.map_or("-".into(), |x| format!("{:.0}%", 100.0 * x)),
        )
    };
    vec![
        name,
        Rich::varies(Varies::Bytes, bytes(s.rss)),
        Rich::varies(Varies::Bytes, bytes(s.peak_rss)),
        bytes(s.weight_bytes).into(),
        Rich::varies(Varies::Bytes, bytes(s.kv_bytes)),
        if s.budget_fixed {
            bytes(s.budget).into()
        } else {
            Rich::varies(Varies::Bytes, bytes(s.budget))
        },
        share(s.compute_share()),
        share(s.wait_share()),
        Rich::varies(Varies::Bytes, bytes(s.bytes_sent / tokens.max(1))),
        Rich::varies(Varies::Bytes, bytes(s.bytes_received / tokens.max(1))),
        percentiles(s.allreduce),
        percentiles(s.hop),
    ]
}

/// "120 µs / 1 ms", or "-" with no samples.
fn percentiles(p: Option<Percentiles>) -> Rich {
    p.map_or("-".into(), |p| {
        Rich::varies(
            Varies::Time,
            format!("{} / {}", duration(p.p50), duration(p.p99)),
        )
    })
}

/// "0..32: 1,234 (51%)": the owned experts and the (token, expert) choices
/// that fell on them, summed over layers, with their share of all choices.
fn expert_cell(e: &ExpertMetrics) -> Rich {
    let share = if e.total > 0 {
        format!(" ({:.0}%)", 100.0 * e.routed as f64 / e.total as f64)
    } else {
        String::new()
    };
    Rich::from(format!("{}..{}: ", e.owned.start, e.owned.end))
        .push_varies(Varies::Float, format!("{}{share}", e.routed))
}
