//! Split GGUF files: one model stored as several complete GGUF files
//! ("shards"), the way `llama-gguf-split` writes them and big models ship:
//! `{prefix}-00001-of-00003.gguf`, `{prefix}-00002-of-00003.gguf`, ...
//!
//! The first shard carries all of the model's metadata; every shard carries
//! `split.no` (u16, counted from 0), `split.count` (u16) and
//! `split.tensors.count` (i32, the tensors of all shards together), and its
//! share of the tensors. This file names shards, reads their split keys and
//! says what can be wrong with a set of them; [`super::model::GgufModel`]
//! opens them as one model and [`super::split_writer`] writes them.

use std::path::{Path, PathBuf};

use super::reader::{GgufError, GgufFile};

pub const SPLIT_NO: &str = "split.no";
pub const SPLIT_COUNT: &str = "split.count";
pub const SPLIT_TENSORS_COUNT: &str = "split.tensors.count";
/// `split.count` is a u16 in llama.cpp.
pub const MAX_SPLITS: usize = u16::MAX as usize;

/// A shard's path taken apart: `{prefix}-{no + 1:05}-of-{count:05}.gguf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitName {
    /// The path up to `-00001-of-00003.gguf`, its directory included.
    pub prefix: PathBuf,
    /// Counted from 0, as `split.no` is.
    pub no: usize,
    pub count: usize,
}

impl SplitName {
    /// Reads a shard's name as llama.cpp writes it (five digits or more,
    /// zero-padded to five; `no` from 1 to `count`). Anything else is `None`.
    pub fn parse(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        let stem = name.strip_suffix(".gguf")?;
        let (rest, count_text) = stem.rsplit_once("-of-")?;
        let (prefix, no_text) = rest.rsplit_once('-')?;
        let number = |s: &str| -> Option<usize> {
            let n: usize = s
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| s.parse().ok())??;
            // Only the spelling `llama_split_path` produces.
            (format!("{n:05}") == s).then_some(n)
        };
        let (no, count) = (number(no_text)?, number(count_text)?);
        if prefix.is_empty() || no == 0 || no > count || count > MAX_SPLITS {
            return None;
        }
        Some(Self {
            prefix: path.with_file_name(prefix),
            no: no - 1,
            count,
        })
    }

    /// The path of shard `no` (from 0) of this split.
    pub fn path(&self, no: usize) -> PathBuf {
        shard_path(&self.prefix, no, self.count)
    }

    /// Every shard's path, the first first.
    pub fn paths(&self) -> Vec<PathBuf> {
        (0..self.count).map(|no| self.path(no)).collect()
    }
}

/// `{prefix}-{no + 1:05}-of-{count:05}.gguf` (llama.cpp's `llama_split_path`).
pub fn shard_path(prefix: &Path, no: usize, count: usize) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(format!("-{:05}-of-{count:05}.gguf", no + 1));
    PathBuf::from(name)
}

/// How a folder listing shows the file at `path` of `len` bytes, judged by
/// name alone (nothing is opened): `None` for a later shard whose first
/// shard is beside it (the split is listed once, under its first shard);
/// for a first shard, the bytes of every shard present; else `len`.
pub fn listed_bytes(path: &Path, len: u64) -> Option<u64> {
    let Some(name) = SplitName::parse(path).filter(|n| n.count > 1) else {
        return Some(len);
    };
    if name.no > 0 {
        return (!name.path(0).is_file()).then_some(len);
    }
    Some(
        name.paths()
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum(),
    )
}

/// `(split.no, split.count)` of a file that says it is one shard of
/// several. `None` for a plain file: no `split.count`, or one of 0 (what
/// `--merge` leaves) or 1; as in llama.cpp, split keys matter only when
/// there is more than one file.
pub fn split_keys(file: &GgufFile) -> Result<Option<(usize, usize)>, GgufError> {
    let count = match file.get_u64(SPLIT_COUNT)? {
        None | Some(0 | 1) => return Ok(None),
        Some(c) if c > MAX_SPLITS as u64 => {
            return Err(file.metadata_error(SPLIT_COUNT, format!("{c} is over {MAX_SPLITS}")))
        }
        Some(c) => c as usize,
    };
    let no = file
        .get_u64(SPLIT_NO)?
        .ok_or_else(|| file.metadata_error(SPLIT_NO, "missing in a split file"))?
        as usize;
    if no >= count {
        return Err(
            file.metadata_error(SPLIT_NO, format!("{no} is not below {SPLIT_COUNT} {count}"))
        );
    }
    Ok(Some((no, count)))
}

/// What can be wrong with a set of shards.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error(
        "{path}: this file is shard {} of {count} (so say its split keys), but its name does not \
         end in -{:05}-of-{count:05}.gguf, so the other shards cannot be found: keep the names \
         llama-gguf-split gave them",
        .no + 1,
        .no + 1
    )]
    BadName {
        path: PathBuf,
        no: usize,
        count: usize,
    },
    #[error(
        "{first}: the model is split into {count} files, but {} of them {} missing: {}",
        .missing.len(),
        if .missing.len() == 1 { "is" } else { "are" },
        list(.missing)
    )]
    MissingShards {
        first: PathBuf,
        count: usize,
        missing: Vec<PathBuf>,
    },
    #[error(
        "{path}: belongs to another split: its split.count is {found}, but {first} says {count}"
    )]
    CountMismatch {
        first: PathBuf,
        count: usize,
        path: PathBuf,
        found: usize,
    },
    #[error(
        "{path}: its split.no is {found} (shard {} of its split), but it stands where shard {} of \
         {count} belongs",
        .found + 1,
        .expected + 1
    )]
    WrongIndex {
        path: PathBuf,
        expected: usize,
        found: usize,
        count: usize,
    },
    #[error("{path}: shard {} of {count} on its own; open it from disk so the other shards are found", .no + 1)]
    Alone {
        path: PathBuf,
        no: usize,
        count: usize,
    },
    #[error("tensor '{tensor}' is in two shards: {first} and {second}")]
    DuplicateTensor {
        tensor: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(
        "{first}: split.tensors.count says {declared} tensors, but the {count} shards hold {found}"
    )]
    TensorCount {
        first: PathBuf,
        count: usize,
        declared: u64,
        found: u64,
    },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
