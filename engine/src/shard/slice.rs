//! Slicing one weight matrix by rows (column-parallel layers: Q/K/V, gate,
//! up, output head) or by input columns (row-parallel layers: o_proj, down).

use std::ops::Range;

use crate::kernels::{Weight, WeightBytes};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SliceError {
    #[error("rows {start}..{end} are outside the {rows} rows of the matrix")]
    RowsOutOfRange {
        start: usize,
        end: usize,
        rows: usize,
    },
    #[error("columns {start}..{end} are outside the {cols} columns of the matrix")]
    ColsOutOfRange {
        start: usize,
        end: usize,
        cols: usize,
    },
    #[error("columns {start}..{end} do not fall on {dtype} block boundaries (blocks of {block})")]
    NotBlockAligned {
        start: usize,
        end: usize,
        dtype: String,
        block: usize,
    },
}

/// Rows `range` of `w`: a zero-copy view.
pub fn slice_rows(w: &Weight, range: Range<usize>) -> Result<Weight, SliceError> {
    if range.start > range.end || range.end > w.rows {
        return Err(SliceError::RowsOutOfRange {
            start: range.start,
            end: range.end,
            rows: w.rows,
        });
    }
    let rb = w.row_bytes();
    Ok(Weight {
        dtype: w.dtype,
        rows: range.len(),
        cols: w.cols,
        data: w.data.slice(range.start * rb..range.end * rb),
    })
}

/// Input columns `range` of every row: copies the selected whole blocks.
pub fn slice_cols(w: &Weight, range: Range<usize>) -> Result<Weight, SliceError> {
    if range.start > range.end || range.end > w.cols {
        return Err(SliceError::ColsOutOfRange {
            start: range.start,
            end: range.end,
            cols: w.cols,
        });
    }
    if range == (0..w.cols) {
        return Ok(w.clone());
    }
    let block = w.dtype.block_len();
    if !range.start.is_multiple_of(block) || !range.end.is_multiple_of(block) {
        return Err(SliceError::NotBlockAligned {
            start: range.start,
            end: range.end,
            dtype: w.dtype.name().to_string(),
            block,
        });
    }
    let bb = w.dtype.block_bytes();
    let (b0, b1) = (range.start / block * bb, range.end / block * bb);
    let mut out = Vec::with_capacity(w.rows * (b1 - b0));
    for r in 0..w.rows {
        out.extend_from_slice(&w.row(r)[b0..b1]);
    }
    Ok(Weight {
        dtype: w.dtype,
        rows: w.rows,
        cols: range.len(),
        data: WeightBytes::owned(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::QuantType;

    fn q8_matrix(rows: usize, cols: usize) -> Weight {
        let rb = QuantType::Q8_0.row_bytes(cols).unwrap_or(0);
        let bytes: Vec<u8> = (0..rows * rb).map(|i| (i % 251) as u8).collect();
        Weight {
            dtype: QuantType::Q8_0,
            rows,
            cols,
            data: WeightBytes::owned(bytes),
        }
    }

    #[test]
    fn row_slice_is_the_same_bytes() {
        let w = q8_matrix(6, 64);
        let s = slice_rows(&w, 2..5).unwrap();
        assert_eq!(s.rows, 3);
        assert_eq!(&s.data[..], &w.data[2 * 68..5 * 68]);
    }

    #[test]
    fn col_slice_takes_whole_blocks_of_each_row() {
        let w = q8_matrix(3, 96);
        let s = slice_cols(&w, 32..96).unwrap();
        assert_eq!((s.rows, s.cols), (3, 64));
        for r in 0..3 {
            assert_eq!(s.row(r), &w.row(r)[34..102]);
        }
        assert!(matches!(
            slice_cols(&w, 16..96),
            Err(SliceError::NotBlockAligned { .. })
        ));
        assert!(matches!(
            slice_rows(&w, 2..4),
            Err(SliceError::RowsOutOfRange { .. })
        ));
    }
}
