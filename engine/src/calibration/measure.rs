//! The measurement behind a [`Calibration`]: memory read bandwidth at the
//! node's thread count and at one thread per core, and each weight type's
//! matmul rate on a matrix small enough to stay in cache, for one token
//! and for a 32-token batch, and for one token over a matrix far larger
//! than the caches. About 1.5 s on a 2-core host.

use std::time::Instant;

use super::{Calibration, KernelRate};
use crate::kernels::interleave::{interleave, runs_here};
use crate::kernels::quantize_weights::quantize_weights;
use crate::kernels::weight::copy_map;
use crate::kernels::{matmul, MatmulScratch, Weight, WeightBytes};
use crate::metrics::bandwidth::BandwidthProbe;
use crate::metrics::quantile;
use crate::model::gguf::GgmlType;

/// The weight types measured: every type the kernels have a fast path for,
/// and the float types small models keep some matrices in.
pub const CALIBRATED_TYPES: [GgmlType; 12] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::F16,
    GgmlType::F32,
];

/// Far larger than any L3 this runs on, so the probe reads memory.
const BANDWIDTH_BYTES: usize = 96 << 20;
/// The in-cache matrix: 1024 rows of 1024 values (0.5-4 MiB by type).
const ROWS: usize = 1024;
const COLS: usize = 1024;
/// The streamed matrix: copies of the in-cache one up to at least this
/// many bytes, past any last-level cache this runs on.
const STREAM_BYTES: usize = 48 << 20;
/// Tokens of the prefill measurement: one tile of the batched kernels.
const BATCH: usize = 32;
/// Each rate is the median of this many short runs: what a run of the
/// model meets on this machine as it is, neighbours included, without the
/// one run a neighbour took the core from.
const RUNS: usize = 8;
/// How long one run lasts (at least two calls).
const RUN_SECONDS: f64 = 0.0015;

/// Measures this process at `threads` threads, on the current rayon pool.
pub fn measure(threads: usize) -> Calibration {
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bandwidth = read_bandwidth(threads);
    let host_bandwidth = if cores == threads {
        bandwidth
    } else {
        read_bandwidth(cores)
    };
    let kernels = CALIBRATED_TYPES
        .iter()
        .filter_map(|&dtype| kernel_rate(dtype))
        .collect();
    let call_overhead = in_cache_weight(GgmlType::Q8_0, 16, 256)
        .map_or(0.0, |tiny| 1.0 / calls_per_second(&tiny, 1));
    Calibration {
        host: crate::platform::hostname().unwrap_or_else(|| "unknown".into()),
        cores,
        threads,
        bandwidth,
        host_bandwidth,
        kernels,
        call_overhead,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The best of three passes after the buffer is touched.
fn read_bandwidth(threads: usize) -> f64 {
    let probe = BandwidthProbe::new(BANDWIDTH_BYTES, threads);
    (0..3).map(|_| probe.measure(1)).fold(0.0, f64::max)
}

fn kernel_rate(dtype: GgmlType) -> Option<KernelRate> {
    let w = in_cache_weight(dtype, ROWS, COLS)?;
    let bytes = w.byte_len() as f64;
    // The same bytes in rows a quarter as long: the difference per row
    // is the cost of a row beyond its bytes.
    let narrow = in_cache_weight(dtype, ROWS * 4, COLS / 4)?;
    let wide_row = 1.0 / calls_per_second(&w, 1) / ROWS as f64;
    let narrow_row = 1.0 / calls_per_second(&narrow, 1) / (ROWS * 4) as f64;
    // Per row: overhead + cols x per-value cost, at two widths.
    let per_value = ((wide_row - narrow_row) / (COLS - COLS / 4) as f64).max(0.0);
    let row_overhead = (narrow_row - per_value * (COLS / 4) as f64).max(0.0);
    Some(KernelRate {
        dtype,
        decode: bytes / ROWS as f64 / wide_row,
        prefill: bytes * BATCH as f64 * calls_per_second(&w, BATCH),
        streamed: streamed_rate(dtype)?,
        row_overhead,
    })
}

/// One-token bytes per second of `dtype`'s kernel over weights far larger
/// than the caches, as a big model decodes: one matrix of [`ROWS`] rows
/// after another, each from memory no earlier call touched, so every
/// matrix's start-up (its first rows not yet prefetched, its activation
/// quantized) counts as it does layer after layer.
fn streamed_rate(dtype: GgmlType) -> Option<f64> {
    let pattern = quantized(dtype, ROWS, COLS)?;
    // Laid out as a model's weights are at load (`Weight::interleaved`).
    let interleaved = runs_here(dtype.quant_type());
    let pattern = if interleaved {
        interleave(dtype.quant_type(), &pattern, ROWS, pattern.len() / ROWS)
    } else {
        pattern
    };
    let copies = STREAM_BYTES.div_ceil(pattern.len());
    let all = page_mapped(&pattern, copies, interleaved)?;
    let matrices: Vec<Weight> = (0..copies)
        .map(|i| {
            let bytes = all.slice(i * pattern.len()..(i + 1) * pattern.len());
            Weight {
                dtype: dtype.quant_type(),
                rows: ROWS,
                cols: COLS,
                data: if interleaved {
                    WeightBytes::Interleaved(Box::new(bytes))
                } else {
                    bytes
                },
            }
        })
        .collect();
    let x: Vec<f32> = (0..COLS).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
    let mut out = vec![0.0f32; ROWS];
    let mut scratch = MatmulScratch::default();
    let mut sweep = || {
        let started = Instant::now();
        for w in &matrices {
            matmul(w, &x, 1, &mut out, &mut scratch);
        }
        started.elapsed().as_secs_f64()
    };
    sweep();
    let times: Vec<f64> = (0..RUNS / 2).map(|_| sweep()).collect();
    Some((pattern.len() * copies) as f64 / quantile(&times, 0.5)?)
}

/// `copies` of `pattern` in pages as a model's weights are held: an
/// interleaved copy's own map (`copy_map`, huge pages where the kernel
/// gives them) or, for a type read in place, ordinary pages as a mapped
/// file has (a heap buffer this size may get huge pages, and its kernel
/// would then run faster than a model's ever does).
fn page_mapped(pattern: &[u8], copies: usize, interleaved: bool) -> Option<WeightBytes> {
    let len = pattern.len() * copies;
    let mut map = if interleaved {
        copy_map(len)?
    } else {
        let map = memmap2::MmapMut::map_anon(len).ok()?;
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::NoHugePage);
        map
    };
    for chunk in map.chunks_exact_mut(pattern.len()) {
        chunk.copy_from_slice(pattern);
    }
    let map = std::sync::Arc::new(map.make_read_only().ok()?);
    Some(WeightBytes::Mapped { map, start: 0, len })
}

/// A `rows x cols` weight of pseudo-random values.
fn in_cache_weight(dtype: GgmlType, rows: usize, cols: usize) -> Option<Weight> {
    let bytes = quantized(dtype, rows, cols)?;
    let w = Weight {
        dtype: dtype.quant_type(),
        rows,
        cols,
        data: WeightBytes::owned(bytes),
    };
    // As a model's weights are at load.
    Some(w.interleaved().unwrap_or(w))
}

/// `rows x cols` pseudo-random values in `dtype`'s blocks.
fn quantized(dtype: GgmlType, rows: usize, cols: usize) -> Option<Vec<u8>> {
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 2654435761usize) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    quantize_weights(dtype.quant_type(), &values).ok()
}

