//! Writes GGUF v3 files: header, metadata, tensor table, aligned tensor data.
//!
//! Tensor data comes either from memory or from a producer callback that hands
//! the writer its bytes in chunks, so a 40 GB synthetic model streams to disk
//! without ever being held whole. The file is written to `<path>.tmp` and
//! renamed into place only once complete, so a crash or an error never leaves
//! a half-written file under the real name for a loader to trip over.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use super::types::{GgmlType, MetadataArray, MetadataValue};

/// The GGUF version this writer produces.
pub const GGUF_VERSION: u32 = 3;
/// llama.cpp's `GGML_MAX_NAME`: longer tensor names do not fit its tensor struct.
pub const MAX_TENSOR_NAME: usize = 63;
/// Large enough that a multi-gigabyte write is a few thousand syscalls.
const WRITE_BUFFER: usize = 8 << 20;

/// Receives one chunk of a tensor's bytes.
pub type ChunkSink<'a> = dyn FnMut(&[u8]) -> io::Result<()> + 'a;
/// Produces a tensor's bytes by calling the sink with consecutive chunks. It may
/// be called more than once (once per `write`), and must produce the same bytes
/// each time for the output to be reproducible.
pub type ChunkProducer = dyn Fn(&mut ChunkSink<'_>) -> io::Result<()> + Send + Sync;

/// Where a tensor's bytes come from.
pub enum TensorSource {
    Bytes(Vec<u8>),
    Chunks(Box<ChunkProducer>),
}

impl TensorSource {
    /// Wraps a producer closure.
    pub fn chunks(
        f: impl Fn(&mut ChunkSink<'_>) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        Self::Chunks(Box::new(f))
    }
}

impl std::fmt::Debug for TensorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "Bytes({})", b.len()),
            Self::Chunks(_) => f.write_str("Chunks"),
        }
    }
}

pub(super) struct PendingTensor {
    pub(super) name: String,
    pub(super) dims: Vec<u64>,
    pub(super) dtype: GgmlType,
    pub(super) source: TensorSource,
}

#[derive(Debug, thiserror::Error)]
pub enum GgufWriteError {
    #[error("{path}: cannot write: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: tensor '{tensor}': producing its data failed after {written} bytes: {source}"
    )]
    Producer {
        path: PathBuf,
        tensor: String,
        written: u64,
        source: io::Error,
    },
    #[error("{path}: tensor '{tensor}': {problem}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        problem: String,
    },
    #[error("{path}: metadata key '{key}': {problem}")]
    Metadata {
        path: PathBuf,
        key: String,
        problem: String,
    },
    /// A split that cannot be made (`split_writer`).
    #[error("{prefix}: cannot split: {problem}")]
    Split { prefix: PathBuf, problem: String },
}

/// Collects metadata and tensors, then writes them as one GGUF file.
#[derive(Default)]
pub struct GgufWriter {
    pub(super) metadata: Vec<(String, MetadataValue)>,
    pub(super) tensors: Vec<PendingTensor>,
}

/// Where each tensor's data lands, computed once before writing.
struct Layout {
    /// Offsets relative to the data section, one per tensor.
    offsets: Vec<u64>,
    sizes: Vec<u64>,
    data_start: u64,
    total: u64,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key. Duplicates are reported by `write`, not here, so building
    /// stays infallible and the error can name the file.
    pub fn add_metadata(&mut self, key: &str, v: MetadataValue) {
        self.metadata.push((key.to_string(), v));
    }

