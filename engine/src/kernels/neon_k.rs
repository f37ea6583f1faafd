//! Hand-written NEON kernels for the K-quants (Q2_K to Q6_K weights)
//! against Q8_K activations: the aarch64 counterpart of `avx2_k.rs` and
//! `avx2_k_low.rs`.
//!
//! Each 256-value super-block is unpacked once (quants to 16 vectors of
//! i8, one per group of 16 values, and group scales to integers) and then
//! dotted with every token row. Per super-block the integer sums are exact
//! and the float step is the same f64 expression, in the same order, as
//! the portable body in `dot.rs`: results are bitwise equal to it.
//!
//! Every function here requires NEON; the `dot` family also the dotprod
//! extension, which callers check at run time.

#![cfg(target_arch = "aarch64")]

use std::arch::aarch64::*;
use std::mem::{offset_of, size_of};

use super::blocks::{as_blocks, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, F16Le};
use super::dequant::{q3k_scales, scale_min_k4};
use super::neon::{dot_sdot, dot_widen};

/// Bytes of one Q8_K activation super-block, and where its parts start.
const Q8K_BYTES: usize = size_of::<BlockQ8K>();
const Q8K_QS: usize = offset_of!(BlockQ8K, qs);
const Q8K_BSUMS: usize = offset_of!(BlockQ8K, bsums);

#[inline(always)]
unsafe fn act_scale(a: *const u8) -> f64 {
    // SAFETY (caller): a Q8_K block starts at a.
    (a.add(offset_of!(BlockQ8K, d)) as *const f32).read_unaligned() as f64
}

/// The sixteen i16 group sums of the Q8_K block at `a` times `per_group`,
/// summed (exact in i32: each sum is at most 16 × 128, each factor 128).
#[inline]
#[target_feature(enable = "neon")]
unsafe fn group_sums_times(a: *const u8, per_group: [int16x8_t; 2]) -> i32 {
    let bs = a.add(Q8K_BSUMS) as *const i16;
    let (b0, b1) = (vld1q_s16(bs), vld1q_s16(bs.add(8)));
    let p = vmull_s16(vget_low_s16(b0), vget_low_s16(per_group[0]));
    let p = vmlal_high_s16(p, b0, per_group[0]);
    let p = vmlal_s16(p, vget_low_s16(b1), vget_low_s16(per_group[1]));
    vaddvq_s32(vmlal_high_s16(p, b1, per_group[1]))
}

/// A Q4_K or Q5_K super-block's quants as sixteen vectors: `q[2j]` and
/// `q[2j + 1]` hold group j's values 0..16 and 16..32. Each 32 bytes of
/// `qs` give group 2c (low nibbles) and 2c + 1 (high); with Q5_K's `qh`,
/// value l of group j gains 16 where bit j of `qh[l]` is set.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn scale_min_quants(qs: &[u8; 128], qh: Option<&[u8; 32]>) -> [int8x16_t; 16] {
    let mut q = [vdupq_n_s8(0); 16];
    for c in 0..4 {
        for h in 0..2 {
            let v = vld1q_u8(qs.as_ptr().add(32 * c + 16 * h));
            let mut low = vandq_u8(v, vdupq_n_u8(0x0f));
            let mut high = vshrq_n_u8::<4>(v);
            if let Some(qh) = qh {
                let bits = vld1q_u8(qh.as_ptr().add(16 * h));
                // Bit j moved to bit 4 (a negative count shifts right).
                let fifth = |j: i8| vandq_u8(vshlq_u8(bits, vdupq_n_s8(4 - j)), vdupq_n_u8(0x10));
                low = vorrq_u8(low, fifth(2 * c as i8));
                high = vorrq_u8(high, fifth(2 * c as i8 + 1));
            }
            q[4 * c + h] = vreinterpretq_s8_u8(low);
            q[4 * c + 2 + h] = vreinterpretq_s8_u8(high);
        }
    }
    q
}

