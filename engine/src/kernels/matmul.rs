//! `out = x · Wᵀ` for a batch of token rows, split across the rayon pool by
//! weight rows. The activations are quantized once per call (once for
//! several weights that read the same input, [`matmul_each`]); each task
//! then streams its weight rows once while touching every token, so prefill
//! reads the weights once rather than once per token.
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
    matmul_each(&mut [(w, out)], x, tokens, scratch);
}

/// [`matmul`] of one input by several weights (a layer's q, k and v, or
/// its gate and up), quantizing the input once for all that share an
/// activation type. For a few tokens (decode), weights that share it run
/// as one parallel pass: a thread that finishes q's rows goes on to k's
/// instead of waiting for the other threads at the end of q, and the step
/// joins the pool once instead of once per weight.
pub fn matmul_each(
    products: &mut [(&Weight, &mut [f32])],
    x: &[f32],
    tokens: usize,
    scratch: &mut MatmulScratch,
) {
    let same_acts = |a: &(&Weight, &mut [f32]), b: &(&Weight, &mut [f32])| {
        activation_type(a.0.dtype) == activation_type(b.0.dtype)
    };
    for group in products.chunk_by_mut(same_acts) {
        for (w, out) in group.iter() {
            debug_assert_eq!((out.len(), x.len()), (tokens * w.rows, tokens * w.cols));
        }
        quantize_acts(group[0].0, x, tokens, scratch);
        // A prompt's batch keeps a pass per weight: one pass over all
        // rows measured slower there (BENCHMARKS.md, "One pass for q, k
        // and v").
        let per_pass = if tokens <= ONE_PASS_TOKENS {
            group.len()
        } else {
            1
        };
        for pass in group.chunks_mut(per_pass) {
            let weights: Vec<&Weight> = pass.iter().map(|(w, _)| *w).collect();
            products_of(&weights, tokens, scratch);
            let mut first = 0;
            for (w, out) in pass.iter_mut() {
                let wide = &scratch.wide[first * tokens..(first + w.rows) * tokens];
                transpose_into(wide, tokens, out, |v| v as f32);
                first += w.rows;
            }
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
    quantize_acts(w, x, tokens, scratch);
    products_of(&[w], tokens, scratch);
    transpose_into(&scratch.wide, tokens, out, |v| v);
}

/// Tokens transposed together: each row's eight sums are one cache line of
/// `wide`, and eight rows of `out` are written side by side.
const TRANSPOSE_TOKENS: usize = 8;

/// `out[t][r] = convert(wide[r][t])`, `wide` being `rows x tokens`, eight
/// tokens at a time (on the pool when the batch is large): a plain
/// column-by-column walk wrote one value per cache line of `out` and took
/// a fifth of a small model's prefill.
fn transpose_into<T: Send>(
    wide: &[f64],
    tokens: usize,
    out: &mut [T],
    convert: impl Fn(f64) -> T + Sync,
) {
    if tokens <= 1 {
        for (o, &v) in out.iter_mut().zip(wide) {
            *o = convert(v);
        }
        return;
    }
    let rows = wide.len() / tokens;
    let block = |(tb, out): (usize, &mut [T])| {
        let first = tb * TRANSPOSE_TOKENS;
        let mut outs: Vec<&mut [T]> = out.chunks_exact_mut(rows).collect();
        for (r, sums) in wide.chunks_exact(tokens).enumerate() {
            for (o, &v) in outs.iter_mut().zip(&sums[first..]) {
                o[r] = convert(v);
            }
        }
    };
    let width = TRANSPOSE_TOKENS * rows;
    if tokens > 4 * TRANSPOSE_TOKENS {
        out.par_chunks_mut(width).enumerate().for_each(block);
    } else {
        out.chunks_mut(width).enumerate().for_each(block);
    }
}

/// `x` quantized into `scratch.acts` as `w`'s kernels read it.
fn quantize_acts(w: &Weight, x: &[f32], tokens: usize, scratch: &mut MatmulScratch) {
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
}

/// Each weight of `ws` (all reading one activation type) times the
/// quantized activations, into `scratch.wide`: the weights' rows one after
/// another, `tokens` sums per row. The rows of all of them are one list of
/// tasks for the pool.
fn products_of(ws: &[&Weight], tokens: usize, scratch: &mut MatmulScratch) {
    let act_type = activation_type(ws[0].dtype);
    let act_row_bytes = act_type.row_bytes(ws[0].cols).unwrap_or(ws[0].cols * 4);
    let total_rows: usize = ws.iter().map(|w| w.rows).sum();
    let total_bytes: usize = ws.iter().map(|w| w.rows * w.row_bytes()).sum();
    let task_rows = rows_per_task(total_rows, total_bytes, tokens);
    scratch.wide.resize(total_rows * tokens, 0.0);
    let acts = &scratch.acts;
    let mut tasks = Vec::new();
    let mut rest: &mut [f64] = &mut scratch.wide;
    for w in ws {
        let chunk_rows = task_rows.min(w.rows.max(1));
        let (mine, after) = rest.split_at_mut(w.rows * tokens);
        rest = after;
        for (ci, o) in mine.chunks_mut(chunk_rows * tokens).enumerate() {
            tasks.push((*w, ci * chunk_rows, o));
        }
    }
    let run = |(w, first, o): (&Weight, usize, &mut [f64])| {
        let row_bytes = w.row_bytes();
        let n = o.len() / tokens;
        let data: &[u8] = &w.data;
        let rows = &data[first * row_bytes..(first + n) * row_bytes];
        if w.data.is_interleaved() {
            dot_rows_interleaved(w.dtype, rows, row_bytes, acts, act_row_bytes, tokens, o);
        } else {
            dot_rows(w.dtype, rows, row_bytes, acts, act_row_bytes, tokens, o);
        }
    };
    if tasks.len() == 1 || rayon::current_num_threads() <= 1 {
        tasks.into_iter().for_each(run);
    } else {
        tasks.into_par_iter().for_each(run);
    }
}

/// About eight tasks per thread, so a thread slowed by a neighbour hands
/// work to the others, in multiples of sixteen rows (the batch kernels
/// take rows sixteen or eight at a time, the one-token kernels four). One
/// thread takes the whole matmul as one task: each task prepares the
/// activation's block scales again, which a small model's decode would
/// notice. A token's pass over [`BIG_PASS_BYTES`] or more of weights takes
/// sixteen per thread: the last task, which one thread may run while the
/// others wait, is then half as long (measured in BENCHMARKS.md, "One pass
/// for q, k and v").
fn rows_per_task(rows: usize, bytes: usize, tokens: usize) -> usize {
    let per_thread = if tokens <= ONE_PASS_TOKENS && bytes >= BIG_PASS_BYTES {
        16
    } else {
        8
    };
    match rayon::current_num_threads() {
        0 | 1 => rows.max(1),
        threads => rows.div_ceil(threads * per_thread).next_multiple_of(16),
    }
}

/// Weights in one pass above which a decode step splits finer.
const BIG_PASS_BYTES: usize = 8 << 20;

/// Tokens up to which [`matmul_each`] makes one pass of several weights
/// (the decode of a few sequences; `quantize_acts` goes parallel above it).
const ONE_PASS_TOKENS: usize = 4;
