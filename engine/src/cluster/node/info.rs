//! What a node says about itself: in the handshake welcome and in answer
//! to `Info` (name, version, memory and budget, cached shards, local model
//! files, emulated link).

use super::shard_cache::ShardCache;
use super::NodeOptions;
use crate::cluster::messages::{LocalModel, NodeInfo};
use crate::model::gguf::split::listed_bytes;

pub(crate) fn node_info(opts: &NodeOptions) -> NodeInfo {
    let (total, free) = crate::metrics::memory::system_memory_bytes().unwrap_or((0, 0));
    NodeInfo {
        name: opts.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: crate::net::PROTOCOL_VERSION,
        hostname: hostname(),
        listen: opts.listen.to_string(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads: opts.threads,
        mem_total: total,
        mem_free: free,
        budget: opts.mem_limit.unwrap_or(free),
        cached_shards: ShardCache::new(opts.cache_dir.clone()).list(),
        local_models: local_models(opts),
        link: opts.link.clone(),
    }
}

/// The memory this node lets a shard use: `--mem-limit`, or free memory.
pub(super) fn budget(opts: &NodeOptions) -> u64 {
    node_info(opts).budget
}

fn hostname() -> String {
    crate::platform::hostname().unwrap_or_else(|| "unknown".into())
}

fn local_models(opts: &NodeOptions) -> Vec<LocalModel> {
    let Some(dir) = &opts.model_dir else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "gguf"))
        .filter_map(|e| {
            // A split model is one entry: its first shard, all shards' bytes.
            let bytes = listed_bytes(&e.path(), e.metadata().ok()?.len())?;
            Some(LocalModel {
                file_name: e.file_name().to_string_lossy().to_string(),
                bytes,
            })
        })
        .collect()
}
