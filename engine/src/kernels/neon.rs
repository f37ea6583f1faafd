//! Hand-written NEON kernels for the 32-value block formats (Q4_0, Q4_1,
//! Q5_0, Q5_1, Q8_0 weights): the aarch64 counterpart of `avx2.rs`, with the same
//! tiles (each weight block unpacked once and dotted with up to four token
//! rows) and the same float arithmetic, so both give the same bits.
//!
//! Integer products come in two families: `sdot` (the dotprod extension:
//! four i8 products summed into each i32 lane) where the CPU reports it,
//! else `smull` + `sadalp` (i8 × i8 to i16, adjacent pairs added into i32
//! lanes; no i16 product can overflow, even -128 × -128). Both are exact
//! for any i8 pair, so unlike the AVX2 kernels these also take -128.
//!
//! Float part, as `avx2.rs` (see there): each block's scale is the f32
//! product of the two f16 scales (exact), each group of four blocks adds
//! `scale × sum` (exact in f64) into four f64 lanes with FMA, lane k taking
//! block k of the group, and the lanes are summed at the end as
//! `(l0 + l2) + (l1 + l3)`; Q4_1's and Q5_1's minimum terms go to four lanes of their
//! own, added last.
//!
//! Every function here requires NEON (always present on aarch64); the
//! `dot` family also the dotprod extension, which callers check at run time.

#![cfg(target_arch = "aarch64")]

use std::arch::aarch64::*;
use std::arch::asm;
use std::mem::offset_of;

use super::block32::{has_minimum, layout, scale_offsets, Q4_0, Q4_1, Q5_0, Q5_1};
use super::blocks::{
    as_blocks, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, F16Le,
};

/// `acc` plus the sum of each four adjacent products `q[i] × y[i]` per
/// lane. Written as assembly: Rust's `vdotq_s32` is not stable yet.
#[inline]
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn dot_sdot(acc: int32x4_t, q: int8x16_t, y: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: one register-only instruction of the dotprod extension, which
    // this function's callers have checked the CPU has.
    asm!(
        "sdot {acc:v}.4s, {q:v}.16b, {y:v}.16b",
        acc = inout(vreg) acc,
        q = in(vreg) q,
        y = in(vreg) y,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// As [`dot_sdot`] with base NEON: products widened to i16, adjacent pairs
/// added into the i32 lanes (the lanes hold other partial sums than
/// `sdot`'s, with the same total).
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_widen(acc: int32x4_t, q: int8x16_t, y: int8x16_t) -> int32x4_t {
    let acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(q), vget_low_s8(y)));
    vpadalq_s16(acc, vmull_high_s8(q, y))
}

/// An f16 stored at `p` (any alignment), widened exactly.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY (caller): two readable bytes at p.
    F16Le((p as *const [u8; 2]).read_unaligned()).to_f32()
}

/// 16 bytes of packed nibbles: the low nibbles (elements 0..16), then the
/// high ones (elements 16..32).
#[inline]
#[target_feature(enable = "neon")]
unsafe fn unpack_nibbles(p: *const u8) -> [uint8x16_t; 2] {
    let packed = vld1q_u8(p);
    [vandq_u8(packed, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(packed)]
}

/// 32 bits to 32 bytes: 0x10 where bit j is set, else 0.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn bits_to_0x10(bits: u32) -> [uint8x16_t; 2] {
    const LOW: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
    const HIGH: [u8; 16] = [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];
    const BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let bytes = vreinterpretq_u8_u32(vdupq_n_u32(bits));
    let bit = vld1q_u8(BIT.as_ptr());
    let spread = |idx: &[u8; 16]| {
        let set = vtstq_u8(vqtbl1q_u8(bytes, vld1q_u8(idx.as_ptr())), bit);
        vandq_u8(set, vdupq_n_u8(0x10))
    };
    [spread(&LOW), spread(&HIGH)]
}

