//! Hugging Face model directories: `config.json` plus safetensors weights.
//!
//! [`open_hf_dir`] reads one into a [`ModelConfig`](crate::model::config::ModelConfig)
//! and an [`HfSource`] that hands out mapped tensors under GGUF names, so the
//! rest of the engine loads it like a GGUF file. [`gguf_to_hf`] goes the
//! other way, dequantizing a GGUF into F32/F16/BF16 safetensors.
//!
//! - `config`: `config.json` to and from the engine's config.
//! - `safetensors`: the container format, parsed and written by hand.
//! - `names`: HF tensor names to GGUF names and back (per-expert HF tensors
//!   to stacked GGUF expert tensors, Qwen and Mixtral naming).
//! - `source`: the loader ([`HfSource`], [`open_hf_dir`]).
//! - `convert`: the GGUF converter ([`gguf_to_hf`]).

pub mod config;
pub mod convert;
pub mod error;
pub mod names;
pub mod safetensors;
pub mod source;

#[cfg(test)]
mod moe_tests;
#[cfg(test)]
mod tests;

pub use config::config_from_hf;
pub use convert::{gguf_to_hf, ConvertReport, HfDtype};
pub use error::HfError;
pub use source::{open_hf_dir, HfSource};
