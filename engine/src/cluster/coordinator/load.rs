//! Loading a plan: the coordinator cuts and hashes each node's slices,
//! streams each node only the ones it lacks (quantized bytes, never
//! dequantized), cut again as they are sent, then tells the nodes whom to
//! exchange activations with.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{Cluster, ClusterError, LoadedModel, CONTROL_DEADLINE};
use crate::cluster::messages::{
    FromNode, LoadRequest, LocalModel, PeerAddr, PeerPlan, Phase, TensorMeta, TensorTag, ToNode,
};
use crate::kernels::Weight;
use crate::model::config::ModelConfig;
use crate::model::weights::{tensor_plan, TensorNeed, TensorSource};
use crate::net::{TensorDtype, TensorHeader};
use crate::shard::plan::Plan;

/// Weights travel in chunks of at most this many bytes.
const CHUNK: usize = 8 << 20;

/// The slowest rate a node is allowed to cut and hash its shard from its
/// own copy of the model file (`--model-dir`), or to check its cached one,
/// before it answers the load request: a slow disk shared with other nodes.
/// A dead node is still named by its heartbeat within seconds; this bounds
/// a live one.
const SLOWEST_SLICING_BYTES_PER_SECOND: u64 = 16 << 20;

#[derive(Debug, Clone)]
pub enum LoadProgress {
    /// Bytes sent so far to a node, of its total (0 when cached).
    Sending {
        node: String,
        sent: u64,
        total: u64,
        seconds: f64,
    },
    Loaded {
        node: String,
        report: crate::cluster::messages::LoadedReport,
    },
}

#[derive(Debug, Clone)]
pub struct LoadSummary {
    pub nodes: Vec<(String, crate::cluster::messages::LoadedReport)>,
    pub bytes_sent: u64,
    pub seconds: f64,
}

/// Where the weights come from.
pub struct ModelToLoad<'a> {
    pub name: String,
    pub config: &'a ModelConfig,
    /// Shared by the threads that cut and hash each tensor.
    pub source: &'a (dyn TensorSource + Sync),
    /// The file's name and size, for nodes that hold a copy (`--model-dir`).
    pub file: Option<LocalModel>,
}

/// What one node is sent: the request announcing its slices (each with its
/// hash), and how to cut each again when the node asks for it. The slices
/// themselves are not kept: a node's are cut one tensor at a time as they
/// are sent, so the coordinator holds about one tensor per node, not every
/// node's whole shard (on the 8b over tensor 2, 1.3 GiB of column copies
/// before this; on a 70b over 4 nodes, a third of 40 GB).
struct Shard {
    request: LoadRequest,
    /// `request.tensors[i]` is cut by `needs[i]`.
    needs: Vec<TensorNeed>,
}

fn build_shard(
    model: &ModelToLoad,
    plan: &Plan,
    node: usize,
    session: &str,
) -> Result<Shard, ClusterError> {
    let np = &plan.nodes[node];
    // Hashing is most of the work (gigabytes for a large model): one tensor
    // per thread, each dropped once hashed.
    let cut: Vec<Result<Option<(TensorMeta, TensorNeed)>, ClusterError>> =
        tensor_plan(model.config, &np.layout)
            .into_par_iter()
            .map(|need| {
                let w = model
                    .source
                    .local_tensor(&need.name, &need.rule)
                    .map_err(|e| ClusterError::new(&np.name, Phase::Load, e))?;
                let Some(w) = w else {
                    if need.optional {
                        return Ok(None);
                    }
                    return Err(ClusterError::new(
                        &np.name,
                        Phase::Load,
                        format!("the model has no tensor '{}'", need.name),
                    ));
                };
                let meta = TensorMeta::of(&need.name, &w);
                drop(w);
                model.source.release(&need.name);
                Ok(Some((meta, need)))
            })
            .collect();
    let (tensors, needs): (Vec<TensorMeta>, Vec<TensorNeed>) = cut
        .into_iter()
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let mut key = Sha256::new();
    key.update(serde_json::to_vec(model.config).unwrap_or_default());
    key.update(serde_json::to_vec(&np.layout).unwrap_or_default());
    for t in &tensors {
        key.update(t.name.as_bytes());
        key.update(t.sha256.as_bytes());
    }
    Ok(Shard {
        request: LoadRequest {
            session: session.to_string(),
            model_name: model.name.clone(),
            model_file: model.file.clone(),
            config: model.config.clone(),
            layout: np.layout.clone(),
            context: plan.context,
            kv: plan.kv,
            tensors,
            shard_key: hex::encode(key.finalize()),
        },
        needs,
    })
}

