//! Seeded random tensor contents, generated fast and streamed.
//!
//! Every row draws from its own generator, seeded from (model seed, tensor
//! name, row index), so the bytes are the same whatever the thread count or
//! batch size, and rows are generated in parallel batches that the GGUF writer
//! consumes one at a time: a 40 GB model never sits in memory.
//!
//! Values are normal-ish floats (a sum of four uniforms) quantized with the
//! reference quantizers, rather than random bits in block form: the blocks
//! then have realistic scales and the weights realistic statistics, and the
//! quantizers run at several hundred MB/s per core, well inside the budget.

use std::io;

use rayon::prelude::*;

use crate::kernels::quantize_weights::quantize_weights_into;
use crate::model::gguf::writer::TensorSource;
use crate::model::gguf::GgmlType;

/// Output bytes generated per parallel batch.
const BATCH_BYTES: usize = 8 << 20;

/// SplitMix64: tiny, fast, and fully specified here, so a seed gives the same
/// model forever, whatever happens to the `rand` crate's algorithms.
#[derive(Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Approximately N(0, std²): the sum of four 16-bit uniforms, centred and
    /// scaled (Irwin-Hall). Bounded at ±3.46 std, which suits weights.
    #[inline(always)]
    pub fn normalish(&mut self, std: f32) -> f32 {
        let r = self.next_u64();
        let sum = (r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48);
        // Mean 2 * 65535; standard deviation 65536 / sqrt(3).
        // At most 4 * 65535: exact in i32, whose conversion is one instruction.
        (sum as i32 - 131_070) as f32 * (std * (1.732_050_8 / 65_536.0))
    }

    /// Uniform in [-1, 1).
    #[inline(always)]
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (2.0 / (1u64 << 24) as f32) - 1.0
    }
}

/// A seed for one named stream: FNV-1a of the name, mixed with the seed.
pub fn stream_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    SplitMix::new(seed ^ h).next_u64()
}

/// A `rows x cols` matrix of normal-ish values with standard deviation `std`,
/// quantized to `dtype`, produced in parallel batches of rows.
pub fn random_matrix(
    seed: u64,
    rows: usize,
    cols: usize,
    dtype: GgmlType,
    std: f32,
) -> TensorSource {
    TensorSource::chunks(move |sink| {
        let row_bytes = dtype.row_bytes(cols).ok_or_else(|| {
            io::Error::other(format!("{cols} columns is not whole {dtype} blocks"))
        })?;
        let batch_rows = (BATCH_BYTES / row_bytes.max(1)).clamp(1, rows.max(1));
        let mut buf = vec![0u8; batch_rows * row_bytes];
        let mut first = 0;
        while first < rows {
            let n = batch_rows.min(rows - first);
            let out = &mut buf[..n * row_bytes];
            out.par_chunks_mut(row_bytes)
                .enumerate()
                .try_for_each_init(
                    || vec![0f32; cols],
                    |x, (i, o)| {
                        let mut rng = SplitMix::new(
                            seed ^ ((first + i) as u64).wrapping_mul(0xa076_1d64_78bd_642f),
                        );
                        rng.next_u64();
                        for v in x.iter_mut() {
                            *v = rng.normalish(std);
                        }
                        quantize_weights_into(dtype.into(), x, o).map_err(io::Error::other)
                    },
                )?;
            sink(out)?;
            first += n;
        }
        Ok(())
    })
}

/// A vector of F32 values `centre + spread * uniform[-1, 1)`: norm weights
/// near 1, biases near 0.
pub fn random_vector(seed: u64, len: usize, centre: f32, spread: f32) -> TensorSource {
    let mut rng = SplitMix::new(seed);
    let mut bytes = Vec::with_capacity(len * 4);
    for _ in 0..len {
        bytes.extend_from_slice(&(centre + spread * rng.uniform()).to_le_bytes());
    }
    TensorSource::Bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalish_has_the_requested_spread() {
        let mut rng = SplitMix::new(42);
        let n = 200_000;
        let xs: Vec<f32> = (0..n).map(|_| rng.normalish(0.5)).collect();
        let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.01, "std {}", var.sqrt());
        assert!(xs.iter().all(|v| v.abs() <= 0.5 * 3.47));
    }

    #[test]
    fn streams_differ_by_name_and_seed() {
        assert_ne!(stream_seed(0, "a"), stream_seed(0, "b"));
        assert_ne!(stream_seed(0, "a"), stream_seed(1, "a"));
        assert_eq!(
            stream_seed(7, "blk.0.attn_q.weight"),
            stream_seed(7, "blk.0.attn_q.weight")
        );
    }

    fn collect(src: &TensorSource) -> Vec<u8> {
        let mut out = Vec::new();
        match src {
            TensorSource::Chunks(f) => f(&mut |c: &[u8]| {
                out.extend_from_slice(c);
                Ok(())
            })
            .expect("produce"),
            TensorSource::Bytes(b) => out.extend_from_slice(b),
        }
        out
    }

    #[test]
    fn matrices_are_deterministic_and_independent_of_threads() {
        let src = random_matrix(9, 37, 64, GgmlType::Q4_0, 0.1);
        let a = collect(&src);
        assert_eq!(a.len(), 37 * 2 * 18);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        assert_eq!(one.install(|| collect(&src)), a);
        assert_ne!(collect(&random_matrix(10, 37, 64, GgmlType::Q4_0, 0.1)), a);
    }
}