    /// Adds a tensor. `dims` is in GGML order: `dims[0]` is contiguous.
    pub fn add_tensor(&mut self, name: &str, dims: &[u64], dtype: GgmlType, data: TensorSource) {
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            dtype,
            source: data,
        });
    }

    /// The size of the file `write` would produce.
    pub fn file_size(&self, path: &Path) -> Result<u64, GgufWriteError> {
        Ok(self.layout(path)?.total)
    }

    /// Writes the file; returns its size in bytes.
    pub fn write(&self, path: &Path) -> Result<u64, GgufWriteError> {
        self.write_with_progress(path, &mut |_, _| {})
    }

    /// Like [`write`](Self::write), calling `progress(bytes_written, total)`
    /// after the header and after every chunk of tensor data.
    pub fn write_with_progress(
        &self,
        path: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64, GgufWriteError> {
        let layout = self.layout(path)?;
        let tmp = tmp_path(path);
        let result = self.write_to(path, &tmp, &layout, progress);
        if result.is_err() {
            // Best effort: the error being returned matters more than the leftover.
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        std::fs::rename(&tmp, path).map_err(|source| GgufWriteError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(layout.total)
    }

    fn write_to(
        &self,
        path: &Path,
        tmp: &Path,
        layout: &Layout,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), GgufWriteError> {
        let io_err = |source| GgufWriteError::Io {
            path: tmp.to_path_buf(),
            source,
        };
        let file = File::create(tmp).map_err(io_err)?;
        let mut out = CountingWriter {
            inner: BufWriter::with_capacity(WRITE_BUFFER, file),
            written: 0,
        };
        self.write_header(&mut out, layout).map_err(io_err)?;
        pad_to(&mut out, layout.data_start).map_err(io_err)?;
        debug_assert_eq!(out.written, layout.data_start);
        progress(out.written, layout.total);

        for (i, t) in self.tensors.iter().enumerate() {
            let start = layout.data_start + layout.offsets[i];
            pad_to(&mut out, start).map_err(io_err)?;
            match &t.source {
                TensorSource::Bytes(b) => {
                    out.write_all(b).map_err(io_err)?;
                    progress(out.written, layout.total);
                }
                TensorSource::Chunks(produce) => {
                    let limit = start + layout.sizes[i];
                    // The sink's own io errors are kept here so they are not
                    // mistaken for the producer's.
                    let mut sink_error: Option<io::Error> = None;
                    let mut sink = |chunk: &[u8]| -> io::Result<()> {
                        if out.written + chunk.len() as u64 > limit {
                            return Err(io::Error::other(format!(
                                "produced more than the {} bytes its shape needs",
                                layout.sizes[i]
                            )));
                        }
                        if let Err(e) = out.write_all(chunk) {
                            let kind = e.kind();
                            sink_error = Some(e);
                            return Err(io::Error::new(kind, "write failed"));
                        }
                        progress(out.written, layout.total);
                        Ok(())
                    };
                    let produced = produce(&mut sink);
                    if let Some(e) = sink_error {
                        return Err(io_err(e));
                    }
                    produced.map_err(|source| GgufWriteError::Producer {
                        path: path.to_path_buf(),
                        tensor: t.name.clone(),
                        written: out.written - start,
                        source,
                    })?;
                }
            }
            let got = out.written - start;
            if got != layout.sizes[i] {
                return Err(GgufWriteError::Tensor {
                    path: path.to_path_buf(),
                    tensor: t.name.clone(),
                    problem: format!(
                        "its data is {got} bytes but {:?} {} needs {}",
                        t.dims, t.dtype, layout.sizes[i]
                    ),
                });
            }
        }
        pad_to(&mut out, layout.total).map_err(io_err)?;
        progress(out.written, layout.total);
        let file = out.inner.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        Ok(())
    }

    fn write_header(&self, out: &mut impl Write, layout: &Layout) -> io::Result<()> {
        out.write_all(GGUF_MAGIC)?;
        out.write_all(&GGUF_VERSION.to_le_bytes())?;
        out.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        out.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            write_string(out, key)?;
            out.write_all(&value_kind(value).to_le_bytes())?;
            write_value(out, value)?;
        }
        for (t, offset) in self.tensors.iter().zip(&layout.offsets) {
            write_string(out, &t.name)?;
            out.write_all(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                out.write_all(&d.to_le_bytes())?;
            }
            out.write_all(&t.dtype.id().to_le_bytes())?;
            out.write_all(&offset.to_le_bytes())?;
        }
        Ok(())
    }

    /// Validates everything a reader would check and computes the offsets.
    fn layout(&self, path: &Path) -> Result<Layout, GgufWriteError> {
        let meta_err = |key: &str, problem: String| GgufWriteError::Metadata {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem,
        };
        let mut keys = HashSet::new();
        let mut header_len: u64 = 4 + 4 + 8 + 8;
        let mut alignment = DEFAULT_ALIGNMENT;
        for (key, value) in &self.metadata {
            if !keys.insert(key.as_str()) {
                return Err(meta_err(key, "added twice".into()));
            }
            if key == "general.alignment" {
                // llama.cpp reads the alignment only as a u32.
                alignment = match value {
                    MetadataValue::U32(a) if a.is_power_of_two() && *a <= 1 << 20 => *a as u64,
                    other => {
                        return Err(meta_err(
                            key,
                            format!("{other:?} must be a u32 power of two up to 1 MiB"),
                        ))
                    }
                };
            }
            header_len += 8 + key.len() as u64 + 4 + value_len(value);
        }

        let mut names = HashSet::new();
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut sizes = Vec::with_capacity(self.tensors.len());
        let mut next: u64 = 0;
        for t in &self.tensors {
            let tensor_err = |problem: String| GgufWriteError::Tensor {
                path: path.to_path_buf(),
                tensor: t.name.clone(),
                problem,
            };
            if !names.insert(t.name.as_str()) {
                return Err(tensor_err("added twice".into()));
            }
            if t.name.len() > MAX_TENSOR_NAME {
                return Err(tensor_err(format!(
                    "name is {} bytes; llama.cpp allows {MAX_TENSOR_NAME}",
                    t.name.len()
                )));
            }
            let size = data_size(&t.dims, t.dtype).map_err(tensor_err)?;
            if let TensorSource::Bytes(b) = &t.source {
                if b.len() as u64 != size {
                    return Err(tensor_err(format!(
                        "{} bytes given but {:?} {} needs {size}",
                        b.len(),
                        t.dims,
                        t.dtype
                    )));
                }
            }
            let offset = next.div_ceil(alignment) * alignment;
            offsets.push(offset);
            sizes.push(size);
            next = offset
                .checked_add(size)
                .ok_or_else(|| tensor_err("data offset overflows".into()))?;
            header_len += 8 + t.name.len() as u64 + 4 + 8 * t.dims.len() as u64 + 4 + 8;
        }
        let data_start = header_len.div_ceil(alignment) * alignment;
        // gguf-py pads after the last tensor too; match it so files compare equal.
        let total = data_start + next.div_ceil(alignment) * alignment;
        Ok(Layout {
            offsets,
            sizes,
            data_start,
            total,
        })
    }
}

/// `path` with `.tmp` appended to its file name.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

pub(super) fn data_size(dims: &[u64], dtype: GgmlType) -> Result<u64, String> {
    if dims.is_empty() || dims.len() > MAX_DIMS as usize {
        return Err(format!(
            "{} dimensions (GGML allows 1 to {MAX_DIMS})",
            dims.len()
        ));
    }
    if matches!(dtype, GgmlType::Q8_1 | GgmlType::Q8K) {
        return Err(format!(
            "{dtype} is an activation format; llama.cpp does not load it as a weight"
        ));
    }
    let block = dtype.block_len() as u64;
    if !dims[0].is_multiple_of(block) {
        return Err(format!(
            "first dimension {} is not a multiple of the {dtype} block length {block}",
            dims[0]
        ));
    }
    let mut count: u64 = 1;
    for &d in dims {
        count = count
            .checked_mul(d)
            .ok_or_else(|| format!("shape {dims:?} overflows"))?;
    }
    (count / block)
        .checked_mul(dtype.block_bytes() as u64)
        .ok_or_else(|| format!("shape {dims:?} overflows"))
}

struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad_to<W: Write>(out: &mut CountingWriter<W>, at: u64) -> io::Result<()> {
    const ZEROS: [u8; 64] = [0; 64];
    while out.written < at {
        let n = (at - out.written).min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..n])?;
    }
    Ok(())
}

