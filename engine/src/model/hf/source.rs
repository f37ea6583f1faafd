//! [`HfSource`]: the tensors of a Hugging Face directory, memory-mapped and
//! renamed to GGUF names, so [`crate::model::weights::ModelWeights::load`]
//! reads them exactly as it reads a GGUF file. Nothing is copied: each
//! [`Weight`] borrows its file's map at the tensor's byte offset.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde_json::Value;

use super::config::config_from_hf;
use super::error::HfError;
use super::names::hf_name_to_gguf;
use super::safetensors::parse_header;
use crate::kernels::{Weight, WeightBytes};
use crate::model::config::ModelConfig;
use crate::model::error::ModelError;
use crate::model::gguf::GgmlType;
use crate::model::weights::TensorSource;

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// One tensor the engine uses, located in one mapped file.
#[derive(Debug, Clone)]
struct Located {
    file: usize,
    hf_name: String,
    dtype: GgmlType,
    rows: usize,
    cols: usize,
    start: usize,
    len: usize,
}

/// The safetensors files of one directory.
pub struct HfSource {
    dir: PathBuf,
    files: Vec<(PathBuf, Arc<Mmap>)>,
    /// Keyed by GGUF name.
    tensors: BTreeMap<String, Located>,
}

impl std::fmt::Debug for HfSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfSource")
            .field("dir", &self.dir)
            .field(
                "files",
                &self.files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Reads `config.json` and maps the weights. A config that does not say
/// `tie_word_embeddings` but ships no `lm_head.weight` is taken as tied,
/// as the GGUF path does when `output.weight` is absent.
pub fn open_hf_dir(dir: impl AsRef<Path>) -> Result<(ModelConfig, HfSource), HfError> {
    let dir = dir.as_ref();
    let mut config = config_from_hf(dir)?;
    let source = HfSource::open(dir)?;
    if !config.tied_embeddings && !source.has("output.weight") {
        config.tied_embeddings = true;
    }
    Ok((config, source))
}

impl HfSource {
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, HfError> {
        let dir = dir.as_ref().to_path_buf();
        let (names, index) = weight_files(&dir)?;
        let mut files = Vec::with_capacity(names.len());
        let mut tensors: BTreeMap<String, Located> = BTreeMap::new();
        let mut all_hf_names: BTreeMap<String, usize> = BTreeMap::new();
        for (fi, name) in names.iter().enumerate() {
            let path = dir.join(name);
            let map = map_file(&path)?;
            for t in parse_header(&path, &map)? {
                all_hf_names.insert(t.name.clone(), fi);
                let Some(gguf_name) = hf_name_to_gguf(&t.name) else {
                    continue;
                };
                let dtype = t.ggml_type().ok_or_else(|| {
                    HfError::tensor(
                        &path,
                        &t.name,
                        format!(
                            "dtype {} is not supported (supported: F32, F16, BF16)",
                            t.dtype
                        ),
                    )
                })?;
                let (rows, cols) = t.rows_cols();
                let located = Located {
                    file: fi,
                    hf_name: t.name.clone(),
                    dtype,
                    rows,
                    cols,
                    start: t.start,
                    len: t.len,
                };
                if let Some(prev) = tensors.insert(gguf_name, located) {
                    return Err(HfError::tensor(
                        &path,
                        &t.name,
                        format!("also stored in {}", names[prev.file]),
                    ));
                }
            }
            files.push((path, map));
        }
        if let Some((index_path, weight_map)) = index {
            for (tensor, file) in weight_map {
                if all_hf_names.get(&tensor).map(|&fi| &names[fi]) != Some(&file) {
                    return Err(HfError::tensor(
                        &index_path,
                        &tensor,
                        format!("listed in {file}, which does not hold it"),
                    ));
                }
            }
        }
        Ok(Self {
            dir,
            files,
            tensors,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The safetensors files, in the order they were opened.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }

    /// GGUF names of every tensor the engine can use.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn has(&self, gguf_name: &str) -> bool {
        self.tensors.contains_key(gguf_name)
    }

    /// The Hugging Face name a GGUF-named tensor was read from.
    pub fn hf_name(&self, gguf_name: &str) -> Option<&str> {
        self.tensors.get(gguf_name).map(|t| t.hf_name.as_str())
    }
}

impl TensorSource for HfSource {
    fn source_name(&self) -> String {
        self.dir.display().to_string()
    }

    fn tensor(&self, name: &str) -> Result<Option<Weight>, ModelError> {
        let Some(t) = self.tensors.get(name) else {
            return Ok(None);
        };
        // `file` indexes `files` by construction.
        let map = &self.files[t.file].1;
        Ok(Some(Weight {
            dtype: t.dtype.into(),
            rows: t.rows,
            cols: t.cols,
            data: WeightBytes::Mapped {
                map: map.clone(),
                start: t.start,
                len: t.len,
            },
        }))
    }
}

fn map_file(path: &Path) -> Result<Arc<Mmap>, HfError> {
    let file = std::fs::File::open(path).map_err(|e| HfError::io(path, "cannot open", e))?;
    // SAFETY: read-only map; as for GGUF files, a file changed underneath a
    // running process is outside what an mmap loader can defend against, and
    // every offset is validated against the length seen here.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| HfError::io(path, "cannot map", e))?;
    Ok(Arc::new(map))
}

type WeightMap = (PathBuf, BTreeMap<String, String>);

/// The safetensors file names to open, and the index's weight map when the
/// checkpoint is sharded.
fn weight_files(dir: &Path) -> Result<(Vec<String>, Option<WeightMap>), HfError> {
    let index_path = dir.join(INDEX_FILE);
    if index_path.is_file() {
        let weight_map = read_index(&index_path)?;
        let names: BTreeSet<String> = weight_map.values().cloned().collect();
        if names.is_empty() {
            return Err(HfError::Json {
                path: index_path,
                problem: "weight_map lists no tensors".into(),
            });
        }
        return Ok((names.into_iter().collect(), Some((index_path, weight_map))));
    }
    if dir.join(SINGLE_FILE).is_file() {
        return Ok((vec![SINGLE_FILE.to_string()], None));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| HfError::io(dir, "cannot list", e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| HfError::io(dir, "cannot list", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".safetensors") && entry.path().is_file() {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(HfError::Dir {
            path: dir.to_path_buf(),
            problem: format!("no {SINGLE_FILE}, {INDEX_FILE} or other .safetensors file"),
        });
    }
    names.sort();
    Ok((names, None))
}

/// `weight_map` of a shard index. File names must be plain names inside the
/// directory: an index cannot point the loader elsewhere on disk.
fn read_index(path: &Path) -> Result<BTreeMap<String, String>, HfError> {
    let text = std::fs::read_to_string(path).map_err(|e| HfError::io(path, "cannot read", e))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| HfError::Json {
        path: path.to_path_buf(),
        problem: format!("not valid JSON: {e}"),
    })?;
    let map = json
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| HfError::key(path, "weight_map", "missing or not an object"))?;
    let mut out = BTreeMap::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| HfError::tensor(path, tensor, format!("file {file} is not a string")))?;
        let plain = !file.is_empty()
            && file != "."
            && file != ".."
            && !file.contains(['/', '\\'])
            && file.ends_with(".safetensors");
        if !plain {
            return Err(HfError::tensor(
                path,
                tensor,
                format!("file '{file}' is not a .safetensors file name in this directory"),
            ));
        }
        out.insert(tensor.clone(), file.to_string());
    }
    Ok(out)
}
