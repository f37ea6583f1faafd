//! Sharding: which bytes of which tensor each node holds.
//!
//! `slice` applies the slicing rules of DESIGN.md to one tensor: output-
//! dimension (column-parallel) slices are contiguous rows, input-dimension
//! (row-parallel) slices are whole blocks of each row. Quantized bytes are
//! never dequantized.

pub mod slice;
