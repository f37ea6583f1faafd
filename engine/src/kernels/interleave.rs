//! Weights interleaved at load, eight rows at a time, so that one-token
//! decode reads eight rows' codes as one vector and its products land in
//! lanes that are already rows (`avx2_interleaved.rs`), with no horizontal
//! reduction per (row, block). The batch kernels read the same layout.
//!
//! A group of eight rows is stored block after block, and block `b` of the
//! group has as many bytes as eight file blocks. **Q4_0** (8 x 18 bytes):
//!
//! - bytes 0..16: the eight rows' f16 scales, row r at `2r`;
//! - chunk `k` (0..4) at `16 + 32k`: bytes `4k..4k + 4` of each row's
//!   packed nibbles, row r at `16 + 32k + 4r`. Their low nibbles are codes
//!   `4k..4k + 4`, their high nibbles codes `16 + 4k..16 + 4k + 4`, so one
//!   mask or one shift gives four codes of every row, in row lanes.
//!
//! **Q4_1** (8 x 20 bytes) is Q4_0 with the eight rows' f16 minimums at
//! 16..32, after the scales, and the chunks from 32.
//!
//! **Q8_0** (8 x 34 bytes) is Q4_0 with eight chunks: chunk `k` (0..8) at
//! `16 + 32k` holds codes `4k..4k + 4` of each row, row r at `4r`, signed
//! as in the file.
//!
//! **Q4_K** (8 x 144 bytes per super-block):
//!
//! - bytes 0..16 and 16..32: the rows' f16 `d` and `dmin`, row r at `2r`;
//! - 32..128: byte `j` (0..12) of each row's packed 6-bit scales and
//!   minimums at `32 + 8j + r`, so eight rows' byte j are one u64 and the
//!   unpacking runs on all eight at once;
//! - 128..1152: the codes, as Q4_0's chunks: for the row's 32-byte chunk
//!   `c` (groups `2c` low nibbles, `2c + 1` high), sub-chunk `s` (0..8) at
//!   `128 + 256c + 32s` holds bytes `4s..4s + 4` of it, row r at `4r`.
//!
//! Rows past the last whole group keep the file layout, after the groups,
//! so the interleaved bytes are exactly as many as the file's and a task
//! of whole groups covers a contiguous byte range.

use super::blocks::{BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ8_0, F16Le};
use super::QuantType;

/// Rows interleaved together.
pub const ROWS: usize = 8;

const SCALE_BYTES: usize = size_of::<F16Le>();
/// Where the codes start in a Q4_0 group block, after the eight scales.
pub(super) const Q4_0_CODES_AT: usize = ROWS * SCALE_BYTES;
/// Where the eight minimums start in a Q4_1 group block, after the scales.
pub(super) const Q4_1_MINS_AT: usize = ROWS * SCALE_BYTES;
/// Where the codes start in a Q4_1 group block.
pub(super) const Q4_1_CODES_AT: usize = 2 * ROWS * SCALE_BYTES;
const _: () = assert!(std::mem::offset_of!(BlockQ4_0, d) == 0);
const _: () = assert!(ROWS * size_of::<BlockQ4_0>() == Q4_0_CODES_AT + 4 * 32);
const _: () = assert!(std::mem::offset_of!(BlockQ4_1, m) == 2);
const _: () = assert!(ROWS * size_of::<BlockQ4_1>() == Q4_1_CODES_AT + 4 * 32);
const _: () = assert!(std::mem::offset_of!(BlockQ8_0, d) == 0);
const _: () = assert!(ROWS * size_of::<BlockQ8_0>() == Q4_0_CODES_AT + 8 * 32);

/// One Q4_K super-block of eight rows.
pub(super) const GROUP_SUPER: usize = ROWS * size_of::<BlockQ4K>();
/// Where the eight rows' `dmin` start in a Q4_K group super-block.
pub(super) const K_DMIN_AT: usize = ROWS * SCALE_BYTES;
/// Where byte 0 of the eight rows' scale fields starts.
pub(super) const K_SCALES_AT: usize = 2 * ROWS * SCALE_BYTES;
/// Where the codes start.
pub(super) const K_CODES_AT: usize = K_SCALES_AT + ROWS * 12;
const _: () = assert!(std::mem::offset_of!(BlockQ4K, dmin) == 2);
const _: () = assert!(std::mem::offset_of!(BlockQ4K, scales) == 4);
const _: () = assert!(std::mem::offset_of!(BlockQ4K, qs) == 16);
const _: () = assert!(GROUP_SUPER == K_CODES_AT + 4 * 256);