impl Cluster {
    /// Loads `plan` (made over [`Cluster::budgets`], same order) onto the
    /// live nodes. Refuses before sending anything if the plan is stale.
    pub fn load(
        &mut self,
        model: &ModelToLoad,
        plan: &Plan,
        progress: &(dyn Fn(LoadProgress) + Sync),
    ) -> Result<LoadSummary, ClusterError> {
        self.unload();
        let started = Instant::now();
        let session = hex::encode(rand::random::<[u8; 16]>());
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_alive())
            .collect();
        if live.len() != plan.nodes.len() {
            return Err(ClusterError::cluster(
                Phase::Load,
                format!(
                    "the plan is for {} nodes, {} are connected",
                    plan.nodes.len(),
                    live.len()
                ),
            ));
        }
        let shards: Vec<Shard> = (0..plan.nodes.len())
            .map(|i| build_shard(model, plan, i, &session))
            .collect::<Result<_, _>>()?;

        // Stream to every node at once, one thread each.
        let mut results: Vec<Result<(crate::cluster::messages::LoadedReport, u64), ClusterError>> =
            Vec::new();
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            let mut nodes: Vec<&mut super::NodeHandle> =
                self.nodes.iter_mut().filter(|n| n.is_alive()).collect();
            for (node, shard) in nodes.drain(..).zip(&shards) {
                handles.push(scope.spawn(move || send_shard(node, model, shard, progress)));
            }
            for h in handles {
                results.push(h.join().unwrap_or_else(|_| {
                    Err(ClusterError::cluster(
                        Phase::Load,
                        "a loader thread panicked",
                    ))
                }));
            }
        });
        let mut summary = LoadSummary {
            nodes: Vec::new(),
            bytes_sent: 0,
            seconds: 0.0,
        };
        for (i, r) in results.into_iter().enumerate() {
            let (report, sent) = r?;
            summary.bytes_sent += sent;
            summary.nodes.push((self.nodes[live[i]].label(), report));
        }
        self.connect_peers(plan, &session, &live)?;
        summary.seconds = started.elapsed().as_secs_f64();
        self.loaded = Some(LoadedModel {
            plan: plan.clone(),
            config: model.config.clone(),
            model_name: model.name.clone(),
            context: plan.context,
            session,
            wire: self.wire,
        });
        self.broken = None;
        self.in_flight.clear();
        for s in self.last_step.iter_mut() {
            *s = None;
        }
        Ok(summary)
    }

    fn connect_peers(
        &mut self,
        plan: &Plan,
        session: &str,
        live: &[usize],
    ) -> Result<(), ClusterError> {
        let addr_of = |plan_index: usize| {
            let n = &self.nodes[live[plan_index]];
            PeerAddr {
                index: plan_index,
                name: n.name.clone(),
                addr: n.addr.clone(),
            }
        };
        let mut peer_plans = Vec::new();
        for (i, np) in plan.nodes.iter().enumerate() {
            let stage = &plan.stages[np.stage];
            let neighbour = |s: Option<usize>| {
                s.and_then(|s| plan.stages.get(s))
                    .and_then(|st| st.get(np.rank))
                    .map(|&j| addr_of(j))
            };
            peer_plans.push(PeerPlan {
                session: session.to_string(),
                me: i,
                group: stage.iter().map(|&j| addr_of(j)).collect(),
                prev: neighbour(np.stage.checked_sub(1)),
                next: neighbour(Some(np.stage + 1)),
                wire: self.wire,
                liveness: self.liveness,
                security: self.security,
            });
        }
        // Send every plan first: the nodes connect to each other meanwhile.
        for (i, p) in peer_plans.into_iter().enumerate() {
            let node = &mut self.nodes[live[i]];
            let label = node.label();
            node.conn(Phase::Peers)?
                .send_control(&ToNode::ConnectPeers(p))
                .map_err(|e| ClusterError::new(&label, Phase::Peers, e))?;
        }
        for &i in live {
            let node = &mut self.nodes[i];
            let label = node.label();
            let reply = node
                .conn(Phase::Peers)?
                .recv_control::<FromNode>(CONTROL_DEADLINE + CONTROL_DEADLINE)
                .map_err(|e| ClusterError::new(&label, Phase::Peers, e))?;
            match reply {
                FromNode::PeersReady => {}
                FromNode::Error { message, .. } => {
                    return Err(ClusterError::new(&label, Phase::Peers, message))
                }
                other => {
                    return Err(ClusterError::new(
                        &label,
                        Phase::Peers,
                        format!("unexpected reply {other:?}"),
                    ))
                }
            }
        }
        Ok(())
    }
}