/// Matmuls of `tokens` rows per second: the median of [`RUNS`] runs.
fn calls_per_second(w: &Weight, tokens: usize) -> f64 {
    median_rate(w, tokens, RUNS)
}

/// Matmuls of `tokens` rows per second: the median of `runs` runs of
/// [`RUN_SECONDS`] (at least two calls each), after one warm-up call.
fn median_rate(w: &Weight, tokens: usize, runs: usize) -> f64 {
    let x: Vec<f32> = (0..tokens * w.cols)
        .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
        .collect();
    let mut out = vec![0.0f32; tokens * w.rows];
    let mut scratch = MatmulScratch::default();
    matmul(w, &x, tokens, &mut out, &mut scratch);
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let mut calls = 0u64;
        while calls < 2 || started.elapsed().as_secs_f64() < RUN_SECONDS {
            matmul(w, &x, tokens, &mut out, &mut scratch);
            calls += 1;
        }
        rates.push(calls as f64 / started.elapsed().as_secs_f64());
    }
    quantile(&rates, 0.5).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_measured_with_positive_rates() {
        let c = measure(1);
        assert_eq!(c.threads, 1);
        assert!(c.bandwidth > 0.0 && c.host_bandwidth > 0.0 && c.call_overhead > 0.0);

        let measured: Vec<GgmlType> = c.kernels.iter().map(|k| k.dtype).collect();
        assert_eq!(measured, CALIBRATED_TYPES.to_vec());
        for k in &c.kernels {
            assert!(
                k.decode > 0.0 && k.prefill > 0.0 && k.streamed > 0.0,
                "{k:?}"
            );
        }
        // A type not measured falls back to the slowest measured rate.
        assert!(!CALIBRATED_TYPES.contains(&GgmlType::BF16));
        let bf16 = c.kernel(GgmlType::BF16);
        let slowest = c.kernels.iter().map(|k| k.decode).fold(f64::MAX, f64::min);
        assert!(bf16.decode <= slowest);
    }
}
