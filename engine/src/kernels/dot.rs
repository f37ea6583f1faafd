//! Row dot products: one weight row (GGML blocks) against one activation row
//! already quantized by [`super::quantize`]. Integer products inside a block,
//! one float multiply per block, as llama.cpp does.
//!
//! Sums are carried in f64. Each block's product (an f16×f16 scale times an
//! integer) is exact in f64, so a row summed in pieces (tensor parallelism
//! splits rows across nodes) and the same row summed whole round to the
//! same f32: every layout gives the same activations as one node.
//!
//! The bodies here are plain Rust and the reference for the hand-written
//! kernels. [`dot_rows`] picks at run time: an AVX2 kernel (`avx2.rs`,
//! `avx2_k.rs`) or a NEON one (`neon.rs`, `neon_k.rs`) where one exists for
//! the type, else these bodies as they are.

use super::blocks::{
    as_blocks, Bf16Le, Block, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
    BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, F16Le, F32Le, QK_K,
};
use super::dequant::{q3k_scales, scale_min_k4};
use super::quantize::activation_type;
use super::QuantType;

/// Dots consecutive weight rows in `w` against `tokens` activation rows.
/// `acts` holds the activation rows back to back, each `act_row_bytes` long,
/// in `activation_type(dtype)`'s format. `out[r * tokens + t]` receives
/// dot(weight row r, activation row t).
pub fn dot_rows(
    dtype: QuantType,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    let isa = Isa::detected().last().copied().unwrap_or(Isa::Portable);
    dot_rows_isa(isa, dtype, w, row_bytes, acts, act_row_bytes, tokens, out)
}

/// [`dot_rows`] for a weight interleaved at load (`interleave.rs`): whole
/// groups of eight rows in that layout, then rows in the file layout.
pub fn dot_rows_interleaved(
    dtype: QuantType,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    let isa = Isa::detected().last().copied().unwrap_or(Isa::Portable);
    dot_rows_interleaved_isa(isa, dtype, w, row_bytes, acts, act_row_bytes, tokens, out)
}

