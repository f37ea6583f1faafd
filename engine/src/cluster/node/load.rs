//! The shard-load protocol, node side. A `Load` request is checked against
//! this node's budget and the model's shape; the shard then comes from the
//! cache, from this node's own mapping of the model file (`--model-dir`,
//! nothing written), or as chunks from the coordinator (kept in the cache),
//! and the node answers `Loaded`. A failed load is answered with an error
//! and the conversation stays in step.

use std::time::Instant;

use super::local_file::FileSlices;
use super::shard::Shard;
use super::shard_cache::{CacheError, CachedShardData, ShardCache, ShardWriter};
use super::NodeOptions;
use crate::cluster::messages::{FromNode, LoadRequest, LoadedReport, LocalFileMiss, Phase, ToNode};
use crate::metrics::memory::current_rss_bytes;
use crate::model::error::ModelError;
use crate::model::layout::LocalLayout;
use crate::model::transformer::Transformer;
use crate::model::weights::{ModelWeights, TensorSource};
use crate::net::{Connection, NetError};

/// A chunk of weights, or the reply to a control message.
pub(super) const LOAD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Why a load failed on this node (the connection to the coordinator is fine).
#[derive(Debug, thiserror::Error)]
pub enum ShardLoadError {
    #[error(
        "{node}: the shard needs {needed} MiB (weights {weights} + KV cache {kv}), over this node's budget of {budget} MiB"
    )]
    OverBudget {
        node: String,
        needed: Mib,
        weights: Mib,
        kv: Mib,
        budget: Mib,
    },
    #[error("{0}")]
    BadConfig(String),
    #[error("layout {0:?} does not fit the model")]
    LayoutDoesNotFit(LocalLayout),
    #[error("context {0} is out of range")]
    ContextOutOfRange(usize),
    #[error("chunk of tensor #{index} announced {announced} bytes, carried {carried}")]
    ChunkLength {
        index: u32,
        announced: u64,
        carried: u64,
    },
    #[error("weights sent without a load request")]
    NoLoadRequest,
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Weights(#[from] ModelError),
}

/// Bytes, shown in MiB with one decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mib(pub u64);

impl std::fmt::Display for Mib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1}", self.0 as f64 / 1048576.0)
    }
}

/// Handles a load request through to a loaded shard (or an error reply).
/// Returns `Ok(None)` when the load failed but the connection is fine.
pub(super) fn load(
    conn: &mut Connection,
    opts: &NodeOptions,
    cache: &ShardCache,
    req: LoadRequest,
) -> Result<Option<Shard>, NetError> {
    let started = Instant::now();
    if let Err(e) = check_request(opts, &req) {
        conn.send_control(&failure(e))?;
        return Ok(None);
    }
    let Fetched {
        shard,
        received,
        local_file_miss,
    } = match fetch(conn, opts, cache, &req)? {
        Ok(fetched) => fetched,
        Err(e) => {
            conn.send_control(&failure(e))?;
            return Ok(None);
        }
    };
    let weights = match ModelWeights::load(&req.config, &req.layout, shard.tensors()) {
        Ok(w) => w,
        Err(e) => {
            conn.send_control(&failure(e.into()))?;
            return Ok(None);
        }
    };
    let model = Transformer::new(
        req.config.clone(),
        req.layout.clone(),
        weights,
        req.context,
        req.kv,
    );
    let report = LoadedReport {
        weight_bytes: shard.weight_bytes(),
        received_bytes: received,
        from_cache: matches!(shard, ShardData::Cached(_)) && received == 0,
        from_local_file: matches!(shard, ShardData::LocalFile(_)),
        seconds: started.elapsed().as_secs_f64(),
        rss: current_rss_bytes().unwrap_or(0),
        local_file_miss,
    };
    conn.send_control(&FromNode::Loaded(report))?;
    Ok(Some(Shard::new(model)))
}

/// The reply for a failed load.
pub(super) fn failure(e: ShardLoadError) -> FromNode {
    FromNode::error(Phase::Load, e)
}

/// The node checks its own budget (a coordinator cannot make it swap) and
/// that the request describes a model it can build.
fn check_request(opts: &NodeOptions, req: &LoadRequest) -> Result<(), ShardLoadError> {
    let weights: u64 = req.tensors.iter().map(|t| t.bytes).sum();
    let row = req.layout.kv_heads(&req.config).len() * req.config.head_dim;
    let kv = (req.kv.row_bytes(row) * 2 * req.layout.layers.len() * req.context) as u64;
    let budget = super::info::budget(opts);
    if weights + kv > budget {
        return Err(ShardLoadError::OverBudget {
            node: opts.name.clone(),
            needed: Mib(weights + kv),
            weights: Mib(weights),
            kv: Mib(kv),
            budget: Mib(budget),
        });
    }
    req.config.validate().map_err(ShardLoadError::BadConfig)?;
    req.kv
        .check_head_dim(req.config.head_dim)
        .map_err(ShardLoadError::BadConfig)?;
    let (c, l) = (&req.config, &req.layout);
    if l.layers.end > c.n_layers
        || l.q_heads.end > c.n_heads
        || l.ffn.end > c.ffn
        || l.vocab.end > c.vocab
    {
        return Err(ShardLoadError::LayoutDoesNotFit(l.clone()));
    }
    if req.context == 0 || req.context > 1 << 22 {
        return Err(ShardLoadError::ContextOutOfRange(req.context));
    }
    Ok(())
}

