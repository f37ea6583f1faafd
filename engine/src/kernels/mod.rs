//! Compute kernels: dequantization, activation quantization, quantized row dot
//! products and the threaded matmul built on them. No model knowledge here.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_k;
pub mod dequant;
pub mod dot;
pub mod matmul;
pub mod quantize;
pub mod quantize_weights;
pub mod weight;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_simd;

pub use matmul::{matmul, matmul_partial, MatmulScratch};
pub use weight::{Weight, WeightBytes};