/// [`dot_rows_interleaved`] with the kernel family chosen by the caller.
/// Families without interleaved kernels read the file layout back.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dot_rows_interleaved_isa(
    isa: Isa,
    dtype: QuantType,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let fits = kernel_shapes_fit(dtype, w, row_bytes, acts, act_row_bytes, tokens, out);
        let simd = isa != Isa::Portable && Isa::detected().contains(&isa);
        if super::interleave::has_layout(dtype) && fits && simd {
            use super::avx2_gemm::{plain as mp, vnni as mv};
            use super::avx2_gemm_k::{plain as kp, vnni as kv};
            use super::avx2_interleaved::{no_scales, plain as gp, vnni as gv};
            use super::block32::{Q4_0, Q4_1, Q8_0};
            type Gemm = unsafe fn(&[u8], usize, &[u8], usize, usize, &mut [f64]) -> usize;
            // The one-token kernel, as what it prepares of a token's
            // activation and the kernel given that; then the batch kernel.
            // One family's kernels for a 32-value format `F`.
            fn block32<const F: u8>(vnni: bool) -> (Gemv, Gemm) {
                if vnni {
                    (
                        (gv::scales::<F>, gv::rows_with::<F>),
                        mv::rows_interleaved::<F>,
                    )
                } else {
                    (
                        (gp::scales::<F>, gp::rows_with::<F>),
                        mp::rows_interleaved::<F>,
                    )
                }
            }
            let vnni = isa == Isa::Avx2Vnni;
            let (gemv, gemm): (Gemv, Gemm) = match (vnni, dtype) {
                (_, QuantType::Q4_0) => block32::<Q4_0>(vnni),
                (_, QuantType::Q4_1) => block32::<Q4_1>(vnni),
                (_, QuantType::Q8_0) => block32::<Q8_0>(vnni),
                (false, _) => ((no_scales, gp::rows_q4k_with), kp::rows_q4k_interleaved),
                (true, _) => ((no_scales, gv::rows_q4k_with), kv::rows_q4k_interleaved),
            };
            // With VNNI, Q4_0, Q4_1 and Q4_K batches take sixteen rows at a
            // time first (`avx512_gemm.rs`, `avx512_gemm_k.rs`), then a last
            // group of eight.
            let wide: Option<Gemm> = match (vnni, dtype) {
                (true, QuantType::Q4_0) => Some(super::avx512_gemm::rows_interleaved::<Q4_0>),
                (true, QuantType::Q4_1) => Some(super::avx512_gemm::rows_interleaved::<Q4_1>),
                (true, QuantType::Q4K) => Some(super::avx512_gemm_k::rows_q4k_interleaved),
                _ => None,
            };
            // SAFETY: the CPU supports the features each function is built
            // for (VNNI and AVX-512F only where it has those too), and the
            // shapes fit.
            let done = unsafe {
                if tokens < few_tokens(dtype, vnni) {
                    token_by_token(gemv, w, row_bytes, acts, act_row_bytes, tokens, out)
                } else {
                    let paired = wide.map_or(0, |wide| {
                        wide(w, row_bytes, acts, act_row_bytes, tokens, out)
                    });
                    let (w, out) = (&w[paired * row_bytes..], &mut out[paired * tokens..]);
                    paired + gemm(w, row_bytes, acts, act_row_bytes, tokens, out)
                }
            };
            let (w, out) = (&w[done * row_bytes..], &mut out[done * tokens..]);
            if !w.is_empty() {
                dot_rows_isa(isa, dtype, w, row_bytes, acts, act_row_bytes, tokens, out);
            }
            return;
        }
    }
    let rows = w.len().checked_div(row_bytes).unwrap_or(0);
    let file = super::interleave::deinterleave(dtype, w, rows, row_bytes);
    dot_rows_isa(
        isa,
        dtype,
        &file,
        row_bytes,
        acts,
        act_row_bytes,
        tokens,
        out,
    )
}

/// Below this many tokens, interleaved weights of `dtype` take the
/// one-token kernel once per token over rows that stay in cache
/// ([`token_by_token`]): the batch kernel's unpacking of each group costs
/// about one token's products, too much to share among a few. Measured
/// per type, from memory and in cache: Q4_0 and Q8_0 gain token by token
/// up to seven rows, Q4_1 and Q4_K only up to four (docs/ARCHITECTURE.md,
/// "Batches of a few rows"). With VNNI, Q4_K batches take sixteen rows a
/// vector (`avx512_gemm_k.rs`), which beats the one-token kernel from two
/// tokens on.
#[cfg(target_arch = "x86_64")]
fn few_tokens(dtype: QuantType, vnni: bool) -> usize {
    match (dtype, vnni) {
        (QuantType::Q4_0 | QuantType::Q8_0, _) => 8,
        (QuantType::Q4K, true) => 2,
        _ => 5,
    }
}

/// Weight bytes [`token_by_token`] takes at a time: well inside L2, so
/// every token after the first reads them from cache, not memory.
#[cfg(target_arch = "x86_64")]
const FEW_TOKENS_CHUNK_BYTES: usize = 96 * 1024;

/// A one-token kernel on interleaved rows: what it prepares of a token's
/// activation row (its block scales and sums), and the kernel given
/// that, which returns the rows it did (whole groups).
#[cfg(target_arch = "x86_64")]
type Gemv = (
    unsafe fn(&[u8]) -> super::avx2::ActScales,
    unsafe fn(&[u8], usize, &[u8], &super::avx2::ActScales, &mut [f64]) -> usize,
);

