//! GGUF: llama.cpp's single-file model format. `types` names element types and
//! metadata kinds, `reader` opens files, `writer` produces them (for `synth`
//! and for tests).

pub mod reader;
pub mod types;
pub mod writer;

pub use reader::{GgufError, GgufFile, TensorInfo};
pub use types::{GgmlType, MetadataArray, MetadataValue};

#[cfg(test)]
mod tests;
