//! GGML's block layouts as typed structs (after llama.cpp's `ggml-common.h`).
//!
//! A quantized row is a sequence of blocks, each covering a fixed number of
//! values. Every block type here is `#[repr(C)]` with alignment 1 (its f16,
//! f32 and i16 fields are stored as little-endian byte arrays), so a row
//! anywhere in a mapped file or a received buffer can be viewed as blocks
//! in place, with [`as_blocks`]. Each type's size is checked at compile time
//! against GGML's, and the sizes the rest of the engine uses come from
//! `size_of` on these types.

/// Implements [`Block`] for a layout after checking at compile time that it
/// has GGML's size and alignment 1.
macro_rules! block {
    ($ty:ty, values: $values:expr, bytes: $bytes:expr) => {
        const _: () = assert!(std::mem::size_of::<$ty>() == $bytes);
        const _: () = assert!(std::mem::align_of::<$ty>() == 1);
        // SAFETY: `#[repr(C)]`, alignment 1 (checked above) and `u8`/
        // `i8` array fields only, so no padding and no invalid bit patterns.
        unsafe impl $crate::kernels::blocks::Block for $ty {
            const VALUES: usize = $values;
        }
    };
}

mod k_quants;
mod legacy;
mod scalars;

pub use k_quants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, K_SCALE_SIZE};
pub use legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
pub use scalars::{Bf16Le, F16Le, F32Le, I16Le};

/// Values per block of the 32-value formats (GGML's `QK4_0`, `QK8_0`, ...).
pub const QK: usize = 32;

/// Values per super-block of the K-quants (GGML's `QK_K`).
pub const QK_K: usize = 256;

/// A block layout that byte slices may be viewed as.
///
/// # Safety
/// Implement only for `#[repr(C)]` (or `#[repr(transparent)]`) types of
/// alignment 1 without padding, all of whose fields are `u8`/`i8` arrays (or
/// types that are themselves `Block`), so that every bit pattern is a valid
/// value. The [`block!`] macro checks size and alignment at compile time.
pub unsafe trait Block: Copy + 'static {
    /// Values one block covers.
    const VALUES: usize;
    /// Bytes one block takes.
    const BYTES: usize = std::mem::size_of::<Self>();
}

/// Views `bytes` as blocks of `B`, in place.
///
/// Panics if `bytes` is not a whole number of blocks: the loaders check
/// every weight's shape against its block size (`Weight::check_shape`), so
/// a partial block here is a bug in the caller, as an out-of-range slice
/// index would be.
#[inline(always)]
pub fn as_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    const { assert!(std::mem::align_of::<B>() == 1 && B::BYTES > 0) };
    assert!(
        bytes.len().is_multiple_of(B::BYTES),
        "{} bytes are not whole {}-byte blocks",
        bytes.len(),
        B::BYTES
    );
    // SAFETY: `B` has alignment 1, so every address is aligned for it; the
    // length is a whole number of blocks, all inside `bytes`; every bit
    // pattern is a valid `B` (the `Block` contract); the lifetime is kept.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / B::BYTES) }
}

/// As [`as_blocks`], for writing blocks in place.
#[inline(always)]
pub fn as_blocks_mut<B: Block>(bytes: &mut [u8]) -> &mut [B] {
    const { assert!(std::mem::align_of::<B>() == 1 && B::BYTES > 0) };
    assert!(
        bytes.len().is_multiple_of(B::BYTES),
        "{} bytes are not whole {}-byte blocks",
        bytes.len(),
        B::BYTES
    );
    // SAFETY: as in `as_blocks`; the borrow is exclusive, and any value
    // written through `B`'s byte-array fields is a valid byte pattern.
    unsafe {
        std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), bytes.len() / B::BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_slices_view_as_blocks_at_any_offset() {
        let mut bytes = [0u8; 1 + 2 * BlockQ4_0::BYTES];
        bytes[1..3].copy_from_slice(&half::f16::from_f32(1.5).to_le_bytes());
        bytes[3] = 0xab;
        // Offset 1: GGUF rows need not be aligned to anything.
        let blocks = as_blocks::<BlockQ4_0>(&bytes[1..]);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].d.to_f32(), 1.5);
        assert_eq!(blocks[0].qs[0], 0xab);
    }

    #[test]
    #[should_panic(expected = "not whole 18-byte blocks")]
    fn a_partial_block_is_refused() {
        as_blocks::<BlockQ4_0>(&[0u8; 20]);
    }

    #[test]
    fn writes_through_blocks_land_in_the_bytes() {
        let mut bytes = [0u8; BlockQ8K::BYTES];
        let b = &mut as_blocks_mut::<BlockQ8K>(&mut bytes)[0];
        b.d = F32Le::from_f32(2.0);
        b.qs[0] = -3;
        b.bsums[15] = I16Le::from_i16(-2);
        assert_eq!(bytes[..4], 2.0f32.to_le_bytes());
        assert_eq!(bytes[4], (-3i8) as u8);
        assert_eq!(bytes[290..], (-2i16).to_le_bytes());
    }
}