/// The one-token kernel `gemv` over `tokens` tokens (one or a few): a chunk
/// of whole groups of eight rows at a time, every token in turn, so the
/// weights are read from memory once. Each token's activation is prepared
/// once, not once per chunk. Each value is the one-token kernel's, as a
/// token run alone gets. Returns the rows done (whole groups).
///
/// # Safety
/// As `gemv`'s: the CPU has its features, and the shapes fit
/// ([`kernel_shapes_fit`]).
#[cfg(target_arch = "x86_64")]
unsafe fn token_by_token(
    (prepare, gemv): Gemv,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) -> usize {
    if tokens == 1 {
        // Decode's every matmul task: nothing to collect.
        return gemv(w, row_bytes, acts, &prepare(acts), out);
    }
    let acts: Vec<&[u8]> = acts.chunks_exact(act_row_bytes).take(tokens).collect();
    let scales: Vec<_> = acts.iter().map(|a| prepare(a)).collect();
    const GROUP: usize = super::avx2_gemm::ROWS;
    let grouped = w.len() / row_bytes / GROUP * GROUP;
    let chunk = (FEW_TOKENS_CHUNK_BYTES / row_bytes / GROUP).max(1) * GROUP;
    let mut one = vec![0.0f64; chunk.min(grouped)];
    let mut start = 0;
    while start < grouped {
        let n = chunk.min(grouped - start);
        let rows = &w[start * row_bytes..(start + n) * row_bytes];
        for (t, (act, sc)) in acts.iter().zip(&scales).enumerate() {
            let done = gemv(rows, row_bytes, act, sc, &mut one[..n]);
            debug_assert_eq!(done, n);
            for (r, &v) in one[..n].iter().enumerate() {
                out[(start + r) * tokens + t] = v;
            }
        }
        start += n;
    }
    grouped
}

/// The kernel families, slowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    /// AVX2 with FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// The above plus AVX-512 VNNI on 256-bit vectors (and AVX-512F, whose
    /// 512-bit f64 vectors the batch kernel's float step uses).
    #[cfg(target_arch = "x86_64")]
    Avx2Vnni,
    /// aarch64's base SIMD (always present there).
    #[cfg(target_arch = "aarch64")]
    Neon,
    /// NEON plus the dotprod extension (`sdot`).
    #[cfg(target_arch = "aarch64")]
    NeonDot,
}

impl Isa {
    /// Every family this CPU can run, slowest first (tests run them all).
    pub(crate) fn detected() -> &'static [Isa] {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                if has!("avx512vnni") && has!("avx512vl") && has!("avx512f") {
                    return &[Isa::Portable, Isa::Avx2, Isa::Avx2Vnni];
                }
                return &[Isa::Portable, Isa::Avx2];
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            use std::arch::is_aarch64_feature_detected as has;
            if has!("neon") {
                if has!("dotprod") {
                    return &[Isa::Portable, Isa::Neon, Isa::NeonDot];
                }
                return &[Isa::Portable, Isa::Neon];
            }
        }
        &[Isa::Portable]
    }
}

/// [`dot_rows`] with the kernel family chosen by the caller. A family the
/// CPU lacks (not in [`Isa::detected`]) runs the portable bodies instead.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dot_rows_isa(
    isa: Isa,
    dtype: QuantType,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa != Isa::Portable && Isa::detected().contains(&isa) {
            let vnni = isa == Isa::Avx2Vnni;
            // SAFETY: the CPU supports the features the function is built
            // for, and the VNNI kernels only run where it has those too.
            unsafe { dot_rows_avx2(dtype, vnni, w, row_bytes, acts, act_row_bytes, tokens, out) };
            return;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if isa != Isa::Portable && Isa::detected().contains(&isa) {
            let sdot = isa == Isa::NeonDot;
            // SAFETY: NEON is part of aarch64, and the dotprod kernels only
            // run where the CPU reports the extension.
            unsafe { dot_rows_neon(dtype, sdot, w, row_bytes, acts, act_row_bytes, tokens, out) };
            return;
        }
    }
    dot_rows_portable(dtype, w, row_bytes, acts, act_row_bytes, tokens, out)
}

