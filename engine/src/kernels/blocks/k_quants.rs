//! The K-quants: 256-value super-blocks split into groups of 16 or 32, each
//! group with a small integer scale (and min) relative to the super-block's
//! f16 scale(s). The bit packing inside `qs`/`qh`/`scales` is described
//! where it is unpacked (`dequant.rs`) and packed (`quantize_weights.rs`).

use super::{F16Le, F32Le, I16Le, QK_K};

/// Bytes of the packed 6-bit (scale, min) pairs of Q4_K and Q5_K, and of
/// Q3_K's sixteen 6-bit scales.
pub const K_SCALE_SIZE: usize = 12;

/// 2 bits per value; per group of 16 a 4-bit scale (low nibble) and min.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: F16Le,
    pub dmin: F16Le,
}

/// 3 bits per value: the low two in `qs`, the third in `hmask`; sixteen
/// signed 6-bit group scales.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; K_SCALE_SIZE],
    pub d: F16Le,
}

/// 4 bits per value; eight groups of 32 with 6-bit scales and mins.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4K {
    pub d: F16Le,
    pub dmin: F16Le,
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}

/// Q4_K plus a fifth bit per value in `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5K {
    pub d: F16Le,
    pub dmin: F16Le,
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// 6 bits per value: low nibbles in `ql`, high bit pairs in `qh`; sixteen
/// signed 8-bit group scales.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: F16Le,
}

/// The K-quants' activation format: an f32 scale, 256 signed quants and
/// the sum of each group of 16 (so a weight's minimum costs one multiply
/// per group).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8K {
    pub d: F32Le,
    pub qs: [i8; QK_K],
    pub bsums: [I16Le; QK_K / 16],
}

block!(BlockQ2K, values: QK_K, bytes: 84);
block!(BlockQ3K, values: QK_K, bytes: 110);
block!(BlockQ4K, values: QK_K, bytes: 144);
block!(BlockQ5K, values: QK_K, bytes: 176);
block!(BlockQ6K, values: QK_K, bytes: 210);
block!(BlockQ8K, values: QK_K, bytes: 292);
