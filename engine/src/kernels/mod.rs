//! Compute kernels: dequantization, activation quantization, quantized row dot
//! products and the threaded matmul built on them. No model knowledge here.

pub mod dequant;
pub mod dot;
pub mod matmul;
pub mod quantize;
pub mod quantize_weights;
pub mod weight;

#[cfg(test)]
mod tests;

pub use matmul::{matmul, MatmulScratch};
pub use weight::{Weight, WeightBytes};
