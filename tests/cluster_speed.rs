//! Cluster speed features over real node processes on loopback: several
//! sequences in flight through a pipeline, and reduced-precision
//! activations on the wire.

use shardlab_engine::cluster::coordinator::Cluster;
use shardlab_engine::model::generate::SeqStep;
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
    // One sequence a batch: four batches in flight through two stages.
    let (got, max_in_flight) = run_in_batches(&mut cluster, &prompts, 1);
    assert_eq!(max_in_flight, prompts.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "sequence {i}, one a batch");
    }
    // Two sequences a batch (a `StepMany` each), two batches in flight:
    // each stage runs one while the other stage runs the other.
    for seq in 0..prompts.len() {
        cluster.truncate_seq(seq as u32, 0).expect("reset");
    }
    let (got, max_in_flight) = run_in_batches(&mut cluster, &prompts, 2);
    assert_eq!(max_in_flight, 2);
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "sequence {i}, two a batch");
    }
    // Sequence 0 still works through the one-sequence path afterwards.
    cluster.truncate_all(0).expect("truncate");
    let (_, again) = greedy(&prompts[0], |ids, p| cluster.step(ids, p).expect("step"));
    assert_eq!(again, expected[0]);
}

/// Greedy-decodes every prompt, `per_batch` sequences to a batch: every
/// batch's prefill goes out before any result comes back, and each batch's
/// next step goes out as soon as its logits arrive. Returns each
/// sequence's tokens and the most batches that were in flight at once.
fn run_in_batches(
    cluster: &mut Cluster,
    prompts: &[Vec<u32>],
    per_batch: usize,
) -> (Vec<Vec<u32>>, usize) {
    let mut got: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let batches: Vec<Vec<SeqStep>> = prompts
        .chunks(per_batch)
        .enumerate()
        .map(|(b, chunk)| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, p)| SeqStep {
                    seq: (b * per_batch + i) as u32,
                    tokens: p.clone(),
                    pos: 0,
                })
                .collect()
        })
        .collect();
    for batch in &batches {
        cluster.submit(batch).expect("submit prefill");
    }
    assert_eq!(cluster.in_flight(), batches.len());
    let mut max_in_flight = 0;
    // Bounded: one collect per step of every batch.
    for _ in 0..batches.len() * (TOKENS + 1) {
        if cluster.in_flight() == 0 {
            break;
        }
        max_in_flight = max_in_flight.max(cluster.in_flight());
        let mut next = Vec::new();
        for (seq, logits) in cluster.collect().expect("collect") {
            let s = seq as usize;
            let token = argmax(&logits);
            got[s].push(token);
            if got[s].len() < TOKENS {
                next.push(SeqStep {
                    seq,
                    tokens: vec![token],
                    pos: prompts[s].len() + got[s].len() - 1,
                });
            }
        }
        if !next.is_empty() {
            cluster.submit(&next).expect("submit decode");
        }
    }
    assert_eq!(cluster.in_flight(), 0);
    (got, max_in_flight)
}

/// Measures every wire precision against the exact one on tensor 2, over
/// several prompts (one prompt's figure is one sample of a rounding
/// amplified through 30 layers); prints the figures (quoted in
/// BENCHMARKS.md) and holds them to bounds. Quality on a real text is
/// `bench/perplexity.sh`'s job.
#[test]
fn reduced_precision_wires_stay_close_to_the_exact_logits() {
    let m = smollm2();
    let tokenizer = Tokenizer::from_gguf(&m.gguf).expect("tokenizer");
    let prompts: Vec<Vec<u32>> = [
        "The capital of France is",
        "Once upon a time, in a small village,",
        "def fibonacci(n):",
    ]
    .iter()
    .map(|t| tokenizer.encode(t, true).expect("encodes"))
    .collect();
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster = spawn(2, home.path());
    let tensor: LayoutRequest = "tensor".parse().expect("layout");
    // Per prompt: prefill logits and greedy tokens; and the bytes sent.
    let mut run = |wire: WireDtype| {
        load(&mut cluster, &m, &tensor, wire);
        cluster.reset_metrics();
        let runs: Vec<(Vec<f32>, Vec<u32>)> = prompts
            .iter()
            .map(|p| {
                cluster.truncate_all(0).expect("truncate");
                greedy(p, |ids, pos| cluster.step(ids, pos).expect("step"))
            })
            .collect();
        let sent: u64 = cluster
            .metrics()
            .into_iter()
            .map(|(_, r)| r.expect("metrics"))
            .flat_map(|m| m.traffic)
            .map(|t| t.bytes_sent)
            .sum();
        (runs, sent)
    };
    let (exact, exact_sent) = run(WireDtype::F64);
    assert_eq!(exact[0].1, single_node(&m, &prompts[0]));
    // Measured on SmolLM2 over the three prompts (BENCHMARKS.md, "Reduced-
    // precision activations"): f32 0.75 / 0.11 / 75, f16 0.97 / 0.20 / 53,
    // bf16 1.00 / 0.22 / 48, q8 2.08 / 0.47 / 25. Bounds at about twice
    // that: (wire, max |Δlogit|, mean |Δlogit| of the prefill logits,
    // greedy positions equal of 96).
    let bounds = [
        (WireDtype::F32, 1.5, 0.25, 35),
        (WireDtype::F16, 2.0, 0.4, 25),
        (WireDtype::Bf16, 2.0, 0.45, 24),
        (WireDtype::Q8, 4.0, 0.9, 12),
    ];
    let hidden = m.summary.config.hidden;
    let all = TOKENS * prompts.len();
    for (wire, max_bound, mean_bound, same_bound) in bounds {
        let (runs, sent) = run(wire);
        let (mut max, mut sum, mut n, mut same) = (0.0f32, 0.0f64, 0usize, 0usize);
        for ((want_logits, want_tokens), (logits, tokens)) in exact.iter().zip(&runs) {
            for (a, b) in want_logits.iter().zip(logits) {
                max = max.max((a - b).abs());
                sum += (a - b).abs() as f64;
                n += 1;
            }
            same += want_tokens
                .iter()
                .zip(tokens)
                .filter(|(a, b)| a == b)
                .count();
        }
        let mean = sum / n as f64;
        eprintln!(
            "wire {wire}: prefill logits max |Δ| {max:.3e}, mean |Δ| {mean:.3e}; {same} of {all} greedy positions equal; {sent} bytes sent vs {exact_sent}"
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
            "wire {wire}: only {same} of {all} greedy positions agree"
        );
        // Every value crossed at the wire's size (rows are whole Q8 blocks).
        let expected = exact_sent / WireDtype::F64.partial_bytes(hidden) as u64
            * wire.partial_bytes(hidden) as u64;
        assert_eq!(sent, expected, "bytes sent on wire {wire}");
    }
}