fn write_string(out: &mut impl Write, s: &str) -> io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s.as_bytes())
}

/// The GGUF type id of a value.
fn value_kind(v: &MetadataValue) -> u32 {
    match v {
        MetadataValue::U8(_) => 0,
        MetadataValue::I8(_) => 1,
        MetadataValue::U16(_) => 2,
        MetadataValue::I16(_) => 3,
        MetadataValue::U32(_) => 4,
        MetadataValue::I32(_) => 5,
        MetadataValue::F32(_) => 6,
        MetadataValue::Bool(_) => 7,
        MetadataValue::String(_) => 8,
        MetadataValue::Array(_) => 9,
        MetadataValue::U64(_) => 10,
        MetadataValue::I64(_) => 11,
        MetadataValue::F64(_) => 12,
    }
}

/// The GGUF type id of an array's elements.
fn array_kind(a: &MetadataArray) -> u32 {
    match a {
        MetadataArray::U8(_) => 0,
        MetadataArray::I8(_) => 1,
        MetadataArray::U16(_) => 2,
        MetadataArray::I16(_) => 3,
        MetadataArray::U32(_) => 4,
        MetadataArray::I32(_) => 5,
        MetadataArray::F32(_) => 6,
        MetadataArray::Bool(_) => 7,
        MetadataArray::String(_) => 8,
        MetadataArray::Array(_) => 9,
        MetadataArray::U64(_) => 10,
        MetadataArray::I64(_) => 11,
        MetadataArray::F64(_) => 12,
    }
}

