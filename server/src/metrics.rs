//! `GET /metrics` in the Prometheus text format: requests, queue, tokens
//! and tokens/s, and each node's compute, wait, traffic and resident
//! memory.

use std::fmt::Write;
use std::time::Duration;

use shardlab_engine::metrics::memory::current_rss_bytes;
use shardlab_engine::orchestrator::serving::ServeCounts;
use shardlab_engine::orchestrator::LiveSnapshot;

pub fn render(counts: &ServeCounts, live: &LiveSnapshot, uptime: Duration) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP shardlab_{name} {help}");
        let _ = writeln!(out, "# TYPE shardlab_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "shardlab_{name}{labels} {value}");
        }
    };
    let one = |v: u64| vec![(String::new(), v as f64)];
    metric(
        "requests_in_flight",
        "gauge",
        "Requests being generated now.",
        &one(counts.in_flight),
    );
    metric(
        "requests_queued",
        "gauge",
        "Requests waiting for a sequence slot.",
        &one(counts.queued),
    );
    metric(
        "requests_total",
        "counter",
        "Requests that ended, by outcome.",
        &[
            ("{outcome=\"done\"}".into(), counts.done as f64),
            ("{outcome=\"failed\"}".into(), counts.failed as f64),
            ("{outcome=\"cancelled\"}".into(), counts.cancelled as f64),
        ],
    );
    metric(
        "prompt_tokens_total",
        "counter",
        "Prompt tokens of ended requests.",
        &one(counts.prompt_tokens),
    );
    metric(
        "generated_tokens_total",
        "counter",
        "Tokens generated for ended requests.",
        &one(counts.generated_tokens),
    );
    let secs = uptime.as_secs_f64();
    let rate = if secs > 0.0 {
        counts.generated_tokens as f64 / secs
    } else {
        0.0
    };
    metric(
        "generated_tokens_per_second",
        "gauge",
        "Generated tokens per second since the server started.",
        &[(String::new(), rate)],
    );
    metric(
        "process_resident_bytes",
        "gauge",
        "Resident memory of the serving process.",
        &one(current_rss_bytes().unwrap_or(0)),
    );
    let per_node = |f: &dyn Fn(&shardlab_engine::orchestrator::LiveNode) -> f64| {
        live.nodes
            .iter()
            .map(|n| (format!("{{node=\"{}\"}}", escape(&n.name)), f(n)))
            .collect::<Vec<_>>()
    };
    metric(
        "node_steps_total",
        "counter",
        "Steps each node ran.",
        &per_node(&|n| n.steps as f64),
    );
    metric(
        "node_compute_seconds_total",
        "counter",
        "Seconds each node spent computing.",
        &per_node(&|n| n.compute_seconds),
    );
    metric(
        "node_wait_seconds_total",
        "counter",
        "Seconds each node spent waiting for its peers.",
        &per_node(&|n| n.wait_seconds),
    );
    metric(
        "node_sent_bytes_total",
        "counter",
        "Bytes each node sent to its peers.",
        &per_node(&|n| n.bytes_sent as f64),
    );
    metric(
        "node_resident_bytes",
        "gauge",
        "Resident memory of each node process after its latest step (0 when unknown).",
        &per_node(&|n| n.resident_bytes as f64),
    );
    out
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardlab_engine::orchestrator::LiveNode;

    fn node(name: &str, resident_bytes: u64) -> LiveNode {
        LiveNode {
            name: name.to_string(),
            steps: 3,
            resident_bytes,
            ..LiveNode::default()
        }
    }

    #[test]
    fn each_node_has_its_own_resident_bytes_gauge() {
        let live = LiveSnapshot {
            nodes: vec![node("node0", 3_000_000_000), node("node1", 0)],
            ..LiveSnapshot::default()
        };
        let text = render(&ServeCounts::default(), &live, Duration::from_secs(1));
        let lines: Vec<&str> = text.lines().collect();
        let help = lines
            .iter()
            .position(|l| l.starts_with("# HELP shardlab_node_resident_bytes "))
            .expect("a HELP line");
        assert_eq!(lines[help + 1], "# TYPE shardlab_node_resident_bytes gauge");
        assert_eq!(
            lines[help + 2],
            "shardlab_node_resident_bytes{node=\"node0\"} 3000000000"
        );
        assert_eq!(
            lines[help + 3],
            "shardlab_node_resident_bytes{node=\"node1\"} 0"
        );
        assert!(
            text.contains("# TYPE shardlab_process_resident_bytes gauge"),
            "the serving process's own gauge stays"
        );
    }
}