/// Whether `dtype` has an interleaved layout whose kernels this CPU runs
/// (elsewhere weights keep the file layout).
pub fn runs_here(dtype: QuantType) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_layout(dtype) && super::dot::Isa::detected().len() > 1
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = dtype;
        false
    }
}

/// Whether `dtype` has an interleaved layout at all.
pub fn has_layout(dtype: QuantType) -> bool {
    matches!(
        dtype,
        QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q8_0 | QuantType::Q4K
    )
}

/// Where byte `i` of a row's block lands within its group block, for row
/// `r` of the group.
fn within_group(dtype: QuantType, r: usize, i: usize) -> usize {
    let codes = |at: usize, q: usize, chunk: usize| {
        at + (q / chunk) * (ROWS * chunk) + (q % chunk) / 4 * 32 + r * 4 + q % 4
    };
    match dtype {
        QuantType::Q4K => match i {
            0..2 => r * SCALE_BYTES + i,
            2..4 => K_DMIN_AT + r * SCALE_BYTES + i - 2,
            4..16 => K_SCALES_AT + (i - 4) * ROWS + r,
            _ => codes(K_CODES_AT, i - 16, 32),
        },
        QuantType::Q4_1 => match i {
            0..2 => r * SCALE_BYTES + i,
            2..4 => Q4_1_MINS_AT + r * SCALE_BYTES + i - 2,
            _ => codes(Q4_1_CODES_AT, i - 2 * SCALE_BYTES, 16),
        },
        QuantType::Q8_0 => match i {
            0..2 => r * SCALE_BYTES + i,
            _ => codes(Q4_0_CODES_AT, i - SCALE_BYTES, 32),
        },
        _ => match i {
            0..2 => r * SCALE_BYTES + i,
            _ => codes(Q4_0_CODES_AT, i - SCALE_BYTES, 16),
        },
    }
}

/// The interleaved copy of `rows` rows of `row_bytes` in `dtype` (one
/// with a layout, [`has_layout`]).
pub fn interleave(dtype: QuantType, src: &[u8], rows: usize, row_bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    interleave_into(dtype, src, rows, row_bytes, &mut out);
    out
}

/// [`interleave`] into `out` (as long as `src`). A group of eight rows
/// covers the same bytes in both layouts, so a weight can be interleaved
/// a range of whole groups at a time.
pub fn interleave_into(
    dtype: QuantType,
    src: &[u8],
    rows: usize,
    row_bytes: usize,
    out: &mut [u8],
) {
    for_each_piece(dtype, rows, row_bytes, &mut ToGroups { src, out });
}

/// The file layout back from an interleaved copy (the portable path and
/// the tests read it).
pub fn deinterleave(dtype: QuantType, src: &[u8], rows: usize, row_bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    for_each_piece(
        dtype,
        rows,
        row_bytes,
        &mut FromGroups { src, out: &mut out },
    );
    out
}

/// Moves a piece of `N` bytes between its place in the file layout and
/// its place in the interleaved one. The length is a constant, so each
/// copy is one move (a 4 GB model has a billion pieces), and the rows past
/// the last group are one copy.
trait Piece {
    fn bytes<const N: usize>(&mut self, file: usize, packed: usize);
    fn rest(&mut self, from: usize);
}

struct ToGroups<'a> {
    src: &'a [u8],
    out: &'a mut [u8],
}

impl Piece for ToGroups<'_> {
    #[inline(always)]
    fn bytes<const N: usize>(&mut self, file: usize, packed: usize) {
        self.out[packed..packed + N].copy_from_slice(&self.src[file..file + N]);
    }
    fn rest(&mut self, from: usize) {
        self.out[from..].copy_from_slice(&self.src[from..]);
    }
}

struct FromGroups<'a> {
    src: &'a [u8],
    out: &'a mut [u8],
}

impl Piece for FromGroups<'_> {
    #[inline(always)]
    fn bytes<const N: usize>(&mut self, file: usize, packed: usize) {
        self.out[file..file + N].copy_from_slice(&self.src[packed..packed + N]);
    }
    fn rest(&mut self, from: usize) {
        self.out[from..].copy_from_slice(&self.src[from..]);
    }
}

