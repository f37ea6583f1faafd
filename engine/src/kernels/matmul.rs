//! `out = x · Wᵀ` for a batch of token rows, split across the rayon pool by
//! weight rows. The activations are quantized once per call; each task then
//! streams its weight rows once while touching every token, so prefill reads
//! the weights once rather than once per token.
//!
//! Dots are summed in f64 (see `dot.rs`). [`matmul`] rounds the result to
//! f32; [`matmul_partial`] keeps f64 for row-parallel layers, whose partial
//! sums are added across nodes before rounding.

use rayon::prelude::*;

use super::dot::{dot_rows, dot_rows_interleaved};
use super::quantize::{activation_type, quantize_row};
use super::weight::Weight;

/// Reusable buffers so the decode loop does not allocate per matmul.
#[derive(Default)]
pub struct MatmulScratch {
    acts: Vec<u8>,
    /// `rows x tokens`, the layout the row tasks write.
    wide: Vec<f64>,
}

/// `x` is `tokens x w.cols` (row-major); `out` becomes `tokens x w.rows`.
pub fn matmul(w: &Weight, x: &[f32], tokens: usize, out: &mut [f32], scratch: &mut MatmulScratch) {
    debug_assert_eq!(out.len(), tokens * w.rows);
    compute(w, x, tokens, scratch);
    for (r, col) in scratch.wide.chunks_exact(tokens).enumerate() {
        for (t, &v) in col.iter().enumerate() {
            out[t * w.rows + r] = v as f32;
        }
    }
}

/// As [`matmul`], but leaves the unrounded f64 sums in `out`.
pub fn matmul_partial(
    w: &Weight,
    x: &[f32],
    tokens: usize,
    out: &mut [f64],
    scratch: &mut MatmulScratch,
) {
    debug_assert_eq!(out.len(), tokens * w.rows);
    compute(w, x, tokens, scratch);
    for (r, col) in scratch.wide.chunks_exact(tokens).enumerate() {
        for (t, &v) in col.iter().enumerate() {
            out[t * w.rows + r] = v;
        }
    }
}

fn compute(w: &Weight, x: &[f32], tokens: usize, scratch: &mut MatmulScratch) {
    debug_assert_eq!(x.len(), tokens * w.cols);
    let act_type = activation_type(w.dtype);
    let act_row_bytes = act_type.row_bytes(w.cols).unwrap_or(w.cols * 4);
    scratch.acts.resize(act_row_bytes * tokens, 0);
    if tokens > 4 {
        scratch
            .acts
            .par_chunks_mut(act_row_bytes)
            .zip(x.par_chunks(w.cols))
            .for_each(|(o, xr)| quantize_row(act_type, xr, o));
    } else {
        for (o, xr) in scratch.acts.chunks_mut(act_row_bytes).zip(x.chunks(w.cols)) {
            quantize_row(act_type, xr, o);
        }
    }
    let row_bytes = w.row_bytes();
    let chunk_rows = rows_per_task(w.rows);
    let data: &[u8] = &w.data;
    let interleaved = w.data.is_interleaved();
    let acts = &scratch.acts;
    scratch.wide.resize(w.rows * tokens, 0.0);
    scratch
        .wide
        .par_chunks_mut(chunk_rows * tokens)
        .enumerate()
        .for_each(|(ci, o)| {
            let first = ci * chunk_rows;
            let n = o.len() / tokens;
            let rows = &data[first * row_bytes..(first + n) * row_bytes];
            if interleaved {
                dot_rows_interleaved(w.dtype, rows, row_bytes, acts, act_row_bytes, tokens, o);
            } else {
                dot_rows(w.dtype, rows, row_bytes, acts, act_row_bytes, tokens, o);
            }
        });
}

/// About eight tasks per thread, so a thread slowed by a neighbour hands
/// work to the others, in whole groups of eight rows (the batch kernels
/// take rows eight at a time, the one-token kernels four). One thread
/// takes the whole matmul as one task: each task prepares the activation's
/// block scales again, which a small model's decode would notice.
fn rows_per_task(rows: usize) -> usize {
    match rayon::current_num_threads() {
        0 | 1 => rows.max(1),
        threads => rows.div_ceil(threads * 8).next_multiple_of(8),
    }
}
