//! Cluster speed features over real node processes on loopback: several
//! sequences in flight through a pipeline, and reduced-precision
//! activations on the wire.

use shardlab_engine::cluster::coordinator::Cluster;
use shardlab_engine::model::tokenizer::Tokenizer;
use shardlab_engine::parallel::WireDtype;
use shardlab_engine::shard::plan::LayoutRequest;

mod common;

use common::{argmax, greedy_with_logits as greedy, local, single_node, smollm2, Model, TOKENS};

fn spawn(n: usize, home: &std::path::Path) -> Cluster {
    Cluster::spawn_local(n, &local(home, Vec::new()), "test").expect("spawns")
}

fn load(cluster: &mut Cluster, m: &Model, layout: &LayoutRequest, wire: WireDtype) {
    cluster.wire = wire;
    common::load(cluster, m, layout);
}

#[test]
fn pipelined_sequences_each_give_their_single_node_tokens() {
    let m = smollm2();
    let tokenizer = Tokenizer::from_gguf(&m.gguf).expect("tokenizer");
    let prompts: Vec<Vec<u32>> = [
        "The capital of France is",
        "Once upon a time, in a small village,",
        "def fibonacci(n):",
        "The three primary colors are",
    ]
    .iter()
    .map(|t| tokenizer.encode(t, true).expect("encodes"))
    .collect();
    let expected: Vec<Vec<u32>> = prompts.iter().map(|p| single_node(&m, p)).collect();
    assert!(
        expected.windows(2).all(|w| w[0] != w[1]),
        "the prompts must give different continuations for the test to mean anything"
    );

    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster = spawn(2, home.path());
    load(
        &mut cluster,
        &m,
        &"pipeline".parse().expect("layout"),
        WireDtype::F64,
    );
    // Every prefill goes out before any result comes back; each sequence's
    // next step goes out as soon as its logits arrive.
    let mut pos: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let mut got: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    for (seq, p) in prompts.iter().enumerate() {
        cluster.submit(seq as u32, p, 0).expect("submit prefill");
    }
    assert_eq!(cluster.in_flight(), prompts.len());
    let mut max_in_flight = 0;
    // Bounded: one collect per step of every sequence.
    for _ in 0..prompts.len() * (TOKENS + 1) {
        if cluster.in_flight() == 0 {
            break;
        }
        max_in_flight = max_in_flight.max(cluster.in_flight());
        let (seq, logits) = cluster.collect().expect("collect");
        let s = seq as usize;
        let next = argmax(&logits);
        got[s].push(next);
        if got[s].len() < TOKENS {
            cluster.submit(seq, &[next], pos[s]).expect("submit decode");
            pos[s] += 1;
        }
    }
    assert_eq!(cluster.in_flight(), 0);
    assert_eq!(max_in_flight, prompts.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "sequence {i}");
    }
    // Sequence 0 still works through the one-sequence path afterwards.
    cluster.truncate_all(0).expect("truncate");
    let (_, again) = greedy(&prompts[0], |ids, p| cluster.step(ids, p).expect("step"));
    assert_eq!(again, expected[0]);
}

/// Measures every wire precision against the exact one on tensor 2; prints
/// the figures (quoted in docs/ARCHITECTURE.md) and holds them to bounds.
#[test]
fn reduced_precision_wires_stay_close_to_the_exact_logits() {
    let m = smollm2();
    let tokenizer = Tokenizer::from_gguf(&m.gguf).expect("tokenizer");
    let prompt = tokenizer
        .encode("The capital of France is", true)
        .expect("encodes");
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster = spawn(2, home.path());
    let tensor: LayoutRequest = "tensor".parse().expect("layout");
    let mut run = |wire: WireDtype| {
        load(&mut cluster, &m, &tensor, wire);
        cluster.reset_metrics();
        let (prefill, tokens) = greedy(&prompt, |ids, p| cluster.step(ids, p).expect("step"));
        let sent: u64 = cluster
            .metrics()
            .into_iter()
            .map(|(_, r)| r.expect("metrics"))
            .flat_map(|m| m.traffic)
            .map(|t| t.bytes_sent)
            .sum();
        (prefill, tokens, sent)
    };
    let (exact, exact_tokens, exact_sent) = run(WireDtype::F64);
    assert_eq!(exact_tokens, single_node(&m, &prompt));
    // Measured on SmolLM2 (see docs/ARCHITECTURE.md), bounds at about twice
    // that: (wire, max |Δlogit|, mean |Δlogit|, greedy positions of 32 equal).
    // Position 14 is a near tie that even the f32 wire flips. One rounding
    // that lands differently is amplified through 30 layers, so a figure is
    // one sample: after the attention's dot product went to 8 lanes the f16
    // mean here moved from 0.14 to 0.47 (0.19 on "The quick brown fox jumps
    // over"), while its greedy tokens went from 14 to 32 equal.
    let bounds = [
        (WireDtype::F32, 1e-3, 1e-4, 28),
        (WireDtype::F16, 1.5, 0.7, 12),
        (WireDtype::Bf16, 3.0, 1.0, 3),
        (WireDtype::Q8, 4.0, 1.2, 12),
    ];
    let hidden = m.summary.config.hidden;
    for (wire, max_bound, mean_bound, same_bound) in bounds {
        let (logits, tokens, sent) = run(wire);
        let diffs: Vec<f32> = exact
            .iter()
            .zip(&logits)
            .map(|(a, b)| (a - b).abs())
            .collect();
        let max = diffs.iter().fold(0.0f32, |m, &d| m.max(d));
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        let agree = exact_tokens
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count();
        let same = exact_tokens
            .iter()
            .zip(&tokens)
            .filter(|(a, b)| a == b)
            .count();
        eprintln!(
            "wire {wire}: prefill logits max |Δ| {max:.3e}, mean |Δ| {mean:.3e}; greedy tokens equal for the first {agree} of {TOKENS} ({same} positions equal); {sent} bytes sent vs {exact_sent}"
        );
        assert!(
            max <= max_bound,
            "wire {wire}: max |Δlogit| {max} over {max_bound}"
        );
        assert!(
            mean <= mean_bound,
            "wire {wire}: mean |Δlogit| {mean} over {mean_bound}"
        );
        assert!(
            same >= same_bound,
            "wire {wire}: only {same} of {TOKENS} greedy tokens agree"
        );
        // Every value crossed at the wire's size (rows are whole Q8 blocks).
        let expected = exact_sent / WireDtype::F64.partial_bytes(hidden) as u64
            * wire.partial_bytes(hidden) as u64;
        assert_eq!(sent, expected, "bytes sent on wire {wire}");
    }
}
