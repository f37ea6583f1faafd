//! Sharding: which bytes of which tensor each node holds.
//!
//! `slice` applies the slicing rules (docs/ARCHITECTURE.md) to one tensor: output-
//! dimension (column-parallel) slices are contiguous rows, input-dimension
//! (row-parallel) slices are whole blocks of each row. Quantized bytes are
//! never dequantized. `plan` decides, before anything loads, which layout
//! each node gets and how much memory that will take.

pub mod plan;
pub mod slice;
