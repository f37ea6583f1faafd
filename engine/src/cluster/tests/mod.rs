//! The coordinator and the node protocol in one process: nodes run as
//! threads on loopback, a real [`Cluster`](super::coordinator::Cluster)
//! drives them, and a tiny synthetic model keeps every load and step to
//! milliseconds.
//!
//! - `harness`: the model, nodes, a relay that can cut a link, the reference.
//! - `handshake`: connecting, node info, a wrong token.
//! - `generate`: tensor and pipeline over two nodes equal one process, bit
//!   for bit; a second load is served from the shard cache.
//! - `faults`: a node cut off is named with the phase it failed in.
//! - `protocol`: malformed, unknown and out-of-place messages get typed
//!   error replies, both ways.
//! - `split`: a split GGUF streams like one file, and nodes holding its
//!   shards in `--model-dir` slice them themselves.
//! - `step_metrics`: what each node reports with a step (resident memory).
//! - `load_memory`: the coordinator holds one slice per worker while it
//!   loads, and releases the file's pages as it goes.
//! - `local_file_miss`: a node whose `--model-dir` copy cannot serve its
//!   slices has them streamed and says why.

mod faults;
mod generate;
mod handshake;
pub(crate) mod harness;
mod load_memory;
mod local_file_miss;
mod protocol;
mod replay;
mod split;
mod step_metrics;