/// Where a node's slices came from.
enum ShardData {
    /// The shard cache: received now or by an earlier load.
    Cached(CachedShardData),
    /// Cut from this node's own mapping of the model file.
    LocalFile(FileSlices),
}

impl ShardData {
    fn tensors(&self) -> &dyn TensorSource {
        match self {
            ShardData::Cached(c) => c,
            ShardData::LocalFile(f) => f,
        }
    }

    fn weight_bytes(&self) -> u64 {
        match self {
            ShardData::Cached(c) => c.weight_bytes(),
            ShardData::LocalFile(f) => f.weight_bytes(),
        }
    }
}

/// A node's slices and how they came.
struct Fetched {
    shard: ShardData,
    received: u64,
    /// Why its `--model-dir` copy of the file was not used, if it has one.
    local_file_miss: Option<LocalFileMiss>,
}

/// The shard's tensors, from wherever they are: the cache first, then the
/// node's own copy of the file, then the coordinator.
/// The outer error ends the session, the inner one only this load.
fn fetch(
    conn: &mut Connection,
    opts: &NodeOptions,
    cache: &ShardCache,
    req: &LoadRequest,
) -> Result<Result<Fetched, ShardLoadError>, NetError> {
    let local_file = || match (&opts.model_dir, &req.model_file) {
        (Some(dir), Some(file)) => Some(FileSlices::cut(dir, file, req)),
        _ => None,
    };
    let (have, local_file_miss) = match cache.open(&req.shard_key, &req.tensors) {
        Ok(Some(shard)) => (Some(ShardData::Cached(shard)), None),
        _ => match local_file() {
            Some(Ok(slices)) => (Some(ShardData::LocalFile(slices)), None),
            Some(Err(miss)) => {
                eprintln!("{}: {miss}; receiving the slices instead", opts.name);
                (None, Some(miss))
            }
            None => (None, None),
        },
    };
    if let Some(shard) = have {
        conn.send_control(&FromNode::NeedTensors {
            missing: Vec::new(),
            cached: true,
        })?;
        wait_finish(conn)?;
        return Ok(Ok(Fetched {
            shard,
            received: 0,
            local_file_miss,
        }));
    }
    let writer = match cache.begin(&req.shard_key, &req.model_name, &req.tensors) {
        Ok(w) => w,
        Err(e) => return Ok(Err(e.into())),
    };
    conn.send_control(&FromNode::NeedTensors {
        missing: (0..req.tensors.len() as u32).collect(),
        cached: false,
    })?;
    Ok(
        receive_chunks(conn, writer)?.map(|(shard, received)| Fetched {
            shard: ShardData::Cached(shard),
            received,
            local_file_miss,
        }),
    )
}

/// A message that does not belong at this point of the load.
fn unexpected(conn: &Connection, expected: &str, got: &ToNode) -> NetError {
    NetError::UnexpectedFrame {
        peer: conn.peer().to_string(),
        expected: expected.to_string(),
        got: format!("{got:?}").chars().take(80).collect(),
    }
}

/// After `NeedTensors` with nothing missing, the coordinator still sends
/// `LoadFinish`.
fn wait_finish(conn: &mut Connection) -> Result<(), NetError> {
    match conn.recv_control::<ToNode>(LOAD_DEADLINE)? {
        ToNode::LoadFinish => Ok(()),
        other => Err(unexpected(conn, "LoadFinish", &other)),
    }
}

/// Receives chunks until `LoadFinish`. A bad chunk is remembered and the
/// rest drained, so the conversation stays in step.
fn receive_chunks(
    conn: &mut Connection,
    mut writer: ShardWriter,
) -> Result<Result<(CachedShardData, u64), ShardLoadError>, NetError> {
    let mut buf = Vec::new();
    let mut received = 0u64;
    let mut failure: Option<ShardLoadError> = None;
    loop {
        match conn.recv_control::<ToNode>(LOAD_DEADLINE)? {
            ToNode::TensorChunk { index, offset, len } => {
                conn.recv_tensor_into(LOAD_DEADLINE, &mut buf)?;
                if failure.is_some() {
                    continue;
                }
                if buf.len() as u64 != len {
                    failure = Some(ShardLoadError::ChunkLength {
                        index,
                        announced: len,
                        carried: buf.len() as u64,
                    });
                } else if let Err(e) = writer.write(index as usize, offset, &buf) {
                    failure = Some(e.into());
                }
                received += len;
            }
            ToNode::LoadFinish => {
                return Ok(match failure {
                    Some(f) => Err(f),
                    None => writer
                        .finish()
                        .map(|s| (s, received))
                        .map_err(ShardLoadError::from),
                })
            }
            other => return Err(unexpected(conn, "weight chunks", &other)),
        }
    }
}