/// A weight block's 32 values as two vectors of i8 (elements 0..16 and
/// 16..32): signed for Q4_0/Q5_0/Q8_0, 0..15 for Q4_1, 0..31 for Q5_1.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn unpack<const F: u8>(b: *const u8) -> [int8x16_t; 2] {
    let signed = |v: [uint8x16_t; 2], offset: u8| {
        [
            vreinterpretq_s8_u8(vsubq_u8(v[0], vdupq_n_u8(offset))),
            vreinterpretq_s8_u8(vsubq_u8(v[1], vdupq_n_u8(offset))),
        ]
    };
    match F {
        Q4_0 => signed(unpack_nibbles(b.add(offset_of!(BlockQ4_0, qs))), 8),
        Q4_1 => signed(unpack_nibbles(b.add(offset_of!(BlockQ4_1, qs))), 0),
        Q5_0 => signed(
            fifth_bits(
                b.add(offset_of!(BlockQ5_0, qh)),
                b.add(offset_of!(BlockQ5_0, qs)),
            ),
            16,
        ),
        Q5_1 => signed(
            fifth_bits(
                b.add(offset_of!(BlockQ5_1, qh)),
                b.add(offset_of!(BlockQ5_1, qs)),
            ),
            0,
        ),
        _ => {
            let qs = b.add(offset_of!(BlockQ8_0, qs)) as *const i8;
            [vld1q_s8(qs), vld1q_s8(qs.add(16))]
        }
    }
}

/// A 5-bit block's codes (elements 0..16 and 16..32): the nibbles at `qs`
/// with 16 added where the bit at `qh` is set.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn fifth_bits(qh: *const u8, qs: *const u8) -> [uint8x16_t; 2] {
    let high = bits_to_0x10(u32::from_le((qh as *const u32).read_unaligned()));
    let low = unpack_nibbles(qs);
    [vorrq_u8(low[0], high[0]), vorrq_u8(low[1], high[1])]
}

/// Four blocks' four i32 lanes each to one i32 per block, block k in lane k.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn reduce4(s: [int32x4_t; 4]) -> int32x4_t {
    vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]))
}

/// Four f64 lanes (as two pairs) summed as `(l0 + l2) + (l1 + l3)`, the
/// order of `avx2::hsum_pd`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn hsum4(v: [float64x2_t; 2]) -> f64 {
    vaddvq_f64(vaddq_f64(v[0], v[1]))
}

/// Four f32 lanes widened to f64, as two pairs.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn widen4(v: float32x4_t) -> [float64x2_t; 2] {
    [vcvt_f64_f32(vget_low_f32(v)), vcvt_high_f64_f32(v)]
}

/// Per-token activation block scales (and Q4_1's or Q5_1's `d * sum`) as f32, so the
/// inner loop loads four at once.
struct ActScales {
    d: Vec<f32>,
    s: Vec<f32>,
}

fn act_scales<const F: u8>(acts: &[u8], act_row_bytes: usize, tokens: usize) -> ActScales {
    let (_, ab, _) = layout(F);
    let nb = act_row_bytes / ab;
    let mut d = Vec::with_capacity(tokens * nb);
    let mut s = Vec::with_capacity(if has_minimum(F) { tokens * nb } else { 0 });
    for row in acts.chunks_exact(act_row_bytes).take(tokens) {
        if has_minimum(F) {
            for blk in as_blocks::<BlockQ8_1>(row) {
                d.push(blk.d.to_f32());
                s.push(blk.s.to_f32());
            }
        } else {
            d.extend(as_blocks::<BlockQ8_0>(row).iter().map(|b| b.d.to_f32()));
        }
    }
    ActScales { d, s }
}

/// Four consecutive f32 from `v[at..]`, zeros past `at + n`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load4(v: &[f32], at: usize, n: usize) -> float32x4_t {
    if n == 4 {
        vld1q_f32(v[at..at + 4].as_ptr())
    } else {
        let mut padded = [0.0f32; 4];
        padded[..n].copy_from_slice(&v[at..at + n]);
        vld1q_f32(padded.as_ptr())
    }
}

