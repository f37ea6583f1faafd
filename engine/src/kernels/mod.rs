//! Compute kernels: dequantization, activation quantization, quantized row dot
//! products and the threaded matmul built on them. No model knowledge here,
//! and no file format: weights arrive as [`QuantType`] plus bytes, and the
//! bytes are read through the typed block layouts in [`blocks`].

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_gemm;
#[cfg(target_arch = "x86_64")]
mod avx2_gemm_k;
#[cfg(target_arch = "x86_64")]
mod avx2_gemm_k16;
#[cfg(target_arch = "x86_64")]
mod avx2_gemv;
#[cfg(target_arch = "x86_64")]
mod avx2_interleaved;
#[cfg(target_arch = "x86_64")]
mod avx2_k;
#[cfg(target_arch = "x86_64")]
mod avx2_k_gemv;
#[cfg(target_arch = "x86_64")]
mod avx2_k_low;
#[cfg(target_arch = "x86_64")]
mod avx512_gemm;
#[cfg(target_arch = "x86_64")]
mod avx512_gemm_k;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod block32;
pub mod blocks;
pub mod dequant;
pub mod dot;
#[cfg(target_arch = "x86_64")]
pub(crate) mod f16_heads;
pub mod interleave;
pub mod matmul;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
mod neon_k;
pub(crate) mod prefetch;
pub mod quant_type;
pub mod quantize;
pub mod quantize_weights;
pub mod vector;
pub mod weight;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_simd;

pub use blocks::{QK, QK_K};
pub use matmul::{matmul, matmul_each, matmul_partial, MatmulScratch};
pub use quant_type::QuantType;
pub use weight::{Weight, WeightBytes};
