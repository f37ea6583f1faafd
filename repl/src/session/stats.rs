//! `:stats`: where the memory and the time went, per node, since the last
//! `:shard`, and the last generation's rates.

use shardlab_engine::cluster::messages::NodeMetrics;
use shardlab_engine::metrics::memory::current_rss_bytes;
use shardlab_engine::model::layout::LocalLayout;
use shardlab_engine::shard::plan::memory::kv_cache_bytes;

use super::{Runner, Session, SessionError};
use crate::output::text::{bytes, duration, rate};
use crate::output::{Output, Rich, Table, Varies};

impl Session {
    pub(super) fn stats(&mut self) -> Result<Output, SessionError> {
        let mut t = Table::new(&[
            "node",
            "RSS",
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
        let tokens = self.tokens_since_load.max(1);
        let lits = self.literals();
        match (&self.runner, self.nodes.as_mut(), self.model.as_ref()) {
            (Runner::Cluster(layout), Some(n), _) => {
                t.title = Some(format!("stats: {layout}, counters since :shard").into());
                let fixed: Vec<bool> = n
                    .cluster
                    .nodes()
                    .iter()
                    .map(|h| n.budget_is_fixed(&h.name))
                    .collect();
                // Seconds the nodes spent waiting on each peer, by node name.
                let mut blame: Vec<(String, f64)> = Vec::new();
                let mut labels = Vec::new();
                for (i, (label, metrics)) in n.cluster.metrics().into_iter().enumerate() {
                    let name = Rich::masking(&label, &lits);
                    labels.push(label.clone());
                    if let Ok(m) = &metrics {
                        for t in &m.traffic {
                            add_blame(&mut blame, &t.peer, t.waited_seconds);
                        }
                    }
                    match metrics {
                        Ok(m) => t.row(node_row(
                            name,
                            &m,
                            fixed.get(i).copied().unwrap_or(false),
                            tokens,
                        )),
                        Err(_) => {
                            let mut row = vec![name, "lost".into()];
                            row.resize(t.headers.len(), "-".into());
                            t.row(row);
                        }
                    }
                }
                if let Some(line) = straggler(&labels, &blame) {
                    t.note(line);
                }
            }
            (Runner::InProcess(tr), _, Some(m)) => {
                t.title = Some("stats: single, this process".into());
                let kv = kv_cache_bytes(
                    &m.config,
                    &LocalLayout::whole(&m.config),
                    tr.cache().context(),
                );
                let weights = m.summary.as_ref().map(|s| s.total_weight_bytes());
                t.row(vec![
                    "this process".into(),
                    current_rss_bytes()
                        .map_or("-".into(), |b| Rich::varies(Varies::Bytes, bytes(b))),
                    weights.map_or("-".into(), |w| bytes(w).into()),
                    bytes(kv).into(),
                    "-".into(),
                    "100%".into(),
                    "0%".into(),
                    "0 B".into(),
                    "0 B".into(),
                    "-".into(),
                    "-".into(),
                ]);
            }
            _ => {
                return Err(SessionError::state(
                    "nothing is loaded: `:shard LAYOUT` (or a prompt, with no nodes) first",
                ))
            }
        }
        match &self.last {
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
        Ok(Output::Table(t))
    }
}

fn node_row(name: Rich, m: &NodeMetrics, budget_fixed: bool, tokens: u64) -> Vec<Rich> {
    let busy = m.compute_seconds + m.wait_seconds;
    let share = |x: f64| {
        Rich::varies(
            Varies::Float,
            if busy > 0.0 {
                format!("{:.0}%", 100.0 * x / busy)
            } else {
                "-".into()
            },
        )
    };
    let sent: u64 = m.traffic.iter().map(|t| t.bytes_sent).sum();
    let recv: u64 = m.traffic.iter().map(|t| t.bytes_received).sum();
    vec![
        name,
        Rich::varies(Varies::Bytes, bytes(m.rss)),
        bytes(m.weight_bytes).into(),
        Rich::varies(Varies::Bytes, bytes(m.kv_bytes)),
        if budget_fixed {
            bytes(m.budget).into()
        } else {
            Rich::varies(Varies::Bytes, bytes(m.budget))
        },
        share(m.compute_seconds),
        share(m.wait_seconds),
        Rich::varies(Varies::Bytes, bytes(sent / tokens)),
        Rich::varies(Varies::Bytes, bytes(recv / tokens)),
        percentiles(&m.allreduce_seconds),
        percentiles(&m.hop_seconds),
    ]
}

/// Adds `seconds` waited on `peer` ("node1" or "node1 (addr)").
fn add_blame(blame: &mut Vec<(String, f64)>, peer: &str, seconds: f64) {
    let name = peer.split_whitespace().next().unwrap_or(peer);
    match blame.iter_mut().find(|(n, _)| n == name) {
        Some((_, s)) => *s += seconds,
        None => blame.push((name.to_string(), seconds)),
    }
}

/// Names the node its peers waited on longest since the load: a slow core,
/// an overloaded machine or a slow link all show up as the others blocked
/// on its activations. `None` with no node-to-node traffic. The name is
/// marked as varying: which node is slowest is not part of a transcript's
/// expectation, the line's presence is.
fn straggler(labels: &[String], blame: &[(String, f64)]) -> Option<Rich> {
    let (name, most) = blame
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, s)| (n.clone(), *s))?;
    let label = labels
        .iter()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .cloned()
        .unwrap_or(name.clone());
    let mut others: Vec<f64> = blame
        .iter()
        .filter(|(n, _)| *n != name)
        .map(|(_, s)| *s)
        .collect();
    others.sort_by(|a, b| a.total_cmp(b));
    let median = others.get(others.len() / 2).copied().unwrap_or(0.0);
    Some(
        Rich::from("straggler: ")
            .push_varies(Varies::Any, label)
            .push(": its peers waited ")
            .push_varies(Varies::Time, duration(most))
            .push(" on it, against a median of ")
            .push_varies(Varies::Time, duration(median))
            .push(" for the others"),
    )
}

/// "120 µs / 1 ms", or "-" with no samples.
fn percentiles(samples: &[f64]) -> Rich {
    if samples.is_empty() {
        return "-".into();
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    Rich::varies(
        Varies::Time,
        format!("{} / {}", duration(at(0.5)), duration(at(0.99))),
    )
}