/// The buffer shapes the hand-written kernels rely on (they read through
/// raw pointers): whole weight rows, activation rows with as many blocks,
/// `tokens` of them, and one output per (row, token).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn kernel_shapes_fit(
    dtype: QuantType,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &[f64],
) -> bool {
    let (wb, ab) = (dtype.block_bytes(), activation_type(dtype).block_bytes());
    row_bytes > 0
        && row_bytes.is_multiple_of(wb)
        && w.len().is_multiple_of(row_bytes)
        && act_row_bytes == row_bytes / wb * ab
        && acts.len() >= tokens * act_row_bytes
        && out.len() == w.len() / row_bytes * tokens
}

/// The hand-written AVX2 kernel for `dtype`, if there is one and the
/// buffers have the shapes it relies on (it reads through raw pointers).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn dot_rows_avx2(
    dtype: QuantType,
    vnni: bool,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    use super::avx2::{plain, vnni as v};
    use super::avx2_k;
    use super::avx2_k_gemv as kg;
    use super::block32::{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
    type Rows = unsafe fn(&[u8], usize, &[u8], usize, usize, &mut [f64]);
    let pick = |p: Rows, q: Rows| if vnni { q } else { p };
    let kernel: Option<Rows> = match dtype {
        QuantType::Q4_0 => Some(pick(plain::rows::<Q4_0>, v::rows::<Q4_0>)),
        QuantType::Q4_1 => Some(pick(plain::rows::<Q4_1>, v::rows::<Q4_1>)),
        QuantType::Q5_0 => Some(pick(plain::rows::<Q5_0>, v::rows::<Q5_0>)),
        QuantType::Q5_1 => Some(pick(plain::rows::<Q5_1>, v::rows::<Q5_1>)),
        QuantType::Q8_0 => Some(pick(plain::rows::<Q8_0>, v::rows::<Q8_0>)),
        QuantType::Q2K => Some(super::avx2_k_low::rows_q2k),
        QuantType::Q3K => Some(super::avx2_k_low::rows_q3k),
        QuantType::Q4K => Some(avx2_k::rows_q4k),
        QuantType::Q5K => Some(avx2_k::rows_q5k),
        QuantType::Q6K => Some(avx2_k::rows_q6k),
        _ => None,
    };
    let fits = kernel_shapes_fit(dtype, w, row_bytes, acts, act_row_bytes, tokens, out);
    // One token: rows four at a time (`avx2_gemv.rs`, `avx2_k.rs`), the
    // rest as below.
    let mut done = 0;
    if fits && tokens == 1 {
        use super::avx2_gemv::{plain as gp, vnni as gv};
        type Gemv = unsafe fn(&[u8], usize, &[u8], &mut [f64]) -> usize;
        let pick = |p: Gemv, q: Gemv| if vnni { q } else { p };
        let gemv: Option<Gemv> = match dtype {
            QuantType::Q4_0 => Some(pick(gp::rows::<Q4_0>, gv::rows::<Q4_0>)),
            QuantType::Q4_1 => Some(pick(gp::rows::<Q4_1>, gv::rows::<Q4_1>)),
            QuantType::Q5_0 => Some(pick(gp::rows::<Q5_0>, gv::rows::<Q5_0>)),
            QuantType::Q5_1 => Some(pick(gp::rows::<Q5_1>, gv::rows::<Q5_1>)),
            QuantType::Q8_0 => Some(pick(gp::rows::<Q8_0>, gv::rows::<Q8_0>)),
            QuantType::Q2K => Some(kg::rows_one_token::<{ kg::Q2K }>),
            QuantType::Q3K => Some(kg::rows_one_token::<{ kg::Q3K }>),
            QuantType::Q4K => Some(avx2_k::rows_q4k_one_token),
            QuantType::Q5K => Some(avx2_k::rows_q5k_one_token),
            QuantType::Q6K => Some(kg::rows_one_token::<{ kg::Q6K }>),
            _ => None,
        };
        if let Some(f) = gemv {
            done = f(w, row_bytes, acts, out);
        }
    }
    // A batch: rows eight at a time, interleaved (`avx2_gemm.rs`,
    // `avx2_gemm_k.rs`).
    if fits && tokens >= super::avx2_gemm::MIN_TOKENS {
        use super::avx2_gemm::{plain as mp, vnni as mv};
        use super::avx2_gemm_k::{self as k, plain as kp, vnni as kv};
        type Gemm = unsafe fn(&[u8], usize, &[u8], usize, usize, &mut [f64]) -> usize;
        let pick_gemm = |p: Gemm, q: Gemm| if vnni { q } else { p };
        let gemm: Option<Gemm> = match dtype {
            QuantType::Q4_0 => Some(pick_gemm(mp::rows::<Q4_0>, mv::rows::<Q4_0>)),
            QuantType::Q4_1 => Some(pick_gemm(mp::rows::<Q4_1>, mv::rows::<Q4_1>)),
            QuantType::Q5_0 => Some(pick_gemm(mp::rows::<Q5_0>, mv::rows::<Q5_0>)),
            QuantType::Q5_1 => Some(pick_gemm(mp::rows::<Q5_1>, mv::rows::<Q5_1>)),
            QuantType::Q8_0 => Some(pick_gemm(mp::rows::<Q8_0>, mv::rows::<Q8_0>)),
            QuantType::Q2K => Some(pick_gemm(kp::rows::<{ k::Q2K }>, kv::rows::<{ k::Q2K }>)),
            QuantType::Q3K => Some(pick_gemm(kp::rows::<{ k::Q3K }>, kv::rows::<{ k::Q3K }>)),
            QuantType::Q4K => Some(pick_gemm(kp::rows::<{ k::Q4K }>, kv::rows::<{ k::Q4K }>)),
            QuantType::Q5K => Some(pick_gemm(kp::rows::<{ k::Q5K }>, kv::rows::<{ k::Q5K }>)),
            QuantType::Q6K => Some(pick_gemm(kp::rows::<{ k::Q6K }>, kv::rows::<{ k::Q6K }>)),
            _ => None,
        };
        if let Some(f) = gemm {
            done = f(w, row_bytes, acts, act_row_bytes, tokens, out);
        }
    }
    let (w, out) = (&w[done * row_bytes..], &mut out[done * tokens..]);
    if w.is_empty() {
        // Every row done above: the row kernels would still prepare the
        // activation's scales for no rows.
        return;
    }
    match kernel {
        Some(f) if fits => f(w, row_bytes, acts, act_row_bytes, tokens, out),
        _ => dot_rows_portable(dtype, w, row_bytes, acts, act_row_bytes, tokens, out),
    }
}

