//! Attention alone, as a decode step (or a block of tokens) at a given
//! depth runs it: one call per layer over that layer's own f16 cache, so a
//! deep context is read from memory as a real step reads it, and a shallow
//! one stays in cache (the compute-bound case). Prints µs per layer call,
//! tokens/s of attention alone for a whole model, and the GB/s of cache
//! read.
//!
//! `cargo run --release -p shardlab-engine --example attention_speed [SHAPE] [DEPTH] [THREADS] [TOKENS] [SECONDS]`
//! (SHAPE: 8b (32 Q heads, 8 KV heads of 128, 32 layers) or smollm2 (9 Q
//! heads, 3 KV heads of 64, 30 layers); default 8b, depth 2048, 1 thread,
//! 1 token, 3 seconds)

use std::time::{Duration, Instant};

use half::f16;
use shardlab_engine::model::attention::{attend, AttnShape};
use shardlab_engine::model::kv_cache::KvRows;

struct Model {
    n_q: usize,
    n_kv: usize,
    head_dim: usize,
    layers: usize,
}

fn model(name: &str) -> Model {
    match name {
        "8b" => Model {
            n_q: 32,
            n_kv: 8,
            head_dim: 128,
            layers: 32,
        },
        "smollm2" => Model {
            n_q: 9,
            n_kv: 3,
            head_dim: 64,
            layers: 30,
        },
        other => panic!("unknown shape {other:?} (8b or smollm2)"),
    }
}

/// Pseudo-random values in about -1..1, different per `seed`.
fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i + seed * 7919) * 2654435761usize) % 2000) as f32 / 1000.0 - 1.0)
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let m = model(&args.next().unwrap_or_else(|| "8b".into()));
    let depth: usize = args.next().map_or(2048, |s| s.parse().expect("depth"));
    let threads: usize = args.next().map_or(1, |s| s.parse().expect("threads"));
    let tokens: usize = args.next().map_or(1, |s| s.parse().expect("tokens"));
    let seconds: f64 = args.next().map_or(3.0, |s| s.parse().expect("seconds"));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("thread pool");

    let row = m.n_kv * m.head_dim;
    let positions = depth + tokens;
    let cache: Vec<(Vec<f16>, Vec<f16>)> = (0..m.layers)
        .map(|l| {
            let widen = |v: Vec<f32>| v.into_iter().map(f16::from_f32).collect::<Vec<_>>();
            (
                widen(values(positions * row, 2 * l)),
                widen(values(positions * row, 2 * l + 1)),
            )
        })
        .collect();
    let q = values(tokens * m.n_q * m.head_dim, 99);
    let mut out = vec![0.0f32; q.len()];
    let shape = AttnShape {
        head_dim: m.head_dim,
        n_q: m.n_q,
        n_kv: m.n_kv,
        q_start: 0,
        kv_start: 0,
        group: m.n_q / m.n_kv,
    };
    let mut step = || {
        for (k, v) in &cache {
            attend(&shape, &q, KvRows::F16(k), KvRows::F16(v), depth, &mut out);
        }
    };
    step();
    let started = Instant::now();
    let mut steps = 0u64;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        step();
        steps += 1;
    }
    let per_step = started.elapsed().as_secs_f64() / steps as f64;
    let bytes = (m.layers * 2 * positions * row * 2) as f64;
    println!(
        "depth {depth} threads {threads} tokens {tokens}: {:.1} us a layer, {:.1} steps/s ({:.1} tokens/s), cache {:.2} GB/s",
        per_step / m.layers as f64 * 1e6,
        1.0 / per_step,
        tokens as f64 / per_step,
        bytes / per_step / 1e9,
    );
}
