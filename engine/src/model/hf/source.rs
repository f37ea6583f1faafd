//! [`HfSource`]: the tensors of a Hugging Face directory, memory-mapped and
//! renamed to GGUF names, so [`crate::model::weights::ModelWeights::load`]
//! reads them exactly as it reads a GGUF file. Nothing is copied: each
//! [`Weight`] borrows its file's map at the tensor's byte offset.
//!
//! The one exception is mixture-of-experts weights. HF stores one tensor per
//! expert; GGUF names (`blk.N.ffn_up_exps.weight`) mean all of a layer's
//! experts stacked, experts outermost. Such a tensor is assembled when it is
//! asked for, into one owned buffer, and an expert-layout request
//! ([`SliceRule::ExpertRows`], [`SliceRule::ExpertCols`]) stacks only the
//! experts and rows or columns it names: a process that owns two experts
//! never copies the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde_json::Value;

use super::config::config_from_hf;
use super::error::HfError;
use super::names::{gguf_expert_name_to_hf, hf_expert_name_to_gguf, hf_name_to_gguf, MoeNames};
use super::safetensors::parse_header;
use crate::kernels::{Weight, WeightBytes};
use crate::model::config::ModelConfig;
use crate::model::error::ModelError;
use crate::model::gguf::GgmlType;
use crate::model::weights::{SliceRule, TensorSource};
use crate::shard::slice::{slice_cols, slice_rows};

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
    /// Per-expert tensors keyed by the stacked GGUF name, in expert order
    /// (every expert present, all of one dtype and shape).
    experts: BTreeMap<String, Vec<Located>>,
}

/// What to take of each expert when stacking.
enum Cut {
    Rows(Range<usize>),
    Cols(Range<usize>),
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
            .field("expert_stacks", &self.experts.len())
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
    if let Some(m) = &config.moe {
        for (name, stack) in &source.experts {
            if stack.len() != m.n_experts {
                let first = &stack[0];
                return Err(HfError::tensor(
                    &source.files[first.file].0,
                    &first.hf_name,
                    format!(
                        "{} experts are stored for {name}, but config.json says {}",
                        stack.len(),
                        m.n_experts
                    ),
                ));
            }
        }
    }
    Ok((config, source))
}

impl HfSource {
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, HfError> {
        let dir = dir.as_ref().to_path_buf();
        let (names, index) = weight_files(&dir)?;
        let mut files = Vec::with_capacity(names.len());
        let mut tensors: BTreeMap<String, Located> = BTreeMap::new();
        let mut experts: BTreeMap<String, BTreeMap<usize, Located>> = BTreeMap::new();
        let mut all_hf_names: BTreeMap<String, usize> = BTreeMap::new();
        for (fi, name) in names.iter().enumerate() {
            let path = dir.join(name);
            let map = map_file(&path)?;
            for t in parse_header(&path, &map)? {
                all_hf_names.insert(t.name.clone(), fi);
                let whole = hf_name_to_gguf(&t.name);
                let expert = hf_expert_name_to_gguf(&t.name);
                if whole.is_none() && expert.is_none() {
                    continue;
                }
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
                let prev = match (whole, expert) {
                    (Some(gguf_name), _) => tensors.insert(gguf_name, located),
                    (None, Some((gguf_name, e))) => {
                        experts.entry(gguf_name).or_default().insert(e, located)
                    }
                    (None, None) => None,
                };
                if let Some(prev) = prev {
                    return Err(HfError::tensor(
                        &path,
                        &t.name,
                        format!("also stored in {}", names[prev.file]),
                    ));
                }
            }
            files.push((path, map));
        }
        let experts = experts
            .into_iter()
            .map(|(name, by_index)| {
                let stack = expert_stack(&name, by_index, &files)?;
                Ok((name, stack))
            })
            .collect::<Result<BTreeMap<_, _>, HfError>>()?;
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
            experts,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The safetensors files, in the order they were opened.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }

