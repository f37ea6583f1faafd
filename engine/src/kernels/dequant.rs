//! Dequantization: GGML blocks to f32, for every supported type.
//!
//! Layouts follow llama.cpp's `ggml-common.h`. Used for embedding lookups,
//! format conversion and as the reference the dot-product kernels are tested
//! against; matmuls never dequantize whole weights.

use half::{bf16, f16};

use crate::model::gguf::{GgmlType, QK_K};

#[inline(always)]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

#[inline(always)]
pub(crate) fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Dequantizes `src` (a whole number of blocks of `dtype`) into `dst`.
/// `dst.len()` must equal the number of values `src` holds.
pub fn dequantize_row(dtype: GgmlType, src: &[u8], dst: &mut [f32]) {
    let bl = dtype.block_len();
    let bb = dtype.block_bytes();
    debug_assert_eq!(src.len() / bb * bl, dst.len());
    for (block, out) in src.chunks_exact(bb).zip(dst.chunks_exact_mut(bl)) {
        dequantize_block(dtype, block, out);
    }
}

fn dequantize_block(dtype: GgmlType, b: &[u8], y: &mut [f32]) {
    match dtype {
        GgmlType::F32 => y[0] = f32_at(b, 0),
        GgmlType::F16 => y[0] = f16_at(b, 0),
        GgmlType::BF16 => y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::Q4_0 => {
            let d = f16_at(b, 0);
            let qs = &b[2..18];
            for j in 0..16 {
                y[j] = ((qs[j] & 0x0f) as i32 - 8) as f32 * d;
                y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
            }
        }
        GgmlType::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            let qs = &b[4..20];
            for j in 0..16 {
                y[j] = (qs[j] & 0x0f) as f32 * d + m;
                y[j + 16] = (qs[j] >> 4) as f32 * d + m;
            }
        }
        GgmlType::Q5_0 => {
            let d = f16_at(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            let qs = &b[6..22];
            for j in 0..16 {
                let h0 = ((qh >> j) << 4) & 0x10;
                let h1 = (qh >> (j + 12)) & 0x10;
                y[j] = (((qs[j] & 0x0f) as u32 | h0) as i32 - 16) as f32 * d;
                y[j + 16] = (((qs[j] >> 4) as u32 | h1) as i32 - 16) as f32 * d;
            }
        }
        GgmlType::Q5_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            let qs = &b[8..24];
            for j in 0..16 {
                let h0 = ((qh >> j) << 4) & 0x10;
                let h1 = (qh >> (j + 12)) & 0x10;
                y[j] = ((qs[j] & 0x0f) as u32 | h0) as f32 * d + m;
                y[j + 16] = ((qs[j] >> 4) as u32 | h1) as f32 * d + m;
            }
        }
        GgmlType::Q8_0 => {
            let d = f16_at(b, 0);
            for j in 0..32 {
                y[j] = (b[2 + j] as i8) as f32 * d;
            }
        }
        GgmlType::Q8_1 => {
            let d = f16_at(b, 0);
            for j in 0..32 {
                y[j] = (b[4 + j] as i8) as f32 * d;
            }
        }
        GgmlType::Q2K => dequant_q2k(b, y),
        GgmlType::Q3K => dequant_q3k(b, y),
        GgmlType::Q4K => dequant_q4k(b, y),
        GgmlType::Q5K => dequant_q5k(b, y),
        GgmlType::Q6K => dequant_q6k(b, y),
        GgmlType::Q8K => {
            let d = f32_at(b, 0);
            for j in 0..QK_K {
                y[j] = (b[4 + j] as i8) as f32 * d;
            }
        }
    }
}

/// The 6-bit (scale, min) pair `j` of a Q4_K/Q5_K super-block.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

// Q2_K: scales[16] | qs[64] | d | dmin
fn dequant_q2k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
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
pub(crate) fn q3k_scales(packed: &[u8]) -> [i8; 16] {
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

// Q3_K: hmask[32] | qs[64] | scales[12] | d
fn dequant_q3k(b: &[u8], y: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let scales = q3k_scales(&b[96..108]);
    let d = f16_at(b, 108);
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

// Q4_K: d | dmin | scales[12] | qs[128]
fn dequant_q4k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
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

// Q5_K: d | dmin | scales[12] | qh[32] | qs[128]
fn dequant_q5k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
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

// Q6_K: ql[128] | qh[64] | scales[16] (i8) | d
fn dequant_q6k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for half in 0..2 {
        let ql = &b[half * 64..half * 64 + 64];
        let qh = &b[128 + half * 32..128 + half * 32 + 32];
        let sc = &b[192 + half * 8..192 + half * 8 + 8];
        let base = half * 128;
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[base + l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[base + l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[base + l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[base + l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}
