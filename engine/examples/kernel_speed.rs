//! Throughput of the quantized matmul on one thread (or THREADS), in two regimes:
//! a weight far larger than the caches (memory-bound, as an 8b decode is)
//! and one of 4.5 MiB that stays in L3 (compute-bound, as a laptop's faster memory
//! makes every decode). Prints weight GB/s for 1 token and token-rows per
//! second for a batch of tokens (32 unless BATCH says).
//!
//! `cargo run --release -p shardlab-engine --example kernel_speed [TYPE] [SECONDS] [THREADS] [BATCH] [COLS]`
//! (TYPE: q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k; default q4_0; BATCH tokens, default 32;
//! COLS a row's length, default 4096, as an 8b's hidden size; 768 is a small model's)

use std::time::{Duration, Instant};

use shardlab_engine::kernels::quantize_weights::quantize_weights;
use shardlab_engine::kernels::{matmul, MatmulScratch, QuantType, Weight, WeightBytes};

/// A `rows x cols` weight of `dtype` with pseudo-random values.
fn weight(dtype: QuantType, rows: usize, cols: usize) -> Weight {
    let row: Vec<f32> = (0..cols * 64)
        .map(|i| ((i * 2654435761usize) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let block = quantize_weights(dtype, &row).expect("quantizable type");
    let mut bytes = Vec::with_capacity(block.len() * rows.div_ceil(64));
    while bytes.len() < block.len() * rows / 64 {
        bytes.extend_from_slice(&block);
    }
    Weight {
        dtype,
        rows,
        cols,
        data: WeightBytes::owned(bytes),
    }
}

/// Runs `matmul` of `tokens` rows for about `seconds`; returns calls per second.
fn calls_per_second(w: &Weight, tokens: usize, seconds: f64) -> f64 {
    let x: Vec<f32> = (0..tokens * w.cols)
        .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
        .collect();
    let mut out = vec![0.0f32; tokens * w.rows];
    let mut scratch = MatmulScratch::default();
    matmul(w, &x, tokens, &mut out, &mut scratch);
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        matmul(w, &x, tokens, &mut out, &mut scratch);
        calls += 1;
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "q4_0".into());
    let dtype = match name.as_str() {
        "q4_0" => QuantType::Q4_0,
        "q4_1" => QuantType::Q4_1,
        "q5_0" => QuantType::Q5_0,
        "q5_1" => QuantType::Q5_1,
        "q8_0" => QuantType::Q8_0,
        "q2_k" => QuantType::Q2K,
        "q3_k" => QuantType::Q3K,
        "q4_k" => QuantType::Q4K,
        "q5_k" => QuantType::Q5K,
        "q6_k" => QuantType::Q6K,
        other => {
            panic!("unknown type {other}: q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k or q6_k")
        }
    };
    let seconds: f64 = args.next().map_or(2.0, |s| s.parse().expect("seconds"));
    let threads: usize = args.next().map_or(1, |s| s.parse().expect("threads"));
    let batch: usize = args.next().map_or(32, |s| s.parse().expect("batch tokens"));
    let cols: usize = args.next().map_or(4096, |s| s.parse().expect("columns"));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("thread pool");
    // The same bytes whatever the row length: 144 MiB and 4.5 MiB in Q4_0.
    for (regime, rows) in [("memory-bound", 64 * 1024), ("in cache", 2048)] {
        let rows = rows * 4096 / cols / 64 * 64;
        // As a model's weights are: interleaved at load where the type has
        // such a layout on this CPU.
        let w = weight(dtype, rows, cols);
        let w = w.interleaved().unwrap_or(w);
        let gb = w.byte_len() as f64 / 1e9;
        let decode = calls_per_second(&w, 1, seconds);
        let batch_calls = calls_per_second(&w, batch, seconds);
        println!(
            "{dtype} {regime:>12} ({:>7.1} MiB): 1 token {:>6.2} GB/s | {batch} tokens {:>7.1} Mrow-tokens/s",
            w.byte_len() as f64 / 1048576.0,
            gb * decode,
            batch_calls * (batch * rows) as f64 / 1e6,
        );
    }
}