/// The hand-written NEON kernel for `dtype` (with `sdot` or without), if
/// there is one and the buffers have the shapes it relies on.
///
/// # Safety
/// With `sdot`, the CPU must have the dotprod extension.
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
unsafe fn dot_rows_neon(
    dtype: QuantType,
    sdot: bool,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    use super::block32::{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};
    use super::neon::{dot as d, plain as p};
    use super::neon_k::{dot as dk, plain as pk};
    type Rows = unsafe fn(&[u8], usize, &[u8], usize, usize, &mut [f64]);
    let pick = |plain: Rows, dot: Rows| if sdot { dot } else { plain };
    let kernel: Option<Rows> = match dtype {
        QuantType::Q4_0 => Some(pick(p::rows::<Q4_0>, d::rows::<Q4_0>)),
        QuantType::Q4_1 => Some(pick(p::rows::<Q4_1>, d::rows::<Q4_1>)),
        QuantType::Q5_0 => Some(pick(p::rows::<Q5_0>, d::rows::<Q5_0>)),
        QuantType::Q5_1 => Some(pick(p::rows::<Q5_1>, d::rows::<Q5_1>)),
        QuantType::Q8_0 => Some(pick(p::rows::<Q8_0>, d::rows::<Q8_0>)),
        QuantType::Q2K => Some(pick(pk::rows_q2k, dk::rows_q2k)),
        QuantType::Q3K => Some(pick(pk::rows_q3k, dk::rows_q3k)),
        QuantType::Q4K => Some(pick(pk::rows_q4k, dk::rows_q4k)),
        QuantType::Q5K => Some(pick(pk::rows_q5k, dk::rows_q5k)),
        QuantType::Q6K => Some(pick(pk::rows_q6k, dk::rows_q6k)),
        _ => None,
    };
    match kernel {
        // SAFETY: the shapes are checked; the caller vouches for dotprod.
        Some(f) if kernel_shapes_fit(dtype, w, row_bytes, acts, act_row_bytes, tokens, out) => unsafe {
            f(w, row_bytes, acts, act_row_bytes, tokens, out)
        },
        _ => dot_rows_portable(dtype, w, row_bytes, acts, act_row_bytes, tokens, out),
    }
}

