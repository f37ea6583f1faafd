//! The 32-value block formats as the hand-written kernels (`avx2.rs`,
//! `neon.rs`) see them: a const tag per format, so each format gets its own
//! straight-line kernel body, and where each block keeps its parts.

#![cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]

use std::mem::{offset_of, size_of};

use super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};

/// Which 32-value format a kernel is compiled for (a const parameter).
pub(super) const Q4_0: u8 = 0;
pub(super) const Q4_1: u8 = 1;
pub(super) const Q5_0: u8 = 2;
pub(super) const Q8_0: u8 = 3;
pub(super) const Q5_1: u8 = 4;

/// Whether format `f` has a minimum per block: `x = d·q + m`, against Q8_1
/// activations, whose `s` (`d·Σy`) carries the minimum's term.
pub(super) const fn has_minimum(f: u8) -> bool {
    matches!(f, Q4_1 | Q5_1)
}

/// (weight block bytes, activation block bytes, offset of the activation quants).
pub(super) const fn layout(f: u8) -> (usize, usize, usize) {
    const Q8_0_QS: usize = offset_of!(BlockQ8_0, qs);
    match f {
        Q4_0 => (size_of::<BlockQ4_0>(), size_of::<BlockQ8_0>(), Q8_0_QS),
        Q4_1 => (
            size_of::<BlockQ4_1>(),
            size_of::<BlockQ8_1>(),
            offset_of!(BlockQ8_1, qs),
        ),
        Q5_0 => (size_of::<BlockQ5_0>(), size_of::<BlockQ8_0>(), Q8_0_QS),
        Q5_1 => (
            size_of::<BlockQ5_1>(),
            size_of::<BlockQ8_1>(),
            offset_of!(BlockQ8_1, qs),
        ),
        _ => (size_of::<BlockQ8_0>(), size_of::<BlockQ8_0>(), Q8_0_QS),
    }
}

/// Offset of the weight block's f16 scale `d` (and Q4_1's or Q5_1's
/// minimum `m`).
pub(super) const fn scale_offsets(f: u8) -> (usize, usize) {
    match f {
        Q4_0 => (offset_of!(BlockQ4_0, d), 0),
        Q4_1 => (offset_of!(BlockQ4_1, d), offset_of!(BlockQ4_1, m)),
        Q5_0 => (offset_of!(BlockQ5_0, d), 0),
        Q5_1 => (offset_of!(BlockQ5_1, d), offset_of!(BlockQ5_1, m)),
        _ => (offset_of!(BlockQ8_0, d), 0),
    }
}
