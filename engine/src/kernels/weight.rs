//! A weight matrix as the kernels see it: GGML blocks, row-major, one row per
//! output feature. The bytes either borrow the model file's map (no copy) or
//! are owned (a slice received from the coordinator).

use std::ops::Deref;
use std::sync::Arc;

use memmap2::Mmap;

use super::QuantType;

/// Bytes backing a weight.
#[derive(Clone)]
pub enum WeightBytes {
    Mapped {
        map: Arc<Mmap>,
        start: usize,
        len: usize,
    },
    Owned {
        buf: Arc<Vec<u8>>,
        start: usize,
        len: usize,
    },
}

impl WeightBytes {
    pub fn owned(bytes: Vec<u8>) -> Self {
        let len = bytes.len();
        Self::Owned {
            buf: Arc::new(bytes),
            start: 0,
            len,
        }
    }

    /// A sub-range, sharing the same backing bytes (no copy).
    /// `range` must lie within `0..self.len()`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        match self {
            Self::Mapped { map, start, .. } => Self::Mapped {
                map: map.clone(),
                start: start + range.start,
                len: range.len(),
            },
            Self::Owned { buf, start, .. } => Self::Owned {
                buf: buf.clone(),
                start: start + range.start,
                len: range.len(),
            },
        }
    }
}

impl Deref for WeightBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped { map, start, len } => &map[*start..*start + *len],
            Self::Owned { buf, start, len } => &buf[*start..*start + *len],
        }
    }
}

impl std::fmt::Debug for WeightBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mapped { start, len, .. } => write!(f, "Mapped({start}..+{len})"),
            Self::Owned { start, len, .. } => write!(f, "Owned({start}..+{len})"),
        }
    }
}

/// A `rows x cols` matrix; `cols` is the input (contiguous) dimension.
#[derive(Clone, Debug)]
pub struct Weight {
    pub dtype: QuantType,
    pub rows: usize,
    pub cols: usize,
    pub data: WeightBytes,
}

impl Weight {
    pub fn row_bytes(&self) -> usize {
        // Validated at construction by the loaders: cols is whole blocks.
        self.cols / self.dtype.block_len() * self.dtype.block_bytes()
    }

    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// Dequantizes row `r` into `out` (length `cols`).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        super::dequant::dequantize_row(self.dtype, self.row(r), out)
    }

    /// Whether `cols` is a whole number of blocks and the bytes match the shape.
    pub fn check_shape(
        dtype: QuantType,
        rows: usize,
        cols: usize,
        bytes: usize,
    ) -> Result<(), String> {
        let rb = dtype
            .row_bytes(cols)
            .ok_or_else(|| format!("{cols} columns is not a whole number of {dtype} blocks"))?;
        let want = rb
            .checked_mul(rows)
            .ok_or_else(|| format!("{rows}x{cols} overflows"))?;
        if want != bytes {
            return Err(format!(
                "{rows}x{cols} {dtype} needs {want} bytes, found {bytes}"
            ));
        }
        Ok(())
    }
}