#[inline(always)]
fn dot_rows_portable(
    dtype: QuantType,
    w: &[u8],
    row_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    tokens: usize,
    out: &mut [f64],
) {
    for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
        for (a, o) in acts.chunks_exact(act_row_bytes).zip(o.iter_mut()) {
            *o = dot_row(dtype, row, a);
        }
    }
}

/// One weight row against one activation row.
#[inline(always)]
pub fn dot_row(dtype: QuantType, w: &[u8], a: &[u8]) -> f64 {
    match dtype {
        QuantType::Q4_0 => blocks_dot(w, a, dot_q4_0),
        QuantType::Q4_1 => blocks_dot(w, a, dot_q4_1),
        QuantType::Q5_0 => blocks_dot(w, a, dot_q5_0),
        QuantType::Q5_1 => blocks_dot(w, a, dot_q5_1),
        QuantType::Q8_0 => blocks_dot(w, a, dot_q8_0),
        QuantType::Q2K => k_dot(w, a, dot_q2k),
        QuantType::Q3K => k_dot(w, a, dot_q3k),
        QuantType::Q4K => k_dot(w, a, dot_q4k),
        QuantType::Q5K => k_dot(w, a, dot_q5k),
        QuantType::Q6K => k_dot(w, a, dot_q6k),
        QuantType::F32 => float_dot(w, a, |x: &F32Le| x.get() as f64),
        QuantType::F16 => float_dot(w, a, |x: &F16Le| x.to_f64()),
        QuantType::BF16 => float_dot(w, a, |x: &Bf16Le| x.to_f64()),
        // Activation-only formats never appear as weights (the loader refuses them).
        QuantType::Q8_1 | QuantType::Q8K => 0.0,
    }
}

/// Sums `block` over the weight blocks of `w` paired with the activation
/// blocks of `a`, in order.
#[inline(always)]
fn blocks_dot<W: Block, A: Block>(w: &[u8], a: &[u8], mut block: impl FnMut(&W, &A) -> f64) -> f64 {
    let mut sum = 0.0f64;
    for (wb, ab) in as_blocks::<W>(w).iter().zip(as_blocks::<A>(a)) {
        sum += block(wb, ab);
    }
    sum
}

/// Float weights against f32 activations, widened to f64 and summed by
/// `Iterator::sum`.
#[inline(always)]
fn float_dot<W: Block>(w: &[u8], a: &[u8], widen: impl Fn(&W) -> f64) -> f64 {
    as_blocks::<W>(w)
        .iter()
        .zip(as_blocks::<F32Le>(a))
        .map(|(x, y)| widen(x) * y.get() as f64)
        .sum()
}

/// The product of two f16 block scales, exact in f32 and widened.
#[inline(always)]
fn scale(w: F16Le, a: F16Le) -> f64 {
    (w.to_f32() * a.to_f32()) as f64
}

#[inline(always)]
fn dot_q4_0(wb: &BlockQ4_0, ab: &BlockQ8_0) -> f64 {
    let (qs, y) = (&wb.qs, &ab.qs);
    let mut sumi = 0i32;
    for j in 0..16 {
        sumi += ((qs[j] & 0x0f) as i32 - 8) * (y[j] as i32)
            + ((qs[j] >> 4) as i32 - 8) * (y[j + 16] as i32);
    }
    sumi as f64 * scale(wb.d, ab.d)
}

