//! Writing split GGUF files as `llama-gguf-split --split` does: the tensors,
//! in order, cut into runs, one file per run; the first file gets all the
//! metadata, every file the split keys. [`GgufWriter::write_split`] splits a
//! model being written (`shardlab synth --split`); [`split_gguf`] re-splits
//! an existing model, reading its tensors straight from the map.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::model::GgufModel;
use super::reader::DEFAULT_ALIGNMENT;
use super::split::{shard_path, MAX_SPLITS, SPLIT_COUNT, SPLIT_NO, SPLIT_TENSORS_COUNT};
use super::types::MetadataValue;
use super::writer::{data_size, GgufWriteError, GgufWriter, TensorSource};

/// How to cut the tensors into files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitBy {
    /// This many files holding tensors, their bytes as even as whole
    /// tensors allow.
    Files(usize),
    /// At most this many tensors a file (`--split-max-tensors`).
    MaxTensors(usize),
    /// At most this many bytes of tensor data a file (`--split-max-size`);
    /// a tensor larger than that gets a file of its own.
    MaxBytes(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitOptions {
    pub by: SplitBy,
    /// The first file holds the metadata and no tensors
    /// (`--no-tensor-first-split`).
    pub metadata_only_first: bool,
}

impl SplitOptions {
    /// `n` files, tensors balanced by bytes.
    pub fn files(n: usize) -> Self {
        Self {
            by: SplitBy::Files(n),
            metadata_only_first: false,
        }
    }
}

/// `out` without a `.gguf` extension: `m.gguf` splits into
/// `m-00001-of-00003.gguf`, ...
pub fn split_prefix(out: &Path) -> PathBuf {
    if out.extension().is_some_and(|e| e == "gguf") {
        out.with_extension("")
    } else {
        out.to_path_buf()
    }
}

/// The runs of tensor indices each file holds, given each tensor's size.
/// An empty first run when the first file holds metadata only.
pub fn plan_split(sizes: &[u64], opts: &SplitOptions) -> Result<Vec<Range<usize>>, String> {
    let n_tensors = sizes.len();
    // Each tensor's data is padded to the alignment, as in the file.
    let padded: Vec<u64> = sizes
        .iter()
        .map(|s| s.div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT)
        .collect();
    let mut runs = match opts.by {
        SplitBy::Files(0) | SplitBy::MaxTensors(0) | SplitBy::MaxBytes(0) => {
            return Err(format!("{:?} must be at least 1", opts.by));
        }
        SplitBy::Files(n) if n > n_tensors => {
            return Err(format!("cannot make {n} files of {n_tensors} tensors"));
        }
        SplitBy::Files(n) => balanced(&padded, n),
        SplitBy::MaxTensors(m) => (0..n_tensors)
            .step_by(m)
            .map(|s| s..(s + m).min(n_tensors))
            .collect(),
        SplitBy::MaxBytes(max) => {
            let mut runs = Vec::new();
            let (mut start, mut bytes) = (0, 0u64);
            for (i, &p) in padded.iter().enumerate() {
                if i > start && bytes + p > max {
                    runs.push(start..i);
                    (start, bytes) = (i, 0);
                }
                bytes += p;
            }
            if start < n_tensors {
                runs.push(start..n_tensors);
            }
            runs
        }
    };
    if runs.is_empty() {
        return Err("the model has no tensors".into());
    }
    if opts.metadata_only_first {
        runs.insert(0, 0..0);
    }
    if runs.len() > MAX_SPLITS {
        return Err(format!(
            "{} files is more than llama.cpp's {MAX_SPLITS}",
            runs.len()
        ));
    }
    Ok(runs)
}

/// `n` contiguous non-empty runs (`n` <= tensors) whose byte totals come as
/// close to even as whole tensors allow: each tensor goes to the file its
/// middle byte falls in.
fn balanced(padded: &[u64], n: usize) -> Vec<Range<usize>> {
    let t = padded.len();
    let total: u64 = padded.iter().sum();
    let mut file_of = Vec::with_capacity(t);
    let mut before = 0u64;
    for (i, &p) in padded.iter().enumerate() {
        let f = if total == 0 {
            i * n / t
        } else {
            ((before as u128 * 2 + p as u128) * n as u128 / (total as u128 * 2)) as usize
        };
        file_of.push(f.min(n - 1));
        before += p;
    }
    // Where each file starts, then nudged so every file gets a tensor.
    let mut starts = vec![0usize; n + 1];
    starts[n] = t;
    for k in 1..n {
        let first = file_of.iter().position(|&f| f >= k).unwrap_or(t);
        starts[k] = first.max(starts[k - 1] + 1).min(t - (n - k));
    }
    (0..n).map(|k| starts[k]..starts[k + 1]).collect()
}

/// The split keys every file of a split carries.
fn split_metadata(no: usize, count: usize, tensors: usize) -> [(String, MetadataValue); 3] {
    [
        (SPLIT_NO.into(), MetadataValue::U16(no as u16)),
        (SPLIT_COUNT.into(), MetadataValue::U16(count as u16)),
        (
            SPLIT_TENSORS_COUNT.into(),
            MetadataValue::I32(tensors as i32),
        ),
    ]
}

impl GgufWriter {
    /// Writes the model as a split, `{prefix}-00001-of-0000N.gguf` onwards
    /// (see [`split_prefix`]); returns each file's path and size. The first
    /// file holds every metadata key (any `split.*` keys given are replaced),
    /// the others only the split keys. `progress(bytes, total)` counts all
    /// files together.
    pub fn write_split(
        self,
        prefix: &Path,
        opts: &SplitOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Vec<(PathBuf, u64)>, GgufWriteError> {
        let fail = |problem: String| GgufWriteError::Split {
            prefix: prefix.to_path_buf(),
            problem,
        };
        let sizes: Vec<u64> = self
            .tensors
            .iter()
            .map(|t| data_size(&t.dims, t.dtype).unwrap_or(0))
            .collect();
        let runs = plan_split(&sizes, opts).map_err(fail)?;
        if self.tensors.len() > i32::MAX as usize {
            return Err(fail(format!(
                "{} tensors overflow split.tensors.count",
                self.tensors.len()
            )));
        }
        let count = runs.len();
        let total_tensors = self.tensors.len();

        let mut metadata: Vec<(String, MetadataValue)> = self
            .metadata
            .into_iter()
            .filter(|(k, _)| !k.starts_with("split."))
            .collect();
        let mut tensors = self.tensors.into_iter();
        let mut files = Vec::with_capacity(count);
        for (no, run) in runs.iter().enumerate() {
            let mut w = GgufWriter::new();
            if no == 0 {
                w.metadata = std::mem::take(&mut metadata);
            }
            w.metadata.extend(split_metadata(no, count, total_tensors));
            w.tensors = tensors.by_ref().take(run.len()).collect();
            let path = shard_path(prefix, no, count);
            files.push((path, w));
        }

        let mut total = 0;
        for (path, w) in &files {
            total += w.file_size(path)?;
        }
        let mut done = 0;
        let mut written = Vec::with_capacity(count);
        for (path, w) in files {
            let size = w.write_with_progress(&path, &mut |d, _| progress(done + d, total))?;
            done += size;
            written.push((path, size));
        }
        Ok(written)
    }
}

/// Writes `model` (split or not) as a new split at `prefix`, its tensors
/// read from the source's map as they are written. With
/// `SplitOptions::files(1)` this merges a split into one file.
pub fn split_gguf(
    model: &GgufModel,
    prefix: &Path,
    opts: &SplitOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<(PathBuf, u64)>, GgufWriteError> {
    let mut w = GgufWriter::new();
    for (key, value) in model.metadata() {
        w.add_metadata(key, value.clone());
    }
    for shard in model.shards() {
        for info in &shard.tensors {
            let map = shard.map().clone();
            let start = (shard.data_offset + info.offset) as usize;
            let range = start..start + info.size as usize;
            let source = TensorSource::chunks(move |sink| sink(&map[range.clone()]));
            w.add_tensor(&info.name, &info.dims, info.dtype, source);
        }
    }
    w.write_split(prefix, opts, progress)
}