/// Encoded size of a value, without its type id.
fn value_len(v: &MetadataValue) -> u64 {
    match v {
        MetadataValue::U8(_) | MetadataValue::I8(_) | MetadataValue::Bool(_) => 1,
        MetadataValue::U16(_) | MetadataValue::I16(_) => 2,
        MetadataValue::U32(_) | MetadataValue::I32(_) | MetadataValue::F32(_) => 4,
        MetadataValue::U64(_) | MetadataValue::I64(_) | MetadataValue::F64(_) => 8,
        MetadataValue::String(s) => 8 + s.len() as u64,
        MetadataValue::Array(a) => array_len(a),
    }
}

/// Encoded size of an array: element type, count, elements.
fn array_len(a: &MetadataArray) -> u64 {
    let n = a.len() as u64;
    12 + match a {
        MetadataArray::U8(_) | MetadataArray::I8(_) | MetadataArray::Bool(_) => n,
        MetadataArray::U16(_) | MetadataArray::I16(_) => 2 * n,
        MetadataArray::U32(_) | MetadataArray::I32(_) | MetadataArray::F32(_) => 4 * n,
        MetadataArray::U64(_) | MetadataArray::I64(_) | MetadataArray::F64(_) => 8 * n,
        MetadataArray::String(v) => v.iter().map(|s| 8 + s.len() as u64).sum(),
        MetadataArray::Array(v) => v.iter().map(array_len).sum(),
    }
}

fn write_value(out: &mut impl Write, v: &MetadataValue) -> io::Result<()> {
    match v {
        MetadataValue::U8(x) => out.write_all(&x.to_le_bytes()),
        MetadataValue::I8(x) => out.write_all(&x.to_le_bytes()),
        MetadataValue::U16(x) => out.write_all(&x.to_le_bytes()),
        MetadataValue::I16(x) => out.write_all(&x.to_le_bytes()),
        MetadataValue::U32(x) => out.write_all(&x.to_le_bytes()),
        MetadataValue::I32(x) => out.write_all(&x.to_le_bytes()),
        MetadataValue::U64(x) => out.write_all(&x.to_le_bytes()),
        MetadataValue::I64(x) => out.write_all(&x.to_le_bytes()),
        MetadataValue::F32(x) => out.write_all(&x.to_le_bytes()),
        MetadataValue::F64(x) => out.write_all(&x.to_le_bytes()),
        MetadataValue::Bool(b) => out.write_all(&[*b as u8]),
        MetadataValue::String(s) => write_string(out, s),
        MetadataValue::Array(a) => write_array(out, a),
    }
}

fn write_array(out: &mut impl Write, a: &MetadataArray) -> io::Result<()> {
    out.write_all(&array_kind(a).to_le_bytes())?;
    out.write_all(&(a.len() as u64).to_le_bytes())?;
    macro_rules! each_le {
        ($v:expr) => {{
            for x in $v {
                out.write_all(&x.to_le_bytes())?;
            }
            Ok(())
        }};
    }
    match a {
        MetadataArray::U8(v) => out.write_all(v),
        MetadataArray::I8(v) => each_le!(v),
        MetadataArray::U16(v) => each_le!(v),
        MetadataArray::I16(v) => each_le!(v),
        MetadataArray::U32(v) => each_le!(v),
        MetadataArray::I32(v) => each_le!(v),
        MetadataArray::U64(v) => each_le!(v),
        MetadataArray::I64(v) => each_le!(v),
        MetadataArray::F32(v) => each_le!(v),
        MetadataArray::F64(v) => each_le!(v),
        MetadataArray::Bool(v) => {
            for b in v {
                out.write_all(&[*b as u8])?;
            }
            Ok(())
        }
        MetadataArray::String(v) => {
            for s in v {
                write_string(out, s)?;
            }
            Ok(())
        }
        MetadataArray::Array(v) => {
            for inner in v {
                write_array(out, inner)?;
            }
            Ok(())
        }
    }
}
