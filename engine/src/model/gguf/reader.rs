//! A memory-mapped GGUF reader (versions 2 and 3).
//!
//! Every read is bounds-checked against the file, so a truncated or corrupt
//! file becomes a [`GgufError`] naming the file, the key or tensor, and the
//! byte offset, never a panic or an oversized allocation. Tensor data is not
//! copied: [`GgufFile::tensor_data`] borrows from the map.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapMut};

use super::types::{GgmlType, MetadataArray, MetadataValue};

pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML tensors have at most four dimensions.
pub const MAX_DIMS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a GGUF file (starts with {found:02x?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, found: Vec<u8> },
    #[error("{path}: GGUF version {version} is not supported (this reader takes 2 and 3)")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path}: truncated: {what} needs bytes {offset}..{end} but the file has {len}")]
    Truncated {
        path: PathBuf,
        what: String,
        offset: u64,
        end: u64,
        len: u64,
    },
    #[error("{path}: corrupt {what} at offset {offset}: {problem}")]
    Corrupt {
        path: PathBuf,
        what: String,
        offset: u64,
        problem: String,
    },
    #[error("{path}: metadata key '{key}': {problem}")]
    Metadata {
        path: PathBuf,
        key: String,
        problem: String,
    },
    #[error("{path}: tensor '{tensor}': {problem}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        problem: String,
    },
    /// Shards that do not make one model (`split.rs`).
    #[error(transparent)]
    Split(#[from] super::split::SplitError),
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` is the contiguous (innermost) dimension.
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
    /// Bytes the tensor takes.
    pub size: u64,
}

impl TensorInfo {
    pub fn element_count(&self) -> u64 {
        self.dims.iter().product()
    }

    /// (rows, cols) for a matrix: cols is the contiguous dimension.
    pub fn rows_cols(&self) -> (usize, usize) {
        let cols = self.dims.first().copied().unwrap_or(1) as usize;
        let rows = self.dims.iter().skip(1).product::<u64>() as usize;
        (rows, cols)
    }
}

/// An open GGUF file: parsed header, metadata and tensor table, plus the map.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, MetadataValue>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset of the tensor data section.
    pub data_offset: u64,
    pub alignment: u64,
    map: Arc<Mmap>,
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only. A file changed underneath a running
        // process is outside what any mmap-based loader can defend against;
        // all reads below are bounds-checked against the length seen here.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, Arc::new(map))
    }

    /// Parses a GGUF image held in memory (the fuzzer, tests). `path` only
    /// names it in errors. The bytes are copied into an anonymous map so the
    /// result is the same type, with the same borrowing, as [`Self::open`]'s.
    pub fn from_bytes(path: impl Into<PathBuf>, bytes: &[u8]) -> Result<Self, GgufError> {
        let path = path.into();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let mut map = MmapMut::map_anon(bytes.len()).map_err(io)?;
        map.copy_from_slice(bytes);
        let map = map.make_read_only().map_err(io)?;
        Self::parse(path, Arc::new(map))
    }

    fn parse(path: PathBuf, map: Arc<Mmap>) -> Result<Self, GgufError> {
        let mut cur = Cursor {
            bytes: &map[..],
            pos: 0,
            path: &path,
        };
        let magic = cur.take(4, "magic")?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic {
                path: path.clone(),
                found: magic.to_vec(),
            });
        }
        let version = cur.u32("version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion {
                path: path.clone(),
                version,
            });
        }
        // Each entry takes at least 8 bytes; a count beyond that is corrupt.
        let tensor_count = cur.u64("tensor count")?;
        cur.check_count(tensor_count, 8, "tensor count")?;
        let kv_count = cur.u64("metadata count")?;
        cur.check_count(kv_count, 8, "metadata count")?;

        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key_offset = cur.pos;
            let key = cur.string("metadata key")?;
            let kind = cur.u32(&format!("type of metadata key '{key}'"))?;
            let value = cur.value(kind, &key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(cur.corrupt(
                    &format!("metadata key '{key}'"),
                    key_offset,
                    "key appears twice",
                ));
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => {
                    return Err(GgufError::Metadata {
                        path: path.clone(),
                        key: "general.alignment".into(),
                        problem: format!("{v:?} is not a power of two up to 1 MiB"),
                    })
                }
            },
        };

        let mut tensors = Vec::with_capacity(tensor_count as usize);
        for index in 0..tensor_count {
            let info_offset = cur.pos;
            let name = cur.string(&format!("name of tensor #{index}"))?;
            let n_dims = cur.u32(&format!("dimension count of tensor '{name}'"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(cur.corrupt(
                    &format!("tensor '{name}'"),
                    info_offset,
                    &format!("{n_dims} dimensions (GGML allows 1 to {MAX_DIMS})"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(cur.u64(&format!("dimensions of tensor '{name}'"))?);
            }
            let type_id = cur.u32(&format!("type of tensor '{name}'"))?;
            let offset = cur.u64(&format!("offset of tensor '{name}'"))?;
            let tensor_err = |problem: String| GgufError::Tensor {
                path: path.clone(),
                tensor: name.clone(),
                problem,
            };
            let dtype = GgmlType::from_id(type_id).ok_or_else(|| {
                tensor_err(format!(
                    "element type {type_id} is not supported (supported: {})",
                    GgmlType::ALL.map(|t| t.name()).join(", ")
                ))
            })?;
            let size = tensor_size(&dims, dtype).map_err(tensor_err)?;
            if offset % alignment != 0 {
                return Err(tensor_err(format!(
                    "data offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                dtype,
                offset,
                size,
            });
        }

        let data_offset = cur.pos.div_ceil(alignment) * alignment;
        let file_len = map.len() as u64;
        for t in &tensors {
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.size));
            match (start, end) {
                (Some(_), Some(end)) if end <= file_len => {}
                (start, end) => {
                    return Err(GgufError::Truncated {
                        path: path.clone(),
                        what: format!("data of tensor '{}'", t.name),
                        offset: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        len: file_len,
                    })
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for t in &tensors {
            if !names.insert(t.name.as_str()) {
                return Err(GgufError::Tensor {
                    path: path.clone(),
                    tensor: t.name.clone(),
                    problem: "name appears twice in the tensor table".into(),
                });
            }
        }

        Ok(Self {
            path,
            version,
            metadata,
            tensors,
            data_offset,
            alignment,
            map,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor, borrowed from the map. Bounds were checked
    /// when the file was opened.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_offset + info.offset) as usize;
        &self.map[start..start + info.size as usize]
    }

    /// The map itself, for callers that keep tensor data alive without copying.
    pub fn map(&self) -> &Arc<Mmap> {
        &self.map
    }

    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.get(key)
    }

    fn key_err(&self, key: &str, problem: impl Into<String>) -> GgufError {
        GgufError::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    pub fn require(&self, key: &str) -> Result<&MetadataValue, GgufError> {
        self.get(key).ok_or_else(|| self.key_err(key, "missing"))
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| {
                self.key_err(key, format!("expected a string, found {}", v.kind_name()))
            }),
        }
    }

    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.key_err(key, format!("expected an unsigned integer, found {v:?}"))
            }),
        }
    }

    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                self.key_err(key, format!("expected a number, found {}", v.kind_name()))
            }),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                self.key_err(key, format!("expected a bool, found {}", v.kind_name()))
            }),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&MetadataArray>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_array().map(Some).ok_or_else(|| {
                self.key_err(key, format!("expected an array, found {}", v.kind_name()))
            }),
        }
    }

    pub fn require_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get_u64(key)?
            .ok_or_else(|| self.key_err(key, "missing"))
    }

    pub fn require_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get_str(key)?
            .ok_or_else(|| self.key_err(key, "missing"))
    }

    /// An error about a key, for callers that validate values further.
    pub fn metadata_error(&self, key: &str, problem: impl Into<String>) -> GgufError {
        self.key_err(key, problem)
    }

    /// An error about a tensor, for callers that validate shapes further.
    pub fn tensor_error(&self, tensor: &str, problem: impl Into<String>) -> GgufError {
        GgufError::Tensor {
            path: self.path.clone(),
            tensor: tensor.to_string(),
            problem: problem.into(),
        }
    }
}

fn tensor_size(dims: &[u64], dtype: GgmlType) -> Result<u64, String> {
    let mut count: u64 = 1;
    for &d in dims {
        count = count
            .checked_mul(d)
            .ok_or_else(|| format!("shape {dims:?} overflows"))?;
    }
    let block = dtype.block_len() as u64;
    if !dims[0].is_multiple_of(block) {
        return Err(format!(
            "first dimension {} is not a multiple of the {} block length {}",
            dims[0], dtype, block
        ));
    }
    (count / block)
        .checked_mul(dtype.block_bytes() as u64)
        .ok_or_else(|| format!("shape {dims:?} overflows"))
}

/// Bounds-checked little-endian reads over the mapped bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: u64,
    path: &'a Path,
}

/// Nested arrays deeper than this are treated as corrupt (it bounds recursion).
const MAX_ARRAY_NESTING: u32 = 4;

impl<'a> Cursor<'a> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos as usize..end as usize];
                self.pos = end;
                Ok(s)
            }
            None => Err(GgufError::Truncated {
                path: self.path.to_path_buf(),
                what: what.to_string(),
                offset: self.pos,
                end: self.pos.saturating_add(n),
                len: self.len(),
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn corrupt(&self, what: &str, offset: u64, problem: &str) -> GgufError {
        GgufError::Corrupt {
            path: self.path.to_path_buf(),
            what: what.to_string(),
            offset,
            problem: problem.to_string(),
        }
    }

    /// Rejects a count whose minimal encoding could not fit in what is left.
    fn check_count(&self, count: u64, min_item_bytes: u64, what: &str) -> Result<(), GgufError> {
        let remaining = self.len() - self.pos;
        if count.saturating_mul(min_item_bytes) > remaining {
            return Err(self.corrupt(
                what,
                self.pos.saturating_sub(8),
                &format!("{count} entries cannot fit in the {remaining} bytes left"),
            ));
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let start = self.pos;
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| self.corrupt(what, start, &format!("not UTF-8: {e}")))
    }

    fn value(&mut self, kind: u32, key: &str, depth: u32) -> Result<MetadataValue, GgufError> {
        let what = format!("value of '{key}'");
        Ok(match kind {
            0 => MetadataValue::U8(u8::from_le_bytes(self.array(&what)?)),
            1 => MetadataValue::I8(i8::from_le_bytes(self.array(&what)?)),
            2 => MetadataValue::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => MetadataValue::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => MetadataValue::U32(self.u32(&what)?),
            5 => MetadataValue::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => MetadataValue::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => {
                let offset = self.pos;
                match self.array::<1>(&what)?[0] {
                    0 => MetadataValue::Bool(false),
                    1 => MetadataValue::Bool(true),
                    b => return Err(self.corrupt(&what, offset, &format!("bool byte {b}"))),
                }
            }
            8 => MetadataValue::String(self.string(&what)?),
            9 => MetadataValue::Array(self.array_value(key, depth)?),
            10 => MetadataValue::U64(self.u64(&what)?),
            11 => MetadataValue::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => MetadataValue::F64(f64::from_le_bytes(self.array(&what)?)),
            other => {
                return Err(self.corrupt(
                    &format!("type of '{key}'"),
                    self.pos - 4,
                    &format!("unknown metadata type {other}"),
                ))
            }
        })
    }

    fn array_value(&mut self, key: &str, depth: u32) -> Result<MetadataArray, GgufError> {
        let what = format!("array '{key}'");
        if depth >= MAX_ARRAY_NESTING {
            return Err(self.corrupt(&what, self.pos, "arrays nested too deeply"));
        }
        let elem_kind = self.u32(&what)?;
        let count = self.u64(&what)?;
        let elem_min_bytes = match elem_kind {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8..=12 => 8,
            other => {
                return Err(self.corrupt(
                    &what,
                    self.pos - 12,
                    &format!("unknown element type {other}"),
                ))
            }
        };
        self.check_count(count, elem_min_bytes, &what)?;
        let n = count as usize;
        macro_rules! read_vec {
            ($variant:ident, $t:ty) => {{
                let raw = self.take(count * elem_min_bytes, &what)?;
                MetadataArray::$variant(
                    raw.chunks_exact(std::mem::size_of::<$t>())
                        .map(|c| {
                            let mut b = [0u8; std::mem::size_of::<$t>()];
                            b.copy_from_slice(c);
                            <$t>::from_le_bytes(b)
                        })
                        .collect(),
                )
            }};
        }
        Ok(match elem_kind {
            0 => read_vec!(U8, u8),
            1 => read_vec!(I8, i8),
            2 => read_vec!(U16, u16),
            3 => read_vec!(I16, i16),
            4 => read_vec!(U32, u32),
            5 => read_vec!(I32, i32),
            6 => read_vec!(F32, f32),
            10 => read_vec!(U64, u64),
            11 => read_vec!(I64, i64),
            12 => read_vec!(F64, f64),
            7 => {
                let offset = self.pos;
                let raw = self.take(count, &what)?;
                let mut out = Vec::with_capacity(n);
                for (i, &b) in raw.iter().enumerate() {
                    match b {
                        0 => out.push(false),
                        1 => out.push(true),
                        _ => {
                            return Err(self.corrupt(
                                &what,
                                offset + i as u64,
                                &format!("bool byte {b}"),
                            ))
                        }
                    }
                }
                MetadataArray::Bool(out)
            }
            8 => {
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    out.push(self.string(&format!("element {i} of array '{key}'"))?);
                }
                MetadataArray::String(out)
            }
            9 => {
                let mut out = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    out.push(self.array_value(key, depth + 1)?);
                }
                MetadataArray::Array(out)
            }
            _ => unreachable!("element kinds were validated above"),
        })
    }
}