#[inline(always)]
fn dot_q4_1(wb: &BlockQ4_1, ab: &BlockQ8_1) -> f64 {
    let (qs, y) = (&wb.qs, &ab.qs);
    let mut sumi = 0i32;
    for j in 0..16 {
        sumi += (qs[j] & 0x0f) as i32 * (y[j] as i32) + (qs[j] >> 4) as i32 * (y[j + 16] as i32);
    }
    sumi as f64 * scale(wb.d, ab.d) + scale(wb.m, ab.s)
}

#[inline(always)]
fn dot_q5_0(wb: &BlockQ5_0, ab: &BlockQ8_0) -> f64 {
    let qh = wb.high_bits();
    let (qs, y) = (&wb.qs, &ab.qs);
    let mut sumi = 0i32;
    for j in 0..16 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        let x0 = ((qs[j] & 0x0f) as u32 | h0) as i32 - 16;
        let x1 = ((qs[j] >> 4) as u32 | h1) as i32 - 16;
        sumi += x0 * (y[j] as i32) + x1 * (y[j + 16] as i32);
    }
    sumi as f64 * scale(wb.d, ab.d)
}

#[inline(always)]
fn dot_q5_1(wb: &BlockQ5_1, ab: &BlockQ8_1) -> f64 {
    let qh = wb.high_bits();
    let (qs, y) = (&wb.qs, &ab.qs);
    let mut sumi = 0i32;
    for j in 0..16 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        let x0 = ((qs[j] & 0x0f) as u32 | h0) as i32;
        let x1 = ((qs[j] >> 4) as u32 | h1) as i32;
        sumi += x0 * (y[j] as i32) + x1 * (y[j + 16] as i32);
    }
    sumi as f64 * scale(wb.d, ab.d) + scale(wb.m, ab.s)
}

#[inline(always)]
fn dot_q8_0(wb: &BlockQ8_0, ab: &BlockQ8_0) -> f64 {
    let sumi: i32 = wb
        .qs
        .iter()
        .zip(&ab.qs)
        .map(|(&x, &y)| x as i32 * y as i32)
        .sum();
    sumi as f64 * scale(wb.d, ab.d)
}

/// K-quants: unpack each super-block to 256 small integers (into the
/// reused `q`) plus per-group integer scales (and mins), then take integer
/// dots per group. `block` returns one super-block's product.
#[inline(always)]
fn k_dot<W: Block>(
    w: &[u8],
    a: &[u8],
    block: impl Fn(&W, &BlockQ8K, &mut [i8; QK_K]) -> f64,
) -> f64 {
    let mut q = [0i8; QK_K];
    blocks_dot(w, a, |wb: &W, ab: &BlockQ8K| block(wb, ab, &mut q))
}

#[inline(always)]
fn bsum(ab: &BlockQ8K, g: usize) -> i32 {
    ab.bsums[g].get() as i32
}

#[inline(always)]
fn dot_q2k(wb: &BlockQ2K, ab: &BlockQ8K, q: &mut [i8; QK_K]) -> f64 {
    let qs = &wb.qs;
    for (e, v) in q.iter_mut().enumerate() {
        let (half, r) = (e / 128, e % 128);
        *v = ((qs[half * 32 + r % 32] >> (2 * (r / 32))) & 3) as i8;
    }
    let (mut acc, mut mins) = (0i32, 0i32);
    for (g, &sc) in wb.scales.iter().enumerate() {
        acc += (sc & 0x0f) as i32 * group_dot(q, &ab.qs, g * 16, 16);
        mins += (sc >> 4) as i32 * bsum(ab, g);
    }
    let dy = ab.d.get() as f64;
    dy * (wb.d.to_f32() as f64 * acc as f64 - wb.dmin.to_f32() as f64 * mins as f64)
}

