//! [`GgufModel`]: a model stored as one GGUF file or split across several
//! (see [`super::split`]), opened as one. Everything that opens a GGUF for a
//! model (the loader, the planner's summary, the coordinator that streams
//! slices, a node slicing its own copy) goes through it, so split files work
//! wherever a single file does.
//!
//! Metadata comes from the first shard, which carries all of it. A tensor is
//! found by name in whichever shard holds it, and its bytes stay in that
//! shard's map: nothing is copied.

use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::reader::{GgufError, GgufFile, TensorInfo};
use super::split::{split_keys, SplitError, SplitName, SPLIT_COUNT, SPLIT_TENSORS_COUNT};
use super::types::{MetadataArray, MetadataValue};

/// One model's GGUF files, the first first, with one table of every tensor.
#[derive(Debug, Clone)]
pub struct GgufModel {
    shards: Vec<GgufFile>,
    /// Tensor name -> (shard, index in that shard's tensor table).
    index: HashMap<String, (usize, usize)>,
}

impl GgufModel {
    /// Opens a GGUF file, and with it the rest of its split if it is one
    /// shard of several. Any shard's path will do: the others (the first
    /// included) are found beside it by name, as llama.cpp names them.
    /// A plain file opens exactly as [`GgufFile::open`] would.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let given = GgufFile::open(path)?;
        let Some((no, count)) = split_keys(&given)? else {
            return Self::from_shards(vec![given]);
        };
        let name = SplitName::parse(path)
            .filter(|n| n.no == no && n.count == count)
            .ok_or_else(|| SplitError::BadName {
                path: path.to_path_buf(),
                no,
                count,
            })?;
        let paths = name.paths();
        let missing: Vec<PathBuf> = paths
            .iter()
            .enumerate()
            .filter(|&(i, p)| {
                i != no && matches!(std::fs::metadata(p), Err(e) if e.kind() == ErrorKind::NotFound)
            })
            .map(|(_, p)| p.clone())
            .collect();
        if !missing.is_empty() {
            return Err(SplitError::MissingShards {
                first: paths[0].clone(),
                count,
                missing,
            }
            .into());
        }
        let mut given = Some(given);
        let shards = paths
            .iter()
            .enumerate()
            .map(|(i, p)| match given.take_if(|_| i == no) {
                Some(file) => Ok(file),
                None => GgufFile::open(p),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_shards(shards)
    }

    /// A model held in one already opened file (a file parsed from memory,
    /// say). A shard of a split is refused: it is not the whole model.
    pub fn from_file(file: GgufFile) -> Result<Self, GgufError> {
        Self::from_shards(vec![file])
    }

    /// Checks that `shards` are one split, in order, and indexes their tensors.
    fn from_shards(shards: Vec<GgufFile>) -> Result<Self, GgufError> {
        let first = &shards[0];
        let (first_no, count) = split_keys(first)?.unwrap_or((0, 1));
        if shards.len() != count {
            return Err(SplitError::Alone {
                path: first.path.clone(),
                no: first_no,
                count,
            }
            .into());
        }
        for (i, shard) in shards.iter().enumerate().filter(|_| count > 1) {
            let (no, found) = match split_keys(shard)? {
                Some(keys) => keys,
                // Not a shard of several: no split.count, or 0 or 1.
                None => match shard.get_u64(SPLIT_COUNT)? {
                    None => {
                        return Err(shard.metadata_error(SPLIT_COUNT, "missing in a split file"))
                    }
                    Some(c) => (0, c as usize),
                },
            };
            if found != count {
                return Err(SplitError::CountMismatch {
                    first: first.path.clone(),
                    count,
                    path: shard.path.clone(),
                    found,
                }
                .into());
            }
            if no != i {
                return Err(SplitError::WrongIndex {
                    path: shard.path.clone(),
                    expected: i,
                    found: no,
                    count,
                }
                .into());
            }
        }

        let mut index: HashMap<String, (usize, usize)> = HashMap::new();
        for (s, shard) in shards.iter().enumerate() {
            for (t, info) in shard.tensors.iter().enumerate() {
                // Within one file the reader has already refused repeats.
                if let Some(&(other, _)) = index.get(&info.name) {
                    return Err(SplitError::DuplicateTensor {
                        tensor: info.name.clone(),
                        first: shards[other].path.clone(),
                        second: shard.path.clone(),
                    }
                    .into());
                }
                index.insert(info.name.clone(), (s, t));
            }
        }
        // A plain file's split keys, if any, are not checked (llama.cpp
        // reads them only for a split of several files).
        let declared = match count {
            1 => None,
            _ => Some(first.require_u64(SPLIT_TENSORS_COUNT)?),
        };
        if let Some(declared) = declared.filter(|&d| d != index.len() as u64) {
            return Err(SplitError::TensorCount {
                first: first.path.clone(),
                count,
                declared,
                found: index.len() as u64,
            }
            .into());
        }
        Ok(Self { shards, index })
    }

    /// The first shard's path: the model's name on disk.
    pub fn path(&self) -> &Path {
        &self.shards[0].path
    }

    /// The files, the first (with the metadata) first.
    pub fn shards(&self) -> &[GgufFile] {
        &self.shards
    }

    pub fn is_split(&self) -> bool {
        self.shards.len() > 1
    }

    /// Bytes on disk, every shard together.
    pub fn file_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.map().len() as u64).sum()
    }

    /// The model's metadata (the first shard's).
    pub fn metadata(&self) -> &BTreeMap<String, MetadataValue> {
        &self.shards[0].metadata
    }

    pub fn tensor_count(&self) -> usize {
        self.index.len()
    }

    /// Every tensor, shard by shard, each in its file's order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo> {
        self.shards.iter().flat_map(|s| s.tensors.iter())
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.locate(name).map(|(_, info)| info)
    }

    /// The tensor and the shard that holds it (whose map its bytes are in).
    pub fn locate(&self, name: &str) -> Option<(&GgufFile, &TensorInfo)> {
        let &(s, t) = self.index.get(name)?;
        let shard = &self.shards[s];
        Some((shard, &shard.tensors[t]))
    }

    /// The raw bytes of a tensor of this model, borrowed from its shard's
    /// map. Panics if `info` names no tensor of this model.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let (shard, own) = self
            .locate(&info.name)
            .unwrap_or_else(|| panic!("tensor '{}' is not in {}", info.name, self.describe()));
        shard.tensor_data(own)
    }

    /// The model's path, with the number of files when it is split.
    pub fn describe(&self) -> String {
        match self.shards.len() {
            1 => self.path().display().to_string(),
            n => format!("{} (+{} more shards)", self.path().display(), n - 1),
        }
    }

    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.shards[0].get(key)
    }

    pub fn require(&self, key: &str) -> Result<&MetadataValue, GgufError> {
        self.shards[0].require(key)
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.shards[0].get_str(key)
    }

    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.shards[0].get_u64(key)
    }

    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.shards[0].get_f64(key)
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.shards[0].get_bool(key)
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&MetadataArray>, GgufError> {
        self.shards[0].get_array(key)
    }

    pub fn require_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.shards[0].require_u64(key)
    }

    pub fn require_str(&self, key: &str) -> Result<&str, GgufError> {
        self.shards[0].require_str(key)
    }

    /// An error about a key, naming the first shard (which holds them all).
    pub fn metadata_error(&self, key: &str, problem: impl Into<String>) -> GgufError {
        self.shards[0].metadata_error(key, problem)
    }

    /// An error about a tensor, naming the shard that holds it.
    pub fn tensor_error(&self, tensor: &str, problem: impl Into<String>) -> GgufError {
        let shard = self.locate(tensor).map_or(&self.shards[0], |(s, _)| s);
        shard.tensor_error(tensor, problem)
    }
}
