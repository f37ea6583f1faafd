//! Little-endian scalars stored as bytes, so the blocks holding them keep
//! alignment 1 and can be viewed in place at any offset. Each also serves
//! as the one-value "block" of the float weight formats.

use half::{bf16, f16};

/// An IEEE half (GGML's `ggml_half`).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct F16Le(pub [u8; 2]);

/// A bfloat16.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bf16Le(pub [u8; 2]);

/// An f32.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct F32Le(pub [u8; 4]);

/// An i16 (Q8_K's group sums).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct I16Le(pub [u8; 2]);

block!(F16Le, values: 1, bytes: 2);
block!(Bf16Le, values: 1, bytes: 2);
block!(F32Le, values: 1, bytes: 4);
block!(I16Le, values: 1, bytes: 2);

impl F16Le {
    /// Rounds `v` to the nearest half.
    #[inline(always)]
    pub fn from_f32(v: f32) -> Self {
        Self(f16::from_f32(v).to_le_bytes())
    }

    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        f16::from_le_bytes(self.0).to_f32()
    }

    #[inline(always)]
    pub fn to_f64(self) -> f64 {
        f16::from_le_bytes(self.0).to_f64()
    }

    /// The raw half bits, for hardware conversion (F16C).
    #[inline(always)]
    pub fn bits(self) -> u16 {
        u16::from_le_bytes(self.0)
    }
}

impl Bf16Le {
    #[inline(always)]
    pub fn from_f32(v: f32) -> Self {
        Self(bf16::from_f32(v).to_le_bytes())
    }

    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        bf16::from_le_bytes(self.0).to_f32()
    }

    #[inline(always)]
    pub fn to_f64(self) -> f64 {
        bf16::from_le_bytes(self.0).to_f64()
    }
}

impl F32Le {
    #[inline(always)]
    pub fn from_f32(v: f32) -> Self {
        Self(v.to_le_bytes())
    }

    #[inline(always)]
    pub fn get(self) -> f32 {
        f32::from_le_bytes(self.0)
    }
}

impl I16Le {
    #[inline(always)]
    pub fn from_i16(v: i16) -> Self {
        Self(v.to_le_bytes())
    }

    #[inline(always)]
    pub fn get(self) -> i16 {
        i16::from_le_bytes(self.0)
    }
}
