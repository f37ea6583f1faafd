//! A node's on-disk cache of received shards, keyed by content hash, so a
//! second load of the same slice sends nothing. A shard is one file of
//! tensors plus an index; it is assembled in a temporary directory and
//! renamed into place, and every tensor's SHA-256 is checked when it is
//! used, so a corrupted cache is detected and fetched again.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster::messages::{CachedShard, TensorMeta};
use crate::kernels::{Weight, WeightBytes};
use crate::model::error::ModelError;
use crate::model::gguf::GgmlType;
use crate::model::weights::{SliceRule, TensorSource};

const ALIGN: u64 = 64;
const INDEX: &str = "index.json";
const DATA: &str = "tensors.bin";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("shard cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("shard cache {path}: {source}")]
    BadIndex {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("index does not match the requested tensors")]
    IndexMismatch,
    #[error("chunk for tensor #{index}, but the shard has {count}")]
    NoSuchTensor { index: usize, count: usize },
    #[error("chunk offset overflows")]
    OffsetOverflow,
    #[error("chunk {start}..{end} runs past the {bytes} bytes of tensor '{tensor}'")]
    PastTheEnd {
        start: u64,
        end: u64,
        bytes: u64,
        tensor: String,
    },
    #[error("writing {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tensor '{tensor}' got {got} of its {bytes} bytes")]
    Incomplete {
        tensor: String,
        got: u64,
        bytes: u64,
    },
    #[error("data file has {len} bytes, expected {expected}")]
    ShortData { len: u64, expected: u64 },
    #[error("tensor '{tensor}' hashes to {digest}, expected {expected}")]
    HashMismatch {
        tensor: String,
        digest: String,
        expected: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Index {
    model: String,
    tensors: Vec<TensorMeta>,
    offsets: Vec<u64>,
}

fn layout_offsets(tensors: &[TensorMeta]) -> (Vec<u64>, u64) {
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut at = 0u64;
    for t in tensors {
        offsets.push(at);
        at = (at + t.bytes).div_ceil(ALIGN) * ALIGN;
    }
    (offsets, at)
}

pub struct ShardCache {
    root: PathBuf,
}

impl ShardCache {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
        move |source| CacheError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn dir(&self, key: &str) -> PathBuf {
        self.root.join("shards").join(key)
    }

    /// Shards present on disk (not verified).
    pub fn list(&self) -> Vec<CachedShard> {
        let Ok(entries) = fs::read_dir(self.root.join("shards")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let key = e.file_name().to_string_lossy().to_string();
            if key.starts_with('.') {
                continue;
            }
            let Ok(text) = fs::read_to_string(e.path().join(INDEX)) else {
                continue;
            };
            let Ok(index) = serde_json::from_str::<Index>(&text) else {
                continue;
            };
            out.push(CachedShard {
                key,
                model: index.model,
                bytes: index.tensors.iter().map(|t| t.bytes).sum(),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Opens a cached shard whose tensors match `tensors` exactly, checking
    /// every hash. A shard that fails the check is deleted and `None` returned.
    pub fn open(
        &self,
        key: &str,
        tensors: &[TensorMeta],
    ) -> Result<Option<CachedShardData>, CacheError> {
        let dir = self.dir(key);
        if !dir.join(INDEX).exists() {
            return Ok(None);
        }
        match Self::open_verified(&dir, tensors) {
            Ok(shard) => Ok(Some(shard)),
            Err(problem) => {
                // Corrupt or stale: drop it so it is fetched again.
                let _ = fs::remove_dir_all(&dir);
                eprintln!(
                    "shard cache: {} was corrupt ({problem}); fetching it again",
                    dir.display()
                );
                Ok(None)
            }
        }
    }

    fn open_verified(dir: &Path, tensors: &[TensorMeta]) -> Result<CachedShardData, CacheError> {
        let index_path = dir.join(INDEX);
        let text = fs::read_to_string(&index_path).map_err(Self::io(&index_path))?;
        let index: Index = serde_json::from_str(&text).map_err(|source| CacheError::BadIndex {
            path: index_path.clone(),
            source,
        })?;
        if index.tensors != tensors {
            return Err(CacheError::IndexMismatch);
        }
        let data_path = dir.join(DATA);
        let file = File::open(&data_path).map_err(Self::io(&data_path))?;
        // SAFETY: read-only map of a file only this cache writes, and only
        // through a fresh temporary directory renamed into place.
        let map = unsafe { Mmap::map(&file) }.map_err(Self::io(&data_path))?;
        let data = CachedShardData {
            dir: dir.to_path_buf(),
            map: Arc::new(map),
            tensors: index.tensors,
            offsets: index.offsets,
        };
        data.verify()?;
        Ok(data)
    }

    /// Starts assembling a shard in a temporary directory.
    pub fn begin(
        &self,
        key: &str,
        model: &str,
        tensors: &[TensorMeta],
    ) -> Result<ShardWriter, CacheError> {
        let shards = self.root.join("shards");
        fs::create_dir_all(&shards).map_err(Self::io(&shards))?;
        let tmp = shards.join(format!(
            ".tmp-{key}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir_all(&tmp).map_err(Self::io(&tmp))?;
        let (offsets, total) = layout_offsets(tensors);
        let data_path = tmp.join(DATA);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&data_path)
            .map_err(Self::io(&data_path))?;
        file.set_len(total).map_err(Self::io(&data_path))?;
        let index = Index {
            model: model.to_string(),
            tensors: tensors.to_vec(),
            offsets,
        };
        Ok(ShardWriter {
            tmp,
            file,
            index,
            final_dir: self.dir(key),
            written: vec![0; tensors.len()],
        })
    }
}

impl Drop for ShardWriter {
    /// An unfinished shard leaves nothing behind. (After `finish` the
    /// temporary directory is gone already: renamed or removed.)
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

/// A shard being assembled from chunks.
pub struct ShardWriter {
    tmp: PathBuf,
    file: File,
    index: Index,
    final_dir: PathBuf,
    written: Vec<u64>,
}

impl ShardWriter {
    fn io(path: &Path, source: std::io::Error) -> CacheError {
        CacheError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn tensors(&self) -> &[TensorMeta] {
        &self.index.tensors
    }

    /// Writes bytes `offset..offset+data.len()` of tensor `index`.
    pub fn write(&mut self, index: usize, offset: u64, data: &[u8]) -> Result<(), CacheError> {
        let meta = self
            .index
            .tensors
            .get(index)
            .ok_or(CacheError::NoSuchTensor {
                index,
                count: self.index.tensors.len(),
            })?;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(CacheError::OffsetOverflow)?;
        if end > meta.bytes {
            return Err(CacheError::PastTheEnd {
                start: offset,
                end,
                bytes: meta.bytes,
                tensor: meta.name.clone(),
            });
        }
        let at = self.index.offsets[index] + offset;
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.write_all(data))
            .map_err(|source| CacheError::Write {
                path: self.tmp.clone(),
                source,
            })?;
        self.written[index] += data.len() as u64;
        Ok(())
    }

    /// Checks every tensor arrived whole and hashes right, then moves the
    /// shard into the cache and maps it.
    pub fn finish(self) -> Result<CachedShardData, CacheError> {
        for (meta, &got) in self.index.tensors.iter().zip(&self.written) {
            if got != meta.bytes {
                let _ = fs::remove_dir_all(&self.tmp);
                return Err(CacheError::Incomplete {
                    tensor: meta.name.clone(),
                    got,
                    bytes: meta.bytes,
                });
            }
        }
        // Whatever fails from here, the temporary directory goes.
        let fail = |e: CacheError| {
            let _ = fs::remove_dir_all(&self.tmp);
            e
        };
        let (index_path, data_path) = (self.tmp.join(INDEX), self.tmp.join(DATA));
        self.file
            .sync_all()
            .map_err(|e| fail(Self::io(&data_path, e)))?;
        let text = serde_json::to_string(&self.index).map_err(|source| {
            fail(CacheError::BadIndex {
                path: index_path.clone(),
                source,
            })
        })?;
        fs::write(&index_path, text).map_err(|e| fail(Self::io(&index_path, e)))?;
        let file = File::open(&data_path).map_err(|e| fail(Self::io(&data_path, e)))?;
        // SAFETY: read-only map of the file just written by this process.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| fail(Self::io(&data_path, e)))?;
        let data = CachedShardData {
            dir: self.tmp.clone(),
            map: Arc::new(map),
            tensors: self.index.tensors.clone(),
            offsets: self.index.offsets.clone(),
        };
        data.verify().map_err(fail)?;
        if fs::rename(&self.tmp, &self.final_dir).is_err() {
            // Another load of the same shard got there first; ours is
            // identical (same hashes) and stays valid through the map.
            let _ = fs::remove_dir_all(&self.tmp);
        }
        Ok(data)
    }
}

/// A mapped shard: the tensors one node holds.
#[derive(Clone)]
pub struct CachedShardData {
    dir: PathBuf,
    map: Arc<Mmap>,
    tensors: Vec<TensorMeta>,
    offsets: Vec<u64>,
}

impl CachedShardData {
    fn bytes(&self, i: usize) -> &[u8] {
        let start = self.offsets[i] as usize;
        &self.map[start..start + self.tensors[i].bytes as usize]
    }

    fn verify(&self) -> Result<(), CacheError> {
        let expected = layout_offsets(&self.tensors).1;
        if (self.map.len() as u64) < expected {
            return Err(CacheError::ShortData {
                len: self.map.len() as u64,
                expected,
            });
        }
        for (i, meta) in self.tensors.iter().enumerate() {
            let digest = hex::encode(Sha256::digest(self.bytes(i)));
            if digest != meta.sha256 {
                return Err(CacheError::HashMismatch {
                    tensor: meta.name.clone(),
                    digest,
                    expected: meta.sha256.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn weight_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.bytes).sum()
    }

    fn by_name(&self) -> HashMap<&str, usize> {
        self.tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect()
    }
}

impl TensorSource for CachedShardData {
    fn source_name(&self) -> String {
        format!("shard {}", self.dir.display())
    }

    fn tensor(&self, name: &str) -> Result<Option<Weight>, ModelError> {
        let Some(&i) = self.by_name().get(name) else {
            return Ok(None);
        };
        let meta = &self.tensors[i];
        let dtype = GgmlType::from_id(meta.dtype).ok_or_else(|| ModelError::BadTensor {
            source_name: self.source_name(),
            tensor: name.to_string(),
            problem: format!("unknown type id {}", meta.dtype),
        })?;
        Ok(Some(Weight {
            dtype: dtype.into(),
            rows: meta.rows as usize,
            cols: meta.cols as usize,
            data: WeightBytes::Mapped {
                map: self.map.clone(),
                start: self.offsets[i] as usize,
                len: meta.bytes as usize,
            },
        }))
    }

    /// The shard already holds this node's slices.
    fn local_tensor(&self, name: &str, _rule: &SliceRule) -> Result<Option<Weight>, ModelError> {
        self.tensor(name)
    }
}

/// Hex SHA-256 of a tensor slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