/// Hands every piece of `rows` rows to `piece`: per block, its f16 fields
/// (two bytes each), Q4_K's scale bytes (one each), its codes (four bytes
/// each); then the rows past the last whole group.
fn for_each_piece(dtype: QuantType, rows: usize, row_bytes: usize, piece: &mut impl Piece) {
    let block = dtype.block_bytes();
    let nb = row_bytes / block;
    let grouped = rows / ROWS * ROWS;
    let (halves, scale_bytes) = match dtype {
        QuantType::Q4K => (2, 12),
        QuantType::Q4_1 => (2, 0),
        _ => (1, 0),
    };
    let codes_from = halves * SCALE_BYTES + scale_bytes;
    for r in 0..grouped {
        let at = |i: usize| within_group(dtype, r % ROWS, i);
        let half_at: Vec<usize> = (0..halves).map(|h| at(h * SCALE_BYTES)).collect();
        let scale_at: Vec<usize> = (0..scale_bytes)
            .map(|j| at(halves * SCALE_BYTES + j))
            .collect();
        let code_at: Vec<usize> = (codes_from..block).step_by(4).map(at).collect();
        for b in 0..nb {
            let group = (r / ROWS * nb + b) * ROWS * block;
            let file = r * row_bytes + b * block;
            for (h, &p) in half_at.iter().enumerate() {
                piece.bytes::<SCALE_BYTES>(file + h * SCALE_BYTES, group + p);
            }
            for (j, &p) in scale_at.iter().enumerate() {
                piece.bytes::<1>(file + halves * SCALE_BYTES + j, group + p);
            }
            for (k, &p) in code_at.iter().enumerate() {
                piece.bytes::<4>(file + codes_from + 4 * k, group + p);
            }
        }
    }
    piece.rest(grouped * row_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn interleaving_is_a_permutation_that_keeps_the_tail() {
        for dtype in [
            QuantType::Q4_0,
            QuantType::Q4_1,
            QuantType::Q8_0,
            QuantType::Q4K,
        ] {
            let (rows, nb) = (19, 3);
            let row_bytes = nb * dtype.block_bytes();
            let src = bytes(rows * row_bytes);
            let packed = interleave(dtype, &src, rows, row_bytes);
            assert_ne!(packed, src);
            assert_eq!(&packed[16 * row_bytes..], &src[16 * row_bytes..]);
            assert_eq!(deinterleave(dtype, &packed, rows, row_bytes), src);
        }
    }

    #[test]
    fn bytes_land_where_the_kernels_read_them() {
        let row_bytes = 3 * size_of::<BlockQ4_0>();
        let src = bytes(8 * row_bytes);
        let packed = interleave(QuantType::Q4_0, &src, 8, row_bytes);
        // Row 1's scale of block 0, and its code bytes 4..8 in chunk 1.
        assert_eq!(&packed[2..4], &src[row_bytes..row_bytes + 2]);
        let chunk1_row1 = Q4_0_CODES_AT + 32 + 4;
        assert_eq!(
            &packed[chunk1_row1..chunk1_row1 + 4],
            &src[row_bytes + 2 + 4..row_bytes + 2 + 8]
        );

        let row_bytes = 2 * size_of::<BlockQ4_1>();
        let src = bytes(8 * row_bytes);
        let packed = interleave(QuantType::Q4_1, &src, 8, row_bytes);
        // Row 2's minimum of block 0, row 0's code bytes 0..4.
        assert_eq!(
            &packed[Q4_1_MINS_AT + 4..Q4_1_MINS_AT + 6],
            &src[2 * row_bytes + 2..][..2]
        );
        assert_eq!(&packed[Q4_1_CODES_AT..Q4_1_CODES_AT + 4], &src[4..8]);

        let row_bytes = 2 * size_of::<BlockQ8_0>();
        let src = bytes(8 * row_bytes);
        let packed = interleave(QuantType::Q8_0, &src, 8, row_bytes);
        // Row 3's code bytes 20..24 (chunk 5); block 1's scale of row 0.
        let chunk5_row3 = Q4_0_CODES_AT + 5 * 32 + 3 * 4;
        assert_eq!(
            &packed[chunk5_row3..chunk5_row3 + 4],
            &src[3 * row_bytes + 2 + 20..][..4]
        );
        assert_eq!(&packed[8 * 34..8 * 34 + 2], &src[34..36]);

        let row_bytes = 2 * size_of::<BlockQ4K>();
        let src = bytes(8 * row_bytes);
        let packed = interleave(QuantType::Q4K, &src, 8, row_bytes);
        let row = |r: usize| &src[r * row_bytes..];
        // Row 1's dmin, row 3's scale byte 5, row 2's code byte 37
        // (chunk 1, sub-chunk 1, byte 1); then super-block 1's d of row 0.
        assert_eq!(&packed[K_DMIN_AT + 2..K_DMIN_AT + 4], &row(1)[2..4]);
        assert_eq!(packed[K_SCALES_AT + 5 * 8 + 3], row(3)[4 + 5]);
        assert_eq!(packed[K_CODES_AT + 256 + 32 + 8 + 1], row(2)[16 + 37]);
        assert_eq!(&packed[GROUP_SUPER..GROUP_SUPER + 2], &row(0)[144..146]);
    }
}