    /// GGUF names of every tensor the engine can use, stacked expert
    /// tensors included (after the others).
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors
            .keys()
            .chain(self.experts.keys())
            .map(String::as_str)
    }

    pub fn has(&self, gguf_name: &str) -> bool {
        self.tensors.contains_key(gguf_name) || self.experts.contains_key(gguf_name)
    }

    /// The Hugging Face name a GGUF-named tensor was read from; for a
    /// stacked expert tensor, expert 0's.
    pub fn hf_name(&self, gguf_name: &str) -> Option<&str> {
        match self.tensors.get(gguf_name) {
            Some(t) => Some(t.hf_name.as_str()),
            None => self.experts.get(gguf_name).map(|s| s[0].hf_name.as_str()),
        }
    }

    /// How many experts a stacked GGUF tensor is assembled from.
    pub fn expert_count(&self, gguf_name: &str) -> Option<usize> {
        self.experts.get(gguf_name).map(Vec::len)
    }

    fn mapped(&self, t: &Located) -> Weight {
        // `file` indexes `files` by construction.
        let map = &self.files[t.file].1;
        Weight {
            dtype: t.dtype.into(),
            rows: t.rows,
            cols: t.cols,
            data: WeightBytes::Mapped {
                map: map.clone(),
                start: t.start,
                len: t.len,
            },
        }
    }

    /// Experts `experts` of the stacked tensor `name`, each cut by `cut`,
    /// one after another. One expert's rows stay a view of the file; more
    /// are copied into one buffer.
    fn stack(
        &self,
        name: &str,
        stack: &[Located],
        experts: Range<usize>,
        per_expert: usize,
        cut: &Cut,
    ) -> Result<Weight, ModelError> {
        let bad = |problem: String| ModelError::BadTensor {
            source_name: self.source_name(),
            tensor: name.to_string(),
            problem,
        };
        let parts = stack.get(experts.clone()).ok_or_else(|| {
            bad(format!(
                "experts {}..{} asked for, {} stored",
                experts.start,
                experts.end,
                stack.len()
            ))
        })?;
        let first = &stack[0];
        if first.rows != per_expert {
            return Err(bad(format!(
                "each expert ({}) has {} rows, the layout expects {per_expert}",
                first.hf_name, first.rows
            )));
        }
        let mut out = Weight {
            dtype: first.dtype.into(),
            rows: 0,
            cols: match cut {
                Cut::Rows(_) => first.cols,
                Cut::Cols(c) => c.len(),
            },
            data: WeightBytes::owned(Vec::new()),
        };
        let mut bytes = Vec::new();
        for t in parts {
            let w = self.mapped(t);
            let part = match cut {
                Cut::Rows(r) => slice_rows(&w, r.clone()),
                Cut::Cols(c) => slice_cols(&w, c.clone()),
            }
            .map_err(|e| bad(format!("{}: {e}", t.hf_name)))?;
            if parts.len() == 1 {
                return Ok(part);
            }
            if bytes.is_empty() {
                bytes.reserve_exact(part.byte_len() * parts.len());
            }
            bytes.extend_from_slice(&part.data);
            out.rows += part.rows;
        }
        out.data = WeightBytes::owned(bytes);
        Ok(out)
    }
}

/// Checks one stacked tensor's experts: numbered 0 to n-1 without a gap,
/// all of one dtype and shape.
fn expert_stack(
    gguf_name: &str,
    by_index: BTreeMap<usize, Located>,
    files: &[(PathBuf, Arc<Mmap>)],
) -> Result<Vec<Located>, HfError> {
    let path = |t: &Located| files[t.file].0.clone();
    let n = by_index.len();
    let mut stack: Vec<Located> = Vec::with_capacity(n);
    for (i, (e, t)) in by_index.into_iter().enumerate() {
        if e != i {
            // `e > i`: expert `i` is the first one missing.
            let style = if t.hf_name.contains(".block_sparse_moe.") {
                MoeNames::Mixtral
            } else {
                MoeNames::Qwen
            };
            let missing = gguf_expert_name_to_hf(gguf_name, i, style).unwrap_or_default();
            return Err(HfError::tensor(
                path(&t),
                &t.hf_name,
                format!("expert {i} ({missing}) is missing; the experts of a layer must be numbered from 0 without gaps"),
            ));
        }
        if let Some(first) = stack.first() {
            if (t.dtype, t.rows, t.cols) != (first.dtype, first.rows, first.cols) {
                return Err(HfError::tensor(
                    path(&t),
                    &t.hf_name,
                    format!(
                        "{} {}x{}, but {} is {} {}x{}: the experts of a layer must match",
                        t.dtype, t.rows, t.cols, first.hf_name, first.dtype, first.rows, first.cols
                    ),
                ));
            }
        }
        stack.push(t);
    }
    Ok(stack)
}

impl TensorSource for HfSource {
    fn source_name(&self) -> String {
        self.dir.display().to_string()
    }

    /// A whole tensor; a stacked expert tensor is assembled (copied).
    fn tensor(&self, name: &str) -> Result<Option<Weight>, ModelError> {
        if let Some(t) = self.tensors.get(name) {
            return Ok(Some(self.mapped(t)));
        }
        let Some(stack) = self.experts.get(name) else {
            return Ok(None);
        };
        let rows = stack[0].rows;
        self.stack(name, stack, 0..stack.len(), rows, &Cut::Rows(0..rows))
            .map(Some)
    }

    /// Expert-layout cuts of stacked tensors take only the experts, and the
    /// rows or columns of each, that the rule names.
    fn local_tensor(&self, name: &str, rule: &SliceRule) -> Result<Option<Weight>, ModelError> {
        if let Some(stack) = self.experts.get(name) {
            let picked = match rule {
                SliceRule::ExpertRows {
                    experts,
                    per_expert,
                    rows,
                } => Some((experts, per_expert, Cut::Rows(rows.clone()))),
                SliceRule::ExpertCols {
                    experts,
                    per_expert,
                    cols,
                } => Some((experts, per_expert, Cut::Cols(cols.clone()))),
                _ => None,
            };
            if let Some((experts, per_expert, cut)) = picked {
                return self
                    .stack(name, stack, experts.clone(), *per_expert, &cut)
                    .map(Some);
            }
        }
        let Some(w) = self.tensor(name)? else {
            return Ok(None);
        };
        let w = rule.apply(&w).map_err(|e| ModelError::BadTensor {
            source_name: self.source_name(),
            tensor: name.to_string(),
            problem: e.to_string(),
        })?;
        Ok(Some(w))
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