fn send_shard(
    node: &mut super::NodeHandle,
    model: &ModelToLoad,
    shard: &Shard,
    progress: &(dyn Fn(LoadProgress) + Sync),
) -> Result<(crate::cluster::messages::LoadedReport, u64), ClusterError> {
    let label = node.label();
    let err = |e: &dyn std::fmt::Display| ClusterError::new(&label, Phase::Load, e);
    let started = Instant::now();
    let shard_bytes: u64 = shard.request.tensors.iter().map(|t| t.bytes).sum();
    let slicing = Duration::from_secs(shard_bytes / SLOWEST_SLICING_BYTES_PER_SECOND);
    let reply = node.request(
        &ToNode::Load(Box::new(shard.request.clone())),
        Phase::Load,
        CONTROL_DEADLINE * 6 + slicing,
    )?;
    let FromNode::NeedTensors { missing, .. } = reply else {
        return Err(err(&format!("unexpected reply {reply:?}")));
    };
    let total: u64 = missing
        .iter()
        .filter_map(|&i| shard.request.tensors.get(i as usize))
        .map(|t| t.bytes)
        .sum();
    let mut sent = 0u64;
    let result = (|| -> Result<(), ClusterError> {
        let conn = node.conn(Phase::Load)?;
        for &i in &missing {
            let w = cut_again(model, shard, i).map_err(|e| err(&e))?;
            let bytes: &[u8] = &w.data;
            for (c, chunk) in bytes.chunks(CHUNK).enumerate() {
                conn.send_control(&ToNode::TensorChunk {
                    index: i,
                    offset: (c * CHUNK) as u64,
                    len: chunk.len() as u64,
                })
                .map_err(|e| err(&e))?;
                let header = TensorHeader::new(
                    TensorDtype::Bytes,
                    &[chunk.len() as u64],
                    TensorTag::Weights.code(),
                )
                .map_err(|e| err(&e))?;
                conn.send_tensor(&header, chunk).map_err(|e| err(&e))?;
                sent += chunk.len() as u64;
                progress(LoadProgress::Sending {
                    node: label.clone(),
                    sent,
                    total,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
            drop(w);
            model.source.release(&shard.needs[i as usize].name);
        }
        Ok(())
    })();
    if let Err(e) = result {
        node.mark_failed(&e.message);
        return Err(e);
    }
    if total == 0 {
        progress(LoadProgress::Sending {
            node: label.clone(),
            sent: 0,
            total: 0,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    // Verifying hashes of a large shard takes a while on the node.
    match node.request(&ToNode::LoadFinish, Phase::Load, CONTROL_DEADLINE * 30)? {
        FromNode::Loaded(report) => {
            progress(LoadProgress::Loaded {
                node: label.clone(),
                report: report.clone(),
            });
            Ok((report, sent))
        }
        other => Err(err(&format!("unexpected reply {other:?}"))),
    }
}

/// Tensor `i` of `shard`, cut from the model again to be sent. The node
/// checks its hash against the announced one when the load finishes; the
/// size is checked here, since the chunks' offsets follow from it.
fn cut_again(model: &ModelToLoad, shard: &Shard, i: u32) -> Result<Weight, String> {
    let count = shard.needs.len();
    let (Some(need), Some(meta)) = (
        shard.needs.get(i as usize),
        shard.request.tensors.get(i as usize),
    ) else {
        return Err(format!("asked for tensor #{i}, the shard has {count}"));
    };
    let w = model
        .source
        .local_tensor(&need.name, &need.rule)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("tensor '{}' is gone from the model", need.name))?;
    if w.data.len() as u64 != meta.bytes {
        return Err(format!(
            "tensor '{}' is {} bytes now, {} when the load was announced: the model file changed",
            need.name,
            w.data.len(),
            meta.bytes
        ));
    }
    Ok(w)
}
