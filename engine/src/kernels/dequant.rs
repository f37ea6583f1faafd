//! Dequantization: GGML blocks to f32, for every supported type.
//!
//! Layouts follow llama.cpp's `ggml-common.h`. Used for embedding lookups,
//! format conversion and as the reference the dot-product kernels are tested
//! against; matmuls never dequantize whole weights.

use super::blocks::{
    as_blocks, Bf16Le, Block, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
    BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, F16Le, F32Le, K_SCALE_SIZE,
};
use super::QuantType;

/// Dequantizes `src` (a whole number of blocks of `dtype`) into `dst`.
/// `dst.len()` must equal the number of values `src` holds.
pub fn dequantize_row(dtype: QuantType, src: &[u8], dst: &mut [f32]) {
    debug_assert_eq!(
        src.len() / dtype.block_bytes() * dtype.block_len(),
        dst.len()
    );
    match dtype {
        QuantType::F32 => each::<F32Le>(src, dst, |b, y| y[0] = b.get()),
        QuantType::F16 => each::<F16Le>(src, dst, |b, y| y[0] = b.to_f32()),
        QuantType::BF16 => each::<Bf16Le>(src, dst, |b, y| y[0] = b.to_f32()),
        QuantType::Q4_0 => each(src, dst, dequant_q4_0),
        QuantType::Q4_1 => each(src, dst, dequant_q4_1),
        QuantType::Q5_0 => each(src, dst, dequant_q5_0),
        QuantType::Q5_1 => each(src, dst, dequant_q5_1),
        QuantType::Q8_0 => each::<BlockQ8_0>(src, dst, |b, y| {
            let d = b.d.to_f32();
            for (y, &q) in y.iter_mut().zip(&b.qs) {
                *y = q as f32 * d;
            }
        }),
        QuantType::Q8_1 => each::<BlockQ8_1>(src, dst, |b, y| {
            let d = b.d.to_f32();
            for (y, &q) in y.iter_mut().zip(&b.qs) {
                *y = q as f32 * d;
            }
        }),
        QuantType::Q2K => each(src, dst, dequant_q2k),
        QuantType::Q3K => each(src, dst, dequant_q3k),
        QuantType::Q4K => each(src, dst, dequant_q4k),
        QuantType::Q5K => each(src, dst, dequant_q5k),
        QuantType::Q6K => each(src, dst, dequant_q6k),
        QuantType::Q8K => each::<BlockQ8K>(src, dst, |b, y| {
            let d = b.d.get();
            for (y, &q) in y.iter_mut().zip(&b.qs) {
                *y = q as f32 * d;
            }
        }),
    }
}

/// Runs `block` on each block of `src` with its `B::VALUES` outputs.
#[inline(always)]
fn each<B: Block>(src: &[u8], dst: &mut [f32], block: impl Fn(&B, &mut [f32])) {
    for (b, y) in as_blocks::<B>(src)
        .iter()
        .zip(dst.chunks_exact_mut(B::VALUES))
    {
        block(b, y);
    }
}

fn dequant_q4_0(b: &BlockQ4_0, y: &mut [f32]) {
    let d = b.d.to_f32();
    for (j, &q) in b.qs.iter().enumerate() {
        y[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

fn dequant_q4_1(b: &BlockQ4_1, y: &mut [f32]) {
    let (d, m) = (b.d.to_f32(), b.m.to_f32());
    for (j, &q) in b.qs.iter().enumerate() {
        y[j] = (q & 0x0f) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

fn dequant_q5_0(b: &BlockQ5_0, y: &mut [f32]) {
    let d = b.d.to_f32();
    let qh = b.high_bits();
    for (j, &q) in b.qs.iter().enumerate() {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((q & 0x0f) as u32 | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
    }
}

fn dequant_q5_1(b: &BlockQ5_1, y: &mut [f32]) {
    let (d, m) = (b.d.to_f32(), b.m.to_f32());
    let qh = b.high_bits();
    for (j, &q) in b.qs.iter().enumerate() {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((q & 0x0f) as u32 | h0) as f32 * d + m;
        y[j + 16] = ((q >> 4) as u32 | h1) as f32 * d + m;
    }
}

/// The 6-bit (scale, min) pair `j` of a Q4_K/Q5_K super-block.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn dequant_q2k(b: &BlockQ2K, y: &mut [f32]) {
    let (scales, qs) = (&b.scales, &b.qs);
    let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
    let mut out = 0;
    let mut is = 0;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in [0u32, 2, 4, 6] {
            for part in 0..2 {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * (sc & 0x0f) as f32, dmin * (sc >> 4) as f32);
                for l in 0..16 {
                    y[out] = dl * ((q[part * 16 + l] >> shift) & 3) as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

/// Unpacks Q3_K's twelve scale bytes into sixteen signed 6-bit scales.
pub(crate) fn q3k_scales(packed: &[u8; K_SCALE_SIZE]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 {
            packed[j] & 0x0f
        } else {
            packed[j - 8] >> 4
        };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = ((low | (high << 4)) as i8).wrapping_sub(32);
    }
    out
}

fn dequant_q3k(b: &BlockQ3K, y: &mut [f32]) {
    let (hmask, qs) = (&b.hmask, &b.qs);
    let scales = q3k_scales(&b.scales);
    let d = b.d.to_f32();
    let mut out = 0;
    let mut is = 0;
    let mut m = 1u8;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in [0u32, 2, 4, 6] {
            for part in 0..2 {
                let dl = d * scales[is] as f32;
                is += 1;
                for l in 0..16 {
                    let k = part * 16 + l;
                    let low = ((q[k] >> shift) & 3) as i32;
                    let high = if hmask[k] & m != 0 { 0 } else { 4 };
                    y[out] = dl * (low - high) as f32;
                    out += 1;
                }
            }
            m <<= 1;
        }
    }
}

fn dequant_q4k(b: &BlockQ4K, y: &mut [f32]) {
    let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
    let (scales, qs) = (&b.scales, &b.qs);
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let base = chunk * 64;
        for l in 0..32 {
            y[base + l] = d1 * (q[l] & 0x0f) as f32 - min1;
            y[base + 32 + l] = d2 * (q[l] >> 4) as f32 - min2;
        }
    }
}

fn dequant_q5k(b: &BlockQ5K, y: &mut [f32]) {
    let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
    let (scales, qh, qs) = (&b.scales, &b.qh, &b.qs);
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let base = chunk * 64;
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[base + l] = d1 * ((q[l] & 0x0f) + h1) as f32 - min1;
            y[base + 32 + l] = d2 * ((q[l] >> 4) + h2) as f32 - min2;
        }
    }
}

fn dequant_q6k(b: &BlockQ6K, y: &mut [f32]) {
    let d = b.d.to_f32();
    for half in 0..2 {
        let ql = &b.ql[half * 64..half * 64 + 64];
        let qh = &b.qh[half * 32..half * 32 + 32];
        let sc = &b.scales[half * 8..half * 8 + 8];
        let base = half * 128;
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[base + l] = d * sc[is] as f32 * q1 as f32;
            y[base + l + 32] = d * sc[is + 2] as f32 * q2 as f32;
            y[base + l + 64] = d * sc[is + 4] as f32 * q3 as f32;
            y[base + l + 96] = d * sc[is + 6] as f32 * q4 as f32;
        }
    }
}
