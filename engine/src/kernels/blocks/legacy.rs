//! The 32-value formats (llama.cpp's "legacy" quants): one f16 scale (and
//! for the `_1` kinds an f16 minimum or sum) per 32 values.
//!
//! 4-bit quants pack element `j` in the low nibble of `qs[j]` and element
//! `j + 16` in its high nibble; the 5-bit kinds keep each element's fifth
//! bit in `qh` (bit `j` of the little-endian u32).

use super::{F16Le, QK};

/// `x = d * (q - 8)`, `q` in 0..16.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_0 {
    pub d: F16Le,
    pub qs: [u8; QK / 2],
}

/// `x = d * q + m`, `q` in 0..16.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_1 {
    pub d: F16Le,
    pub m: F16Le,
    pub qs: [u8; QK / 2],
}

/// `x = d * (q - 16)`, `q` in 0..32.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_0 {
    pub d: F16Le,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// `x = d * q + m`, `q` in 0..32.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_1 {
    pub d: F16Le,
    pub m: F16Le,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// `x = d * q`, `q` in -128..128. Also the activation format of
/// Q4_0/Q5_0/Q8_0 weights.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    pub d: F16Le,
    pub qs: [i8; QK],
}

/// Q8_0 plus `s = d * sum(qs)`: the activation format of Q4_1/Q5_1
/// weights, whose minimum multiplies the activations' sum.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_1 {
    pub d: F16Le,
    pub s: F16Le,
    pub qs: [i8; QK],
}

block!(BlockQ4_0, values: QK, bytes: 18);
block!(BlockQ4_1, values: QK, bytes: 20);
block!(BlockQ5_0, values: QK, bytes: 22);
block!(BlockQ5_1, values: QK, bytes: 24);
block!(BlockQ8_0, values: QK, bytes: 34);
block!(BlockQ8_1, values: QK, bytes: 36);

impl BlockQ5_0 {
    /// The fifth bits, bit `j` for element `j`.
    #[inline(always)]
    pub fn high_bits(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}

impl BlockQ5_1 {
    /// The fifth bits, bit `j` for element `j`.
    #[inline(always)]
    pub fn high_bits(&self) -> u32 {
        u32::from_le_bytes(self.qh)
    }
}