#[inline(always)]
fn dot_q3k(wb: &BlockQ3K, ab: &BlockQ8K, q: &mut [i8; QK_K]) -> f64 {
    let (hmask, qs) = (&wb.hmask, &wb.qs);
    let scales = q3k_scales(&wb.scales);
    for (e, v) in q.iter_mut().enumerate() {
        let (half, r) = (e / 128, e % 128);
        let low = ((qs[half * 32 + r % 32] >> (2 * (r / 32))) & 3) as i8;
        let bit = 1u8 << (half * 4 + r / 32);
        *v = low - if hmask[r % 32] & bit != 0 { 0 } else { 4 };
    }
    let mut acc = 0i32;
    for (g, &s) in scales.iter().enumerate() {
        acc += s as i32 * group_dot(q, &ab.qs, g * 16, 16);
    }
    let dy = ab.d.get() as f64;
    dy * wb.d.to_f32() as f64 * acc as f64
}

/// Q4_K and Q5_K share everything but Q5_K's fifth bit (`qh`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dot_q45k(
    d: F16Le,
    dmin: F16Le,
    scales: &[u8; 12],
    qh: Option<&[u8; 32]>,
    qs: &[u8; 128],
    ab: &BlockQ8K,
    q: &mut [i8; QK_K],
) -> f64 {
    for (e, v) in q.iter_mut().enumerate() {
        let (chunk, hi, l) = (e / 64, (e % 64) / 32, e % 32);
        let byte = qs[chunk * 32 + l];
        let mut x = if hi == 0 { byte & 0x0f } else { byte >> 4 };
        if let Some(qh) = qh {
            if qh[l] & (1 << (e / 32)) != 0 {
                x += 16;
            }
        }
        *v = x as i8;
    }
    let (mut acc, mut mins) = (0i32, 0i32);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, scales);
        acc += sc as i32 * group_dot(q, &ab.qs, j * 32, 32);
        mins += m as i32 * (bsum(ab, 2 * j) + bsum(ab, 2 * j + 1));
    }
    let dy = ab.d.get() as f64;
    dy * (d.to_f32() as f64 * acc as f64 - dmin.to_f32() as f64 * mins as f64)
}

#[inline(always)]
fn dot_q4k(wb: &BlockQ4K, ab: &BlockQ8K, q: &mut [i8; QK_K]) -> f64 {
    dot_q45k(wb.d, wb.dmin, &wb.scales, None, &wb.qs, ab, q)
}

#[inline(always)]
fn dot_q5k(wb: &BlockQ5K, ab: &BlockQ8K, q: &mut [i8; QK_K]) -> f64 {
    dot_q45k(wb.d, wb.dmin, &wb.scales, Some(&wb.qh), &wb.qs, ab, q)
}

#[inline(always)]
fn dot_q6k(wb: &BlockQ6K, ab: &BlockQ8K, q: &mut [i8; QK_K]) -> f64 {
    let (ql, qh) = (&wb.ql, &wb.qh);
    for (e, v) in q.iter_mut().enumerate() {
        let (half, r) = (e / 128, e % 128);
        let (quad, l) = (r / 32, r % 32);
        let lo = ql[half * 64 + l + 32 * (quad & 1)];
        let lo = if quad < 2 { lo & 0x0f } else { lo >> 4 };
        let hi = (qh[half * 32 + l] >> (2 * quad)) & 3;
        *v = (lo | (hi << 4)) as i8 - 32;
    }
    let mut acc = 0i32;
    for (g, &s) in wb.scales.iter().enumerate() {
        acc += s as i32 * group_dot(q, &ab.qs, g * 16, 16);
    }
    let dy = ab.d.get() as f64;
    dy * wb.d.to_f32() as f64 * acc as f64
}

#[inline(always)]
fn group_dot(q: &[i8; QK_K], y: &[i8; QK_K], start: usize, len: usize) -> i32 {
    q[start..start + len]
        .iter()
        .zip(&y[start..start + len])
        .map(|(&a, &b)| a as i32 * b as i32)
        .sum()
}
