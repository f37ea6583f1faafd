//! A weight matrix as the kernels see it: GGML blocks, row-major, one row per
//! output feature. The bytes either borrow the model file's map (no copy) or
//! are owned (a slice received from the coordinator); a model's matrices
//! may be interleaved at load for the decode kernels (`interleave.rs`).

use std::ops::Deref;
use std::sync::Arc;

use memmap2::Mmap;
use rayon::prelude::*;

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
    /// The same bytes reordered eight rows at a time
    /// ([`super::interleave`]): only the matmul reads them, never a row.
    Interleaved(Box<WeightBytes>),
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
            Self::Interleaved(inner) => Self::Interleaved(Box::new(inner.slice(range))),
        }
    }

    pub fn is_interleaved(&self) -> bool {
        matches!(self, Self::Interleaved(_))
    }

    /// Drops the resident pages of `range` (of these bytes), which must map
    /// a model file, once a copy has replaced them (the interleaved
    /// weights), so resident memory holds one copy. A later read faults
    /// them in again from the file. Pages only partly in the range are
    /// kept. Owned bytes are freed when their last holder drops them.
    pub fn release_mapped_pages(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let Self::Mapped { map, start, .. } = self {
            let page = crate::platform::page_size();
            let first = (start + range.start).next_multiple_of(page);
            let end = (start + range.end) / page * page;
            if end > first {
                // SAFETY: the map is a read-only map of a model file, so
                // dropping its pages loses nothing: they are read back
                // from the file if touched again.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        first,
                        end - first,
                    )
                };
            }
        }
    }
}

impl Deref for WeightBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped { map, start, len } => &map[*start..*start + *len],
            Self::Owned { buf, start, len } => &buf[*start..*start + *len],
            Self::Interleaved(inner) => inner,
        }
    }
}

impl std::fmt::Debug for WeightBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mapped { start, len, .. } => write!(f, "Mapped({start}..+{len})"),
            Self::Owned { start, len, .. } => write!(f, "Owned({start}..+{len})"),
            Self::Interleaved(inner) => write!(f, "Interleaved({inner:?})"),
        }
    }
}

/// How much of a weight is interleaved before its mapped pages are
/// released: the most resident memory holds twice, per thread.
const COPY_STEP_BYTES: usize = 4 << 20;

/// A `rows x cols` matrix; `cols` is the input (contiguous) dimension.
#[derive(Clone, Debug)]
pub struct Weight {
    pub dtype: QuantType,
    pub rows: usize,
    pub cols: usize,
    pub data: WeightBytes,
}

/// Anonymous memory for a weight's load-time copy. Pages of its own rather
/// than the allocator's: one copy in memory (a heap arena of a loading
/// thread kept tens of MiB more resident at SmolLM2's peak), freed whole
/// when dropped. Asked for in huge pages where Linux leaves them to the
/// program (`madvise` mode): a decode streams every weight once a token,
/// and with 4 KiB pages each page of it costs a TLB miss (one thread
/// decodes the 8b up to 9% faster: docs/ARCHITECTURE.md, "Huge pages for
/// the copies").
pub(crate) fn copy_map(len: usize) -> Option<memmap2::MmapMut> {
    let map = memmap2::MmapMut::map_anon(len).ok()?;
    // Only advice: a kernel without transparent huge pages keeps small ones.
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    Some(map)
}

impl Weight {
    pub fn row_bytes(&self) -> usize {
        // Validated at construction by the loaders: cols is whole blocks.
        self.cols / self.dtype.block_len() * self.dtype.block_bytes()
    }

    /// Row `r` in the file layout (never of an interleaved weight).
    pub fn row(&self, r: usize) -> &[u8] {
        debug_assert!(
            !self.data.is_interleaved(),
            "a row of an interleaved weight"
        );
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

    /// This weight interleaved for the decode kernels, where its type has
    /// such a layout on this CPU and it has a whole group of rows (else
    /// `None`, as where no memory is left for the copy). It is made a few
    /// MiB at a time, and each range's mapped pages are released once
    /// copied ([`WeightBytes::release_mapped_pages`]), so resident memory
    /// never holds two copies of more than that. A mapped weight must
    /// therefore map a file: an anonymous map's released pages read back
    /// as zeros.
    pub fn interleaved(&self) -> Option<Weight> {
        use super::interleave::{interleave_into, runs_here, ROWS};
        if self.data.is_interleaved() || self.rows < ROWS || !runs_here(self.dtype) {
            return None;
        }
        let rb = self.row_bytes();
        let step = (COPY_STEP_BYTES / rb.max(1))
            .next_multiple_of(ROWS)
            .max(ROWS);
        let len = self.data.len();
        let mut bytes = copy_map(len)?;
        // Steps of whole groups, spread over the threads (a 4 GB model's
        // copy is seconds of one core).
        bytes
            .par_chunks_mut(step * rb)
            .enumerate()
            .for_each(|(i, out)| {
                let range = i * step * rb..i * step * rb + out.len();
                let src = &self.data[range.clone()];
                interleave_into(self.dtype, src, out.len() / rb, rb, out);
                self.data.release_mapped_pages(range);
            });
        let map = Arc::new(bytes.make_read_only().ok()?);
        Some(Weight {
            data: WeightBytes::Interleaved(Box::new(WeightBytes::Mapped { map, start: 0, len })),
            ..self.clone()
        })
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
