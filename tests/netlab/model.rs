//! Greedy generation on a cluster whose nodes may die under it: every step
//! returns the cluster's error instead of panicking. The model helpers are
//! the ones every cluster test shares (`tests/common`).

use shardlab_engine::cluster::coordinator::{Cluster, ClusterError};

use crate::common::argmax;

/// `n` greedy tokens after `prompt`.
pub fn generate(cluster: &mut Cluster, prompt: &[u32], n: usize) -> Result<Vec<u32>, ClusterError> {
    let mut logits = cluster.step(prompt, 0)?;
    let mut out = Vec::new();
    for pos in prompt.len()..prompt.len() + n {
        let next = argmax(&logits);
        out.push(next);
        logits = cluster.step(&[next], pos)?;
    }
    Ok(out)
}
