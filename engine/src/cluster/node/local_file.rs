//! `--model-dir`: a node that holds the coordinator's model file cuts its
//! slices from its own mapping of that file. Nothing is streamed and nothing
//! is written: a slice of whole rows is a view into the mapping (pages the
//! page cache shares with every other process mapping the file), a slice of
//! columns is a copy in memory. So four local nodes and a one-process run
//! need the file's disk space once, not once more for the nodes' slices.
//!
//! Every slice must match what the coordinator announced (type, shape, size
//! and SHA-256); any difference, or a file that is missing or of another
//! size, means "receive the slices instead".

use std::collections::HashMap;

use rayon::prelude::*;

use super::NodeOptions;
use crate::cluster::messages::{LoadRequest, TensorMeta};
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
    /// The slices `req` asks for, from `--model-dir`, or `None` when the
    /// node has no matching file or any slice differs from the announced one.
    pub(super) fn cut(opts: &NodeOptions, req: &LoadRequest) -> Option<Self> {
        let (dir, file) = (opts.model_dir.as_ref()?, req.model_file.as_ref()?);
        let gguf = GgufModel::open(dir.join(&file.file_name)).ok()?;
        if gguf.file_bytes() != file.bytes {
            return None;
        }
        let source = GgufSource { file: &gguf };
        let plan = tensor_plan(&req.config, &req.layout);
        // Hashing is most of the work (gigabytes for a large model): one
        // tensor per worker thread.
        let cut: Option<Vec<(String, Weight)>> = req
            .tensors
            .par_iter()
            .map(|meta| {
                let need = plan.iter().find(|n| n.name == meta.name)?;
                let w = source.local_tensor(&need.name, &need.rule).ok()??;
                // A copied slice (some columns of every row) read pages from
                // all of the tensor: drop them from this process's resident
                // memory, which should hold its slices and not the rest of
                // the file (they stay in the page cache, shared). Before
                // this, each of four 70b nodes had 26 GB resident for 10 GB
                // of slices.
                if !matches!(w.data, WeightBytes::Mapped { .. }) {
                    source.release(&need.name);
                }
                // The slice the coordinator cut: same type, shape, bytes and hash.
                (TensorMeta::of(&meta.name, &w) == *meta).then(|| (meta.name.clone(), w))
            })
            .collect();
        Some(Self {
            file: gguf.describe(),
            tensors: cut?.into_iter().collect(),
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