/// The 2-bit fields of a Q2_K or Q3_K super-block's 64 bytes of `qs` as
/// sixteen groups of 16 values: values 32k..32k + 32 are bits `2(k % 4)..`
/// of bytes `32(k / 4)..32(k / 4) + 32`, group 2k their first sixteen.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn two_bit_groups(qs: &[u8; 64]) -> [uint8x16_t; 16] {
    let mut q = [vdupq_n_u8(0); 16];
    for half in 0..2 {
        for part in 0..2 {
            let mut v = vld1q_u8(qs.as_ptr().add(32 * half + 16 * part));
            for j in 0..4 {
                q[2 * (4 * half + j) + part] = vandq_u8(v, vdupq_n_u8(3));
                v = vshrq_n_u8::<2>(v);
            }
        }
    }
    q
}

/// A Q3_K super-block's values (-4..3) as sixteen groups of 16: the two
/// low bits, less 4 where the high bit (bit k of `hmask[l]` for value l
/// of 32k..32k + 32) is clear.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn q3k_groups(wb: &BlockQ3K) -> [int8x16_t; 16] {
    let low = two_bit_groups(&wb.qs);
    let mut q = [vdupq_n_s8(0); 16];
    for part in 0..2 {
        let mut bits = vld1q_u8(wb.hmask.as_ptr().add(16 * part));
        for k in 0..8 {
            let g = 2 * k + part;
            let u = vorrq_u8(low[g], vandq_u8(vshlq_n_u8::<2>(bits), vdupq_n_u8(4)));
            q[g] = vsubq_s8(vreinterpretq_s8_u8(u), vdupq_n_s8(4));
            bits = vshrq_n_u8::<1>(bits);
        }
    }
    q
}

