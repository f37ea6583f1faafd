//! Weights interleaved at load, eight rows at a time, so that one-token
//! decode reads eight rows' codes as one vector and its products land in
//! lanes that are already rows (`avx2_interleaved.rs`), with no horizontal
//! reduction per (row, block). The batch kernels read the same layout.
//!
//! Q4_0 only for now. A group of eight rows is stored block after block;
//! block `b` of the group is 144 bytes, as eight file blocks are:
//!
//! - bytes 0..16: the eight rows' f16 scales, row r at `2r`;
//! - chunk `k` (0..4) at `16 + 32k`: bytes `4k..4k + 4` of each row's
//!   packed nibbles, row r at `16 + 32k + 4r`. Their low nibbles are codes
//!   `4k..4k + 4`, their high nibbles codes `16 + 4k..16 + 4k + 4`, so one
//!   mask or one shift gives four codes of every row, in row lanes.
//!
//! Rows past the last whole group keep the file layout, after the groups,
//! so the interleaved bytes are exactly as many as the file's and a task
//! of whole groups covers a contiguous byte range.

use super::blocks::{BlockQ4_0, F16Le};
use super::QuantType;

/// Rows interleaved together.
pub const ROWS: usize = 8;

const SCALE_BYTES: usize = size_of::<F16Le>();
const QS_BYTES: usize = size_of::<BlockQ4_0>() - SCALE_BYTES;
/// One block of eight rows.
pub(super) const GROUP_BLOCK: usize = ROWS * size_of::<BlockQ4_0>();
/// Where the codes start in a group block, after the eight scales.
pub(super) const CODES_AT: usize = ROWS * SCALE_BYTES;
const _: () = assert!(std::mem::offset_of!(BlockQ4_0, d) == 0);
const _: () = assert!(GROUP_BLOCK == CODES_AT + 4 * 32);

/// Whether `dtype` has an interleaved layout whose kernels this CPU runs
/// (elsewhere weights keep the file layout).
pub fn runs_here(dtype: QuantType) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        dtype == QuantType::Q4_0 && super::dot::Isa::detected().len() > 1
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = dtype;
        false
    }
}

/// Where row `r`'s block `b` byte `i` (scale bytes first) lands.
fn position(nb: usize, r: usize, b: usize, i: usize) -> usize {
    let group = (r / ROWS * nb + b) * GROUP_BLOCK;
    let r = r % ROWS;
    if i < SCALE_BYTES {
        group + r * SCALE_BYTES + i
    } else {
        let q = i - SCALE_BYTES;
        group + CODES_AT + (q / 4) * 32 + r * 4 + q % 4
    }
}

/// The interleaved copy of `rows` rows of `row_bytes` (Q4_0 blocks).
pub fn interleave(src: &[u8], rows: usize, row_bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    interleave_into(src, rows, row_bytes, &mut out);
    out
}

/// [`interleave`] into `out` (as long as `src`). A group of eight rows
/// covers the same bytes in both layouts, so a weight can be interleaved
/// a range of whole groups at a time.
pub fn interleave_into(src: &[u8], rows: usize, row_bytes: usize, out: &mut [u8]) {
    for_each_byte(src.len(), rows, row_bytes, |file, packed| {
        out[packed] = src[file]
    });
}

/// The file layout back from an interleaved copy (the portable path and
/// the tests read it).
pub fn deinterleave(src: &[u8], rows: usize, row_bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    for_each_byte(src.len(), rows, row_bytes, |file, packed| {
        out[file] = src[packed]
    });
    out
}

/// Calls `visit(file position, interleaved position)` for every byte of a
/// `len`-byte weight.
fn for_each_byte(len: usize, rows: usize, row_bytes: usize, mut visit: impl FnMut(usize, usize)) {
    let block = size_of::<BlockQ4_0>();
    let nb = row_bytes / block;
    let grouped = rows / ROWS * ROWS;
    for r in 0..grouped {
        for b in 0..nb {
            for i in 0..SCALE_BYTES + QS_BYTES {
                visit(r * row_bytes + b * block + i, position(nb, r, b, i));
            }
        }
    }
    for p in grouped * row_bytes..len {
        visit(p, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaving_is_a_permutation_that_keeps_the_tail() {
        let (rows, nb) = (19, 3);
        let row_bytes = nb * size_of::<BlockQ4_0>();
        let src: Vec<u8> = (0..rows * row_bytes)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        let packed = interleave(&src, rows, row_bytes);
        assert_ne!(packed, src);
        assert_eq!(&packed[16 * row_bytes..], &src[16 * row_bytes..]);
        assert_eq!(deinterleave(&packed, rows, row_bytes), src);
        // Row 1's scale of block 0, and its codes bytes 4..8 in chunk 1.
        assert_eq!(&packed[2..4], &src[row_bytes..row_bytes + 2]);
        let chunk1_row1 = CODES_AT + 32 + 4;
        assert_eq!(
            &packed[chunk1_row1..chunk1_row1 + 4],
            &src[row_bytes + 2 + 4..row_bytes + 2 + 8]
        );
    }
}
