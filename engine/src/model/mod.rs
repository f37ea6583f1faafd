//! Models: from files on disk to tokens out.
//!
//! `gguf` and `hf` read weights, `config` turns metadata into one
//! arch-neutral [`config::ModelConfig`], `loader` builds a [`transformer::Transformer`],
//! `generate` drives it with a `sampling::Sampler`. `store` resolves aliases
//! like `smollm2` and installs them into the cache.

pub mod chat;
pub mod gguf;
pub mod sampling;
pub mod stop;
pub mod store;
pub mod synth;
pub mod tokenizer;
