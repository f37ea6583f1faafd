//! `--model-dir`: a node that holds the coordinator's model file cuts its
//! slices from its own mapping of that file. Nothing is streamed and nothing
//! is written: a slice of whole rows is a view into the mapping (pages the
//! page cache shares with every other process mapping the file), a slice of
//! columns is a copy in memory. So four local nodes and a one-process run
//! need the file's disk space once, not once more for the nodes' slices.
//!
//! Every slice must match what the coordinator announced (type, shape, size
//! and SHA-256); any difference, or a file that is missing or of another
//! size, means "receive the slices instead", and the node says why in its
//! load report (`LocalFileMiss`), so a user who expected nothing streamed
//! learns what to fix.

use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;

use crate::cluster::messages::{LoadRequest, LocalFileMiss, LocalModel, TensorMeta};
use crate::kernels::{Weight, WeightBytes};
use crate::model::error::ModelError;
use crate::model::gguf::GgufModel;
use crate::model::weights::{tensor_plan, GgufSource, SliceRule, TensorSource};

/// This node's slices, cut from its own copy of the model file.
pub(super) struct FileSlices {
    file: String,
    tensors: HashMap<String, Weight>,
    bytes: u64,
}

impl FileSlices {
    /// The slices `req` asks for, cut from `dir`'s copy of `file`, or why
    /// that copy cannot serve them (the node then receives them instead).
    pub(super) fn cut(
        dir: &Path,
        file: &LocalModel,
        req: &LoadRequest,
    ) -> Result<Self, LocalFileMiss> {
        let (dir_name, file_name) = (dir.display().to_string(), file.file_name.clone());
        let path = dir.join(&file.file_name);
        if !path.exists() {
            return Err(LocalFileMiss::Missing {
                dir: dir_name,
                file: file_name,
            });
        }
        let gguf = GgufModel::open(&path).map_err(|e| LocalFileMiss::Unreadable {
            dir: dir_name.clone(),
            file: file_name.clone(),
            error: e.to_string(),
        })?;
        if gguf.file_bytes() != file.bytes {
            return Err(LocalFileMiss::OtherSize {
                dir: dir_name,
                file: file_name,
                have: gguf.file_bytes(),
                want: file.bytes,
            });
        }
        let source = GgufSource { file: &gguf };
        let plan = tensor_plan(&req.config, &req.layout);
        let differs = |tensor: &str| LocalFileMiss::OtherContent {
            dir: dir_name.clone(),
            file: file_name.clone(),
            tensor: tensor.to_string(),
        };
        // Hashing is most of the work (gigabytes for a large model): one
        // tensor per worker thread.
        let cut: Vec<(String, Weight)> = req
            .tensors
            .par_iter()
            .map(|meta| {
                let w = plan
                    .iter()
                    .find(|n| n.name == meta.name)
                    .and_then(|need| source.local_tensor(&need.name, &need.rule).ok()?)
                    .ok_or_else(|| differs(&meta.name))?;
                // A copied slice (some columns of every row) read pages from
                // all of the tensor: drop them from this process's resident
                // memory, which should hold its slices and not the rest of
                // the file (they stay in the page cache, shared). Before
                // this, each of four 70b nodes had 26 GB resident for 10 GB
                // of slices.
                if !matches!(w.data, WeightBytes::Mapped { .. }) {
                    source.release(&meta.name);
                }
                // The slice the coordinator cut: same type, shape, bytes and hash.
                if TensorMeta::of(&meta.name, &w) != *meta {
                    return Err(differs(&meta.name));
                }
                Ok((meta.name.clone(), w))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            file: gguf.describe(),
            tensors: cut.into_iter().collect(),
            bytes: req.tensors.iter().map(|t| t.bytes).sum(),
        })
    }

    pub(super) fn weight_bytes(&self) -> u64 {
        self.bytes
    }
}

impl TensorSource for FileSlices {
    fn source_name(&self) -> String {
        format!("slices of {}", self.file)
    }

    fn tensor(&self, name: &str) -> Result<Option<Weight>, ModelError> {
        Ok(self.tensors.get(name).cloned())
    }

    /// The slices are already this node's.
    fn local_tensor(&self, name: &str, _rule: &SliceRule) -> Result<Option<Weight>, ModelError> {
        self.tensor(name)
    }
}