/// The row kernels, compiled once per integer-product family (as in
/// `neon.rs`).
macro_rules! k_kernels {
    ($features:literal, $dot:ident) => {
        /// Q4_K weights: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins,
        /// 128 bytes of nibbles (32 bytes per pair of groups: low nibbles
        /// are the first group's 32 values, high nibbles the second's).
        ///
        /// # Safety
        /// As `neon::plain::rows`: the CPU has `$features`, whole rows,
        /// `tokens` activation rows with as many super-blocks as a weight
        /// row, `out` rows × tokens.
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows_q4k(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            act_row_bytes: usize,
            tokens: usize,
            out: &mut [f64],
        ) {
            for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
                for (i, wb) in as_blocks::<BlockQ4K>(row).iter().enumerate() {
                    let q = scale_min_quants(&wb.qs, None);
                    let a = acts.as_ptr().add(i * Q8K_BYTES);
                    scale_min_block(wb.d, wb.dmin, &wb.scales, &q, a, act_row_bytes, i, o);
                }
            }
        }

        /// Q5_K weights: Q4_K's layout with 32 bytes of fifth bits (`qh`)
        /// before the nibbles; quants 0..31.
        ///
        /// # Safety
        /// As [`rows_q4k`].
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows_q5k(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            act_row_bytes: usize,
            tokens: usize,
            out: &mut [f64],
        ) {
            for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
                for (i, wb) in as_blocks::<BlockQ5K>(row).iter().enumerate() {
                    let q = scale_min_quants(&wb.qs, Some(&wb.qh));
                    let a = acts.as_ptr().add(i * Q8K_BYTES);
                    scale_min_block(wb.d, wb.dmin, &wb.scales, &q, a, act_row_bytes, i, o);
                }
            }
        }

        /// One Q4_K or Q5_K super-block (super-block `i` of its row, whose
        /// quants are `q`) against every token, added to `o`: the first
        /// super-block sets `o`, as the portable sum starts at zero.
        #[inline]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn scale_min_block(
            d: F16Le,
            dmin: F16Le,
            scales: &[u8; 12],
            q: &[int8x16_t; 16],
            a: *const u8,
            act_row_bytes: usize,
            i: usize,
            o: &mut [f64],
        ) {
            if i == 0 {
                o.fill(0.0);
            }
            let d = d.to_f32() as f64;
            let dmin = dmin.to_f32() as f64;
            let mut sc = [0i32; 8];
            let mut m = [0i16; 16];
            for j in 0..8 {
                let (s, mj) = scale_min_k4(j, scales);
                sc[j] = s as i32;
                m[2 * j] = mj as i16;
                m[2 * j + 1] = mj as i16;
            }
            let mins = [vld1q_s16(m.as_ptr()), vld1q_s16(m.as_ptr().add(8))];
            for (t, o) in o.iter_mut().enumerate() {
                let a = a.add(t * act_row_bytes);
                let y = a.add(Q8K_QS) as *const i8;
                let mut accv = vdupq_n_s32(0);
                for j in 0..8 {
                    let g = $dot(vdupq_n_s32(0), q[2 * j], vld1q_s8(y.add(32 * j)));
                    let g = $dot(g, q[2 * j + 1], vld1q_s8(y.add(32 * j + 16)));
                    accv = vmlaq_n_s32(accv, g, sc[j]);
                }
                let acc = vaddvq_s32(accv);
                let msum = group_sums_times(a, mins);
                *o += act_scale(a) * (d * acc as f64 - dmin * msum as f64);
            }
        }

        /// Q2_K weights: sixteen bytes of 4-bit scales (low nibble) and
        /// minimums (high), 64 bytes of 2-bit quants, f16 d and dmin.
        ///
        /// # Safety
        /// As [`rows_q4k`].
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows_q2k(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            act_row_bytes: usize,
            tokens: usize,
            out: &mut [f64],
        ) {
            for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
                o.fill(0.0);
                for (i, wb) in as_blocks::<BlockQ2K>(row).iter().enumerate() {
                    let d = wb.d.to_f32() as f64;
                    let dmin = wb.dmin.to_f32() as f64;
                    let packed = vld1q_u8(wb.scales.as_ptr());
                    let m = vshrq_n_u8::<4>(packed);
                    let mins = [
                        vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m))),
                        vreinterpretq_s16_u16(vmovl_high_u8(m)),
                    ];
                    let sc: [i32; 16] = std::array::from_fn(|g| (wb.scales[g] & 0x0f) as i32);
                    let q = two_bit_groups(&wb.qs).map(|v| vreinterpretq_s8_u8(v));
                    for (t, o) in o.iter_mut().enumerate() {
                        let a = acts.as_ptr().add(t * act_row_bytes + i * Q8K_BYTES);
                        let y = a.add(Q8K_QS) as *const i8;
                        let mut accv = vdupq_n_s32(0);
                        for g in 0..16 {
                            let p = $dot(vdupq_n_s32(0), q[g], vld1q_s8(y.add(16 * g)));
                            accv = vmlaq_n_s32(accv, p, sc[g]);
                        }
                        let acc = vaddvq_s32(accv);
                        let msum = group_sums_times(a, mins);
                        *o += act_scale(a) * (d * acc as f64 - dmin * msum as f64);
                    }
                }
            }
        }

        /// Q3_K weights: 32 bytes of high bits, 64 of low bit pairs,
        /// sixteen signed 6-bit scales, f16 d; values -4..3.
        ///
        /// # Safety
        /// As [`rows_q4k`].
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows_q3k(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            act_row_bytes: usize,
            tokens: usize,
            out: &mut [f64],
        ) {
            for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
                o.fill(0.0);
                for (i, wb) in as_blocks::<BlockQ3K>(row).iter().enumerate() {
                    let d = wb.d.to_f32() as f64;
                    let sc = q3k_scales(&wb.scales).map(|s| s as i32);
                    let q = q3k_groups(wb);
                    for (t, o) in o.iter_mut().enumerate() {
                        let a = acts.as_ptr().add(t * act_row_bytes + i * Q8K_BYTES);
                        let y = a.add(Q8K_QS) as *const i8;
                        let mut accv = vdupq_n_s32(0);
                        for g in 0..16 {
                            let p = $dot(vdupq_n_s32(0), q[g], vld1q_s8(y.add(16 * g)));
                            accv = vmlaq_n_s32(accv, p, sc[g]);
                        }
                        *o += act_scale(a) * d * vaddvq_s32(accv) as f64;
                    }
                }
            }
        }

        /// Q6_K weights: 128 bytes of low nibbles, 64 of high bit pairs, 16
        /// i8 group scales, f16 d. Quants are unpacked unsigned (0..63); the
        /// -32 offset is taken off afterwards with the activation group sums.
        ///
        /// # Safety
        /// As [`rows_q4k`].
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows_q6k(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            act_row_bytes: usize,
            tokens: usize,
            out: &mut [f64],
        ) {
            let low = vdupq_n_u8(0x0f);
            let high = vdupq_n_u8(0x30);
            for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
                o.fill(0.0);
                for (i, wb) in as_blocks::<BlockQ6K>(row).iter().enumerate() {
                    let d = wb.d.to_f32() as f64;
                    let s8 = vld1q_s8(wb.scales.as_ptr());
                    let sc16 = [vmovl_s8(vget_low_s8(s8)), vmovl_high_s8(s8)];
                    let sc: [i32; 16] = std::array::from_fn(|g| wb.scales[g] as i32);
                    // Values 32k..32k + 32 take bit pair k % 4 of the high
                    // bits and the low (k % 4 < 2) or high nibbles of `ql`;
                    // q[g] holds group g's 16 values.
                    let mut q = [vdupq_n_s8(0); 16];
                    for h in 0..2 {
                        for part in 0..2 {
                            let at = 16 * part;
                            let l0 = vld1q_u8(wb.ql.as_ptr().add(64 * h + at));
                            let l1 = vld1q_u8(wb.ql.as_ptr().add(64 * h + 32 + at));
                            let hb = vld1q_u8(wb.qh.as_ptr().add(32 * h + at));
                            let bits = [
                                vshlq_n_u8::<4>(hb),
                                vshlq_n_u8::<2>(hb),
                                hb,
                                vshrq_n_u8::<2>(hb),
                            ];
                            let nibbles = [
                                vandq_u8(l0, low),
                                vandq_u8(l1, low),
                                vshrq_n_u8::<4>(l0),
                                vshrq_n_u8::<4>(l1),
                            ];
                            for quad in 0..4 {
                                let v = vorrq_u8(nibbles[quad], vandq_u8(bits[quad], high));
                                q[2 * (4 * h + quad) + part] = vreinterpretq_s8_u8(v);
                            }
                        }
                    }
                    for (t, o) in o.iter_mut().enumerate() {
                        let a = acts.as_ptr().add(t * act_row_bytes + i * Q8K_BYTES);
                        let y = a.add(Q8K_QS) as *const i8;
                        let mut accv = vdupq_n_s32(0);
                        for g in 0..16 {
                            let p = $dot(vdupq_n_s32(0), q[g], vld1q_s8(y.add(16 * g)));
                            accv = vmlaq_n_s32(accv, p, sc[g]);
                        }
                        let offset = group_sums_times(a, sc16);
                        let acc = vaddvq_s32(accv) - 32 * offset;
                        *o += act_scale(a) * d * acc as f64;
                    }
                }
            }
        }
    };
}

/// Base NEON (`smull` + `sadalp`).
pub(super) mod plain {
    use super::*;
    k_kernels!("neon", dot_widen);
}

/// NEON plus the dotprod extension (`sdot`).
pub(super) mod dot {
    use super::*;
    k_kernels!("neon,dotprod", dot_sdot);
}
