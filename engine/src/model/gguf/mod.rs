//! GGUF: llama.cpp's model format. `types` names element types and metadata
//! kinds, `reader` opens one file, `writer` produces one (for `synth` and
//! for tests). A model may also be split across several files: `split`
//! names the shards and reads their keys, `model` opens a plain file or a
//! whole split as one [`GgufModel`] (what the rest of the engine uses), and
//! `split_writer` writes splits.

pub mod model;
pub mod reader;
pub mod split;
pub mod split_writer;
pub mod types;
pub mod writer;

pub use model::GgufModel;
pub use reader::{GgufError, GgufFile, TensorInfo};
pub use split::{SplitError, SplitName};
pub use split_writer::{split_gguf, SplitBy, SplitOptions};
pub use types::{GgmlType, MetadataArray, MetadataValue};

#[cfg(test)]
mod split_tests;
#[cfg(test)]
mod tests;
