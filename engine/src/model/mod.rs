//! Models: from files on disk to tokens out.
//!
//! `gguf` and `hf` read weights, `config` turns metadata into one
//! arch-neutral [`config::ModelConfig`], `loader` builds a [`transformer::Transformer`],
//! `generate` drives it with a `sampling::Sampler`. `store` resolves aliases
//! like `smollm2` and installs them into the cache.

pub mod attention;
pub mod chat;
pub mod config;
pub mod error;
pub mod generate;
pub mod generate_many;
pub mod gguf;
pub mod hf;
pub mod kv_cache;
pub mod kv_type;
pub mod layout;
pub mod loader;
pub mod local_sequences;
pub mod moe;
pub mod ops;
pub mod sampling;
pub mod segments;
pub mod sequence;
pub mod stop;
pub mod store;
pub mod synth;
pub mod tokenizer;
pub mod transformer;
pub mod weights;

#[cfg(test)]
mod cross_machine_tests;
