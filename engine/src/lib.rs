//! shardlab's engine: everything that runs a model, with no terminal or
//! notebook code.
//!
//! - [`model`]: GGUF and Hugging Face loading, config, tokenizer, the
//!   transformer forward pass, KV cache, sampling, chat templates, `synth`.
//! - [`kernels`]: quantized dot products and the threaded matmul.
//! - [`shard`]: slicing rules and plans (tensor, pipeline, hybrid).
//! - [`net`]: wire frames, connections, authentication.
//! - [`parallel`]: all-reduce and stage hand-off over peer connections.
//! - [`cluster`]: the node daemon and the coordinator.
//! - [`discovery`]: nodes advertised and found on the LAN (mDNS).
//! - [`orchestrator`]: the one core every front end drives: nodes, the
//!   open model, plans, loading, generation, and typed reports.
//! - [`metrics`]: memory and bandwidth probes, the one percentile function.
//! - [`platform`]: what the OS is asked beyond std (memory figures, host
//!   name, core pinning), for Linux and macOS.

pub mod calibration;
pub mod cluster;
pub mod discovery;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod net;
pub mod orchestrator;
pub mod parallel;
pub mod platform;
pub mod shard;

// Activations and weights travel as little-endian bytes, reinterpreted in
// place on both ends.
#[cfg(target_endian = "big")]
compile_error!("shardlab supports little-endian targets only");
