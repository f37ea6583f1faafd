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
    #[error("shard cache {path}: {problem}")]
    Corrupt { path: PathBuf, problem: String },
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

    fn open_verified(dir: &Path, tensors: &[TensorMeta]) -> Result<CachedShardData, String> {
        let text = fs::read_to_string(dir.join(INDEX)).map_err(|e| e.to_string())?;
        let index: Index = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if index.tensors != tensors {
            return Err("index does not match the requested tensors".into());
        }
        let file = File::open(dir.join(DATA)).map_err(|e| e.to_string())?;
        // SAFETY: read-only map of a file only this cache writes, and only
        // through a fresh temporary directory renamed into place.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| e.to_string())?;
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
    pub fn tensors(&self) -> &[TensorMeta] {
        &self.index.tensors
    }

    /// Writes bytes `offset..offset+data.len()` of tensor `index`.
    pub fn write(&mut self, index: usize, offset: u64, data: &[u8]) -> Result<(), String> {
        let meta = self.index.tensors.get(index).ok_or_else(|| {
            format!(
                "chunk for tensor #{index}, but the shard has {}",
                self.index.tensors.len()
            )
        })?;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or("chunk offset overflows")?;
        if end > meta.bytes {
            return Err(format!(
                "chunk {offset}..{end} runs past the {} bytes of tensor '{}'",
                meta.bytes, meta.name
            ));
        }
        let at = self.index.offsets[index] + offset;
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.write_all(data))
            .map_err(|e| format!("writing {}: {e}", self.tmp.display()))?;
        self.written[index] += data.len() as u64;
        Ok(())
    }

    /// Checks every tensor arrived whole and hashes right, then moves the
    /// shard into the cache and maps it.
    pub fn finish(self) -> Result<CachedShardData, String> {
        for (meta, &w) in self.index.tensors.iter().zip(&self.written) {
            if w != meta.bytes {
                let _ = fs::remove_dir_all(&self.tmp);
                return Err(format!(
                    "tensor '{}' got {w} of its {} bytes",
                    meta.name, meta.bytes
                ));
            }
        }
        let fail = |tmp: &Path, e: String| {
            let _ = fs::remove_dir_all(tmp);
            e
        };
        self.file
            .sync_all()
            .map_err(|e| fail(&self.tmp, e.to_string()))?;
        let text =
            serde_json::to_string(&self.index).map_err(|e| fail(&self.tmp, e.to_string()))?;
        fs::write(self.tmp.join(INDEX), text).map_err(|e| fail(&self.tmp, e.to_string()))?;
        let file = File::open(self.tmp.join(DATA)).map_err(|e| fail(&self.tmp, e.to_string()))?;
        // SAFETY: read-only map of the file just written by this process.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| fail(&self.tmp, e.to_string()))?;
        let data = CachedShardData {
            dir: self.tmp.clone(),
            map: Arc::new(map),
            tensors: self.index.tensors.clone(),
            offsets: self.index.offsets.clone(),
        };
        data.verify().map_err(|e| fail(&self.tmp, e))?;
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

    fn verify(&self) -> Result<(), String> {
        let expected_len = layout_offsets(&self.tensors).1;
        if (self.map.len() as u64) < expected_len {
            return Err(format!(
                "data file has {} bytes, expected {expected_len}",
                self.map.len()
            ));
        }
        for (i, meta) in self.tensors.iter().enumerate() {
            let digest = hex::encode(Sha256::digest(self.bytes(i)));
            if digest != meta.sha256 {
                return Err(format!(
                    "tensor '{}' hashes to {digest}, expected {}",
                    meta.name, meta.sha256
                ));
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
            dtype,
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