/// The row kernels, compiled once per integer-product family: the target
/// features are fixed per function, so the dotprod build is a second copy
/// rather than a branch inside the loop.
macro_rules! block32_kernels {
    ($features:literal, $dot:ident) => {
        /// Dots every weight row in `w` with `tokens` activation rows; see
        /// `dot::dot_rows` for the layout.
        ///
        /// # Safety
        /// The CPU has `$features`. `w` holds whole rows of `row_bytes`,
        /// `acts` holds `tokens` rows of `act_row_bytes` with the same number
        /// of blocks as a weight row, and `out` holds rows × tokens values.
        #[target_feature(enable = $features)]
        pub(in crate::kernels) unsafe fn rows<const F: u8>(
            w: &[u8],
            row_bytes: usize,
            acts: &[u8],
            act_row_bytes: usize,
            tokens: usize,
            out: &mut [f64],
        ) {
            let nb = row_bytes / layout(F).0;
            let sc = act_scales::<F>(acts, act_row_bytes, tokens);
            for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(tokens)) {
                let mut t = 0;
                while t + 4 <= tokens {
                    tile::<F, 4>(
                        row.as_ptr(),
                        nb,
                        acts,
                        act_row_bytes,
                        &sc,
                        t,
                        &mut o[t..t + 4],
                    );
                    t += 4;
                }
                let o = &mut o[t..];
                match tokens - t {
                    3 => tile::<F, 3>(row.as_ptr(), nb, acts, act_row_bytes, &sc, t, o),
                    2 => tile::<F, 2>(row.as_ptr(), nb, acts, act_row_bytes, &sc, t, o),
                    1 => tile::<F, 1>(row.as_ptr(), nb, acts, act_row_bytes, &sc, t, o),
                    _ => {}
                }
            }
        }

        /// One weight row against tokens `t0..t0 + T`.
        #[inline]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn tile<const F: u8, const T: usize>(
            row: *const u8,
            nb: usize,
            acts: &[u8],
            stride: usize,
            sc: &ActScales,
            t0: usize,
            out: &mut [f64],
        ) {
            let zero = vdupq_n_f64(0.0);
            let mut acc = [[zero; 2]; T];
            let mut mins = [[zero; 2]; T];
            let a0 = acts.as_ptr().add(t0 * stride);
            let mut b = 0;
            while b + 4 <= nb {
                group::<F, T, 4>(row, nb, a0, stride, sc, t0, b, &mut acc, &mut mins);
                b += 4;
            }
            match nb - b {
                3 => group::<F, T, 3>(row, nb, a0, stride, sc, t0, b, &mut acc, &mut mins),
                2 => group::<F, T, 2>(row, nb, a0, stride, sc, t0, b, &mut acc, &mut mins),
                1 => group::<F, T, 1>(row, nb, a0, stride, sc, t0, b, &mut acc, &mut mins),
                _ => {}
            }
            for t in 0..T {
                out[t] = if has_minimum(F) {
                    hsum4(acc[t]) + hsum4(mins[t])
                } else {
                    hsum4(acc[t])
                };
            }
        }

        /// Blocks `b..b + N` (N <= 4) of one row against T token rows.
        #[inline]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn group<const F: u8, const T: usize, const N: usize>(
            row: *const u8,
            nb: usize,
            a0: *const u8,
            stride: usize,
            sc: &ActScales,
            t0: usize,
            b: usize,
            acc: &mut [[float64x2_t; 2]; T],
            mins: &mut [[float64x2_t; 2]; T],
        ) {
            let (wb, ab, aqs) = layout(F);
            let mut q = [[vdupq_n_s8(0); 2]; 4];
            let mut wd = [0.0f32; 4];
            let mut wm = [0.0f32; 4];
            for k in 0..N {
                let p = row.add((b + k) * wb);
                q[k] = unpack::<F>(p);
                wd[k] = f16_at(p.add(scale_offsets(F).0));
                if has_minimum(F) {
                    wm[k] = f16_at(p.add(scale_offsets(F).1));
                }
            }
            let wd = vld1q_f32(wd.as_ptr());
            let wm = vld1q_f32(wm.as_ptr());
            for t in 0..T {
                let a = a0.add(t * stride + b * ab);
                let mut s = [vdupq_n_s32(0); 4];
                for k in 0..N {
                    let y = a.add(k * ab + aqs) as *const i8;
                    s[k] = $dot(s[k], q[k][0], vld1q_s8(y));
                    s[k] = $dot(s[k], q[k][1], vld1q_s8(y.add(16)));
                }
                let sums = reduce4(s);
                let sums = [
                    vcvtq_f64_s64(vmovl_s32(vget_low_s32(sums))),
                    vcvtq_f64_s64(vmovl_high_s32(sums)),
                ];
                let at = (t0 + t) * nb + b;
                // Missing blocks (N < 4) have zero weight scales and zero sums.
                let d = widen4(vmulq_f32(wd, load4(&sc.d, at, N)));
                acc[t][0] = vfmaq_f64(acc[t][0], d[0], sums[0]);
                acc[t][1] = vfmaq_f64(acc[t][1], d[1], sums[1]);
                if has_minimum(F) {
                    let m = widen4(vmulq_f32(wm, load4(&sc.s, at, N)));
                    mins[t][0] = vaddq_f64(mins[t][0], m[0]);
                    mins[t][1] = vaddq_f64(mins[t][1], m[1]);
                }
            }
        }
    };
}

/// Base NEON (`smull` + `sadalp`).
pub(super) mod plain {
    use super::*;
    block32_kernels!("neon", dot_widen);
}

/// NEON plus the dotprod extension (`sdot`).
pub(super) mod dot {
    use super::*;
    block32_kernels!("neon,dotprod", dot_sdot);
}
