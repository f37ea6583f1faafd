//! shardlab's engine: everything that runs a model, with no terminal or
//! notebook code.
//!
//! - [`model`]: GGUF and Hugging Face loading, config, tokenizer, the
//!   transformer forward pass, KV cache, sampling, chat templates, `synth`.
//! - [`kernels`]: quantized dot products and the threaded matmul.

pub mod kernels;
pub mod model;
pub mod net;
pub mod shard;
