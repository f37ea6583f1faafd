//! Serving one coordinator: load a shard, connect to peers, run steps.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::shard_cache::{sha256_hex, CachedShardData, ShardCache, ShardWriter};
use super::{peer_client_name, Busy, NodeOptions, PeerArrival};
use crate::cluster::messages::{
    FromNode, LoadRequest, LoadedReport, NodeMetrics, PeerAddr, PeerPlan, Span, SpanKind,
    StepMetrics, ToNode,
};
use crate::metrics::memory::current_rss_bytes;
use crate::model::gguf::GgufFile;
use crate::model::kv_cache::KvCache;
use crate::model::transformer::{AllReduce, NoReduce, Transformer};
use crate::model::weights::{tensor_plan, GgufSource, ModelWeights, TensorSource};
use crate::net::{auth, Connection, NetError};
use crate::parallel::PeerLinks;

/// An idle coordinator may think for a long time (a person at a shell).
const IDLE_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);
/// A chunk of weights, or the reply to a control message.
const LOAD_DEADLINE: Duration = Duration::from_secs(120);
/// The largest link probe a node sends back.
const MAX_PROBE_BYTES: u64 = 64 << 20;
/// Peers must connect within this time after `ConnectPeers`.
const PEER_DEADLINE: Duration = Duration::from_secs(10);

/// Sequences one node keeps KV caches for at once (`--parallel`).
const MAX_SEQUENCES: u32 = 64;

struct Loaded {
    model: Transformer,
    links: Option<PeerLinks>,
    metrics: NodeMetrics,
    hidden: Vec<f32>,
    /// The sequence whose KV cache is in `model`.
    current_seq: u32,
    /// The other sequences' caches, parked while another one runs.
    parked: Vec<(u32, KvCache)>,
}

impl Loaded {
    /// Puts sequence `seq`'s KV cache into the model (a fresh one the first time).
    fn select(&mut self, seq: u32) -> Result<(), String> {
        if seq == self.current_seq {
            return Ok(());
        }
        if seq >= MAX_SEQUENCES {
            return Err(format!(
                "sequence id {seq} is out of range (at most {MAX_SEQUENCES} sequences)"
            ));
        }
        let mut cache = match self.parked.iter().position(|(s, _)| *s == seq) {
            Some(i) => self.parked.swap_remove(i).1,
            None => self.model.new_cache(),
        };
        self.model.swap_cache(&mut cache);
        self.parked.push((self.current_seq, cache));
        self.current_seq = seq;
        Ok(())
    }
}

pub(super) fn serve(
    mut conn: Connection,
    opts: &NodeOptions,
    busy: &Arc<Mutex<Busy>>,
    peers: Receiver<PeerArrival>,
) -> Result<(), NetError> {
    let cache = ShardCache::new(opts.cache_dir.clone());
    let mut state: Option<Loaded> = None;
    // The link every send emulates: `--link` until the coordinator says otherwise.
    let mut link = opts.link.clone();
    conn.emulate(link.as_ref())?;
    loop {
        let msg: ToNode = match conn.recv_control(IDLE_DEADLINE) {
            Ok(m) => m,
            Err(NetError::Closed { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        match msg {
            ToNode::Info => {
                let mut info = super::node_info(opts);
                info.link = link.clone();
                conn.send_control(&FromNode::Info(info))?;
            }
            ToNode::EmulateLinks { link: wanted } => {
                link = wanted;
                let peers = match state.as_mut().and_then(|l| l.links.as_mut()) {
                    Some(links) => links.emulate(link.as_ref()),
                    None => Ok(()),
                };
                conn.emulate(link.as_ref())?;
                let reply = match peers {
                    Ok(()) => FromNode::Ok,
                    Err(e) => error("links", format!("emulating on peer links: {e}")),
                };
                conn.send_control(&reply)?;
            }
            ToNode::Ping => conn.send_control(&FromNode::Pong)?,
            ToNode::Absorb { bytes } => {
                let mut sink = Vec::new();
                conn.recv_tensor_into(LOAD_DEADLINE, &mut sink)?;
                let reply = if sink.len() as u64 == bytes {
                    FromNode::Ok
                } else {
                    error(
                        "link probe",
                        format!("announced {bytes} bytes, got {}", sink.len()),
                    )
                };
                conn.send_control(&reply)?;
            }
            ToNode::Emit { bytes } => {
                if bytes > MAX_PROBE_BYTES {
                    conn.send_control(&error(
                        "link probe",
                        format!("{bytes} bytes is over the {MAX_PROBE_BYTES}-byte probe limit"),
                    ))?;
                } else {
                    conn.send_control(&FromNode::Ok)?;
                    let payload = vec![0u8; bytes as usize];
                    let header =
                        crate::net::TensorHeader::new(crate::net::TensorDtype::Bytes, &[bytes], 0)
                            .map_err(|e| NetError::Encode {
                                peer: conn.peer().to_string(),
                                what: "link probe",
                                problem: e.to_string(),
                            })?;
                    conn.send_tensor(&header, &payload)?;
                }
            }
            ToNode::Bye => return Ok(()),
            ToNode::Unload => {
                state = None;
                if let Ok(mut b) = busy.lock() {
                    b.session = None;
                }
                conn.send_control(&FromNode::Ok)?;
            }
            ToNode::Load(req) => {
                // Free the old shard before the new one arrives.
                drop(state.take());
                // Peers of this session may dial in as soon as the
                // coordinator hears "Loaded", so accept them from now on.
                if let Ok(mut b) = busy.lock() {
                    b.session = Some(req.session.clone());
                }
                state = load(&mut conn, opts, &cache, *req)?;
            }
            ToNode::ConnectPeers(plan) => {
                let reply = match state.as_mut() {
                    None => error("peers", "no shard is loaded"),
                    Some(l) => match connect_peers(opts, &plan, &peers, opts.step_deadline)
                        .and_then(|mut links| {
                            links
                                .emulate(link.as_ref())
                                .map(|()| links)
                                .map_err(|e| format!("emulating on peer links: {e}"))
                        }) {
                        Ok(links) => {
                            l.links = Some(links);
                            FromNode::PeersReady
                        }
                        Err(e) => error("peers", e),
                    },
                };
                conn.send_control(&reply)?;
            }
            ToNode::Step { pos, tokens, seq } => match state.as_mut() {
                None => conn.send_control(&error("step", "no shard is loaded"))?,
                Some(l) => step(&mut conn, l, pos as usize, &tokens, seq)?,
            },
            ToNode::Truncate { pos, seq } => {
                let reply = match state.as_mut().map(|l| l.select(seq).map(|()| l)) {
                    Some(Ok(l)) => {
                        l.model.truncate(pos as usize);
                        FromNode::Ok
                    }
                    Some(Err(e)) => error("control", e),
                    None => FromNode::Ok,
                };
                conn.send_control(&reply)?;
            }
            ToNode::Metrics => {
                let reply = match state.as_ref() {
                    Some(l) => FromNode::Metrics(snapshot(l, opts)),
                    None => FromNode::Metrics(NodeMetrics {
                        rss: current_rss_bytes().unwrap_or(0),
                        budget: super::node_info(opts).budget,
                        ..NodeMetrics::default()
                    }),
                };
                conn.send_control(&reply)?;
            }
            ToNode::ResetMetrics => {
                if let Some(l) = state.as_mut() {
                    l.metrics = NodeMetrics::default();
                    if let Some(links) = l.links.as_mut() {
                        links.stats = Default::default();
                    }
                }
                conn.send_control(&FromNode::Ok)?;
            }
            ToNode::TensorChunk { .. } | ToNode::LoadFinish => {
                conn.send_control(&error("load", "weights sent without a load request"))?;
            }
        }
    }
}

fn error(phase: &str, message: impl std::fmt::Display) -> FromNode {
    FromNode::Error {
        phase: phase.to_string(),
        message: message.to_string(),
    }
}

fn snapshot(l: &Loaded, opts: &NodeOptions) -> NodeMetrics {
    let mut m = l.metrics.clone();
    m.rss = current_rss_bytes().unwrap_or(0);
    m.weight_bytes = l.model.weights().byte_len() as u64;
    m.kv_bytes = (l.model.cache().used_bytes()
        + l.parked.iter().map(|(_, c)| c.used_bytes()).sum::<usize>()) as u64;
    m.budget = super::node_info(opts).budget;
    if let Some(links) = &l.links {
        m.traffic = links.stats.traffic.clone();
        m.allreduce_seconds = links.stats.allreduce_seconds.clone();
        m.hop_seconds = links.stats.hop_seconds.clone();
    }
    m
}

/// Handles a load request through to `Loaded` (or an error reply).
/// Returns `Ok(None)` when the load failed but the connection is fine.
fn load(
    conn: &mut Connection,
    opts: &NodeOptions,
    cache: &ShardCache,
    req: LoadRequest,
) -> Result<Option<Loaded>, NetError> {
    let started = Instant::now();
    // The node checks its own budget: a coordinator cannot make it swap.
    let weights: u64 = req.tensors.iter().map(|t| t.bytes).sum();
    let kv = (req.layout.kv_heads(&req.config).len()
        * req.config.head_dim
        * 2
        * req.layout.layers.len()
        * req.context
        * 4) as u64;
    let budget = super::node_info(opts).budget;
    if weights + kv > budget {
        conn.send_control(&error(
            "load",
            format!(
                "{}: the shard needs {:.1} MiB (weights {:.1} + KV cache {:.1}), over this node's budget of {:.1} MiB",
                opts.name,
                mib(weights + kv),
                mib(weights),
                mib(kv),
                mib(budget)
            ),
        ))?;
        return Ok(None);
    }
    if let Err(problem) = check_request(&req) {
        conn.send_control(&error("load", problem))?;
        return Ok(None);
    }

    let mut from_local_file = false;
    let mut received = 0u64;
    let cached = cache.open(&req.shard_key, &req.tensors).unwrap_or(None);
    let shard = match cached {
        Some(shard) => {
            conn.send_control(&FromNode::NeedTensors {
                missing: Vec::new(),
                cached: true,
            })?;
            wait_finish(conn)?;
            Some(shard)
        }
        None => match local_slices(opts, cache, &req) {
            Some(shard) => {
                from_local_file = true;
                conn.send_control(&FromNode::NeedTensors {
                    missing: Vec::new(),
                    cached: true,
                })?;
                wait_finish(conn)?;
                Some(shard)
            }
            None => {
                let writer = match cache.begin(&req.shard_key, &req.model_name, &req.tensors) {
                    Ok(w) => w,
                    Err(e) => {
                        conn.send_control(&error("load", e))?;
                        return Ok(None);
                    }
                };
                {
                    let missing = (0..req.tensors.len() as u32).collect();
                    conn.send_control(&FromNode::NeedTensors {
                        missing,
                        cached: false,
                    })?;
                    match receive_chunks(conn, writer)? {
                        Ok((shard, bytes)) => {
                            received = bytes;
                            Some(shard)
                        }
                        Err(problem) => {
                            conn.send_control(&error("load", problem))?;
                            None
                        }
                    }
                }
            }
        },
    };
    let Some(shard) = shard else {
        return Ok(None);
    };
    let weights = match ModelWeights::load(&req.config, &req.layout, &shard) {
        Ok(w) => w,
        Err(e) => {
            conn.send_control(&error("load", e))?;
            return Ok(None);
        }
    };
    let model = Transformer::new(req.config.clone(), req.layout.clone(), weights, req.context);
    let report = LoadedReport {
        weight_bytes: shard.weight_bytes(),
        received_bytes: received,
        from_cache: received == 0 && !from_local_file,
        from_local_file,
        seconds: started.elapsed().as_secs_f64(),
        rss: current_rss_bytes().unwrap_or(0),
    };
    conn.send_control(&FromNode::Loaded(report))?;
    Ok(Some(Loaded {
        model,
        links: None,
        metrics: NodeMetrics::default(),
        hidden: Vec::new(),
        current_seq: 0,
        parked: Vec::new(),
    }))
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

fn check_request(req: &LoadRequest) -> Result<(), String> {
    req.config.validate()?;
    let c = &req.config;
    let l = &req.layout;
    if l.layers.end > c.n_layers
        || l.q_heads.end > c.n_heads
        || l.ffn.end > c.ffn
        || l.vocab.end > c.vocab
    {
        return Err(format!("layout {l:?} does not fit the model"));
    }
    if req.context == 0 || req.context > 1 << 22 {
        return Err(format!("context {} is out of range", req.context));
    }
    Ok(())
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

/// With `--model-dir` holding the same file, cut the slices locally.
/// Any mismatch (missing file, other size, other hashes) means "receive
/// them instead".
fn local_slices(
    opts: &NodeOptions,
    cache: &ShardCache,
    req: &LoadRequest,
) -> Option<CachedShardData> {
    let (dir, file) = (opts.model_dir.as_ref()?, req.model_file.as_ref()?);
    let path = dir.join(&file.file_name);
    if std::fs::metadata(&path).ok()?.len() != file.bytes {
        return None;
    }
    let gguf = GgufFile::open(&path).ok()?;
    let source = GgufSource { file: &gguf };
    let plan = tensor_plan(&req.config, &req.layout);
    let mut writer = cache
        .begin(&req.shard_key, &req.model_name, &req.tensors)
        .ok()?;
    for (i, meta) in req.tensors.iter().enumerate() {
        let need = plan.iter().find(|n| n.name == meta.name)?;
        let w = source.local_tensor(&need.name, &need.rule).ok()??;
        if sha256_hex(&w.data) != meta.sha256 {
            return None;
        }
        writer.write(i, 0, &w.data).ok()?;
    }
    writer.finish().ok()
}

/// Receives chunks until `LoadFinish`. A bad chunk is remembered and the
/// rest drained, so the conversation stays in step.
fn receive_chunks(
    conn: &mut Connection,
    mut writer: ShardWriter,
) -> Result<Result<(CachedShardData, u64), String>, NetError> {
    let mut buf = Vec::new();
    let mut received = 0u64;
    let mut failure: Option<String> = None;
    loop {
        match conn.recv_control::<ToNode>(LOAD_DEADLINE)? {
            ToNode::TensorChunk { index, offset, len } => {
                conn.recv_tensor_into(LOAD_DEADLINE, &mut buf)?;
                if failure.is_some() {
                    continue;
                }
                if buf.len() as u64 != len {
                    failure = Some(format!(
                        "chunk of tensor #{index} announced {len} bytes, carried {}",
                        buf.len()
                    ));
                } else if let Err(problem) = writer.write(index as usize, offset, &buf) {
                    failure = Some(problem);
                }
                received += len;
            }
            ToNode::LoadFinish => {
                return Ok(match failure {
                    Some(f) => Err(f),
                    None => writer.finish().map(|s| (s, received)),
                })
            }
            other => return Err(unexpected(conn, "weight chunks", &other)),
        }
    }
}

fn connect_peers(
    opts: &NodeOptions,
    plan: &PeerPlan,
    arrivals: &Receiver<PeerArrival>,
    step_deadline: Duration,
) -> Result<PeerLinks, String> {
    let me = plan.me;
    let dial = |p: &PeerAddr| -> Result<(String, Connection), String> {
        let mut conn =
            Connection::connect(&p.addr, &format!("{} ({})", p.name, p.addr), PEER_DEADLINE)
                .map_err(|e| e.to_string())?;
        auth::client_handshake(
            &mut conn,
            opts.token.as_bytes(),
            &peer_client_name(&plan.session, me),
            PEER_DEADLINE,
        )
        .map_err(|e| e.to_string())?;
        Ok((p.name.clone(), conn))
    };
    // Lower cluster index dials higher? No: each node dials the peers with a
    // smaller index and accepts the ones with a larger index.
    let mut expected: Vec<&PeerAddr> = Vec::new();
    let mut group: Vec<Option<(String, Connection)>> = Vec::with_capacity(plan.group.len());
    let mut my_rank = 0;
    for (rank, p) in plan.group.iter().enumerate() {
        if p.index == me {
            my_rank = rank;
            group.push(None);
        } else if p.index < me {
            group.push(Some(dial(p)?));
        } else {
            expected.push(p);
            group.push(None);
        }
    }
    let mut prev = match &plan.prev {
        Some(p) if p.index < me => Some(dial(p)?),
        Some(p) => {
            expected.push(p);
            None
        }
        None => None,
    };
    let mut next = match &plan.next {
        Some(p) if p.index < me => Some(dial(p)?),
        Some(p) => {
            expected.push(p);
            None
        }
        None => None,
    };
    let deadline = Instant::now() + PEER_DEADLINE;
    let mut pending = expected.len();
    while pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let arrival = arrivals.recv_timeout(left).map_err(|_| {
            let names: Vec<String> = expected
                .iter()
                .map(|p| format!("{} ({})", p.name, p.addr))
                .collect();
            format!(
                "timed out waiting for peers to connect: {}",
                names.join(", ")
            )
        })?;
        if arrival.session != plan.session {
            continue;
        }
        let from = arrival.from;
        let mut conn = arrival.conn;
        if let Some(p) = plan
            .group
            .iter()
            .chain(plan.prev.iter())
            .chain(plan.next.iter())
            .find(|p| p.index == from)
        {
            conn.set_peer_name(&format!("{} ({})", p.name, p.addr));
        }
        let name = plan
            .group
            .iter()
            .chain(plan.prev.iter())
            .chain(plan.next.iter())
            .find(|p| p.index == from)
            .map_or_else(|| format!("node{from}"), |p| p.name.clone());
        let mut placed = false;
        if let Some(rank) = plan.group.iter().position(|p| p.index == from) {
            if from != me && group[rank].is_none() {
                group[rank] = Some((name.clone(), conn));
                placed = true;
            }
        } else if plan.prev.as_ref().is_some_and(|p| p.index == from) && prev.is_none() {
            prev = Some((name.clone(), conn));
            placed = true;
        } else if plan.next.as_ref().is_some_and(|p| p.index == from) && next.is_none() {
            next = Some((name.clone(), conn));
            placed = true;
        }
        if placed {
            pending -= 1;
        }
    }
    Ok(PeerLinks::new(
        my_rank,
        group,
        prev,
        next,
        step_deadline,
        plan.wire,
    ))
}

fn step(
    conn: &mut Connection,
    l: &mut Loaded,
    pos: usize,
    tokens: &[u32],
    seq: u32,
) -> Result<(), NetError> {
    let started = Instant::now();
    let phase = if tokens.len() > 1 || pos == 0 {
        "prefill"
    } else {
        "decode"
    };
    if let Some(links) = l.links.as_mut() {
        links.begin_step();
    }
    let result = l.select(seq).and_then(|()| run_step(l, pos, tokens, seq));
    match result {
        Ok(logits) => {
            let total = started.elapsed().as_secs_f64();
            // The span list travels in the reply and comes back afterwards,
            // so its allocation is reused step after step.
            let (wait, sent, recv, mut spans) = match l.links.as_mut() {
                Some(links) => (
                    links.stats.step_wait,
                    links.stats.step_sent,
                    links.stats.step_received,
                    std::mem::take(&mut links.stats.step_spans),
                ),
                None => (0.0, 0, 0, Vec::new()),
            };
            spans.insert(
                0,
                Span {
                    kind: SpanKind::Compute,
                    start: 0.0,
                    seconds: total,
                },
            );
            let metrics = StepMetrics {
                tokens: tokens.len() as u32,
                compute_seconds: (total - wait).max(0.0),
                wait_seconds: wait,
                bytes_sent: sent,
                bytes_received: recv,
                spans,
            };
            l.metrics.steps += 1;
            l.metrics.compute_seconds += metrics.compute_seconds;
            l.metrics.wait_seconds += metrics.wait_seconds;
            let has_logits = logits.is_some();
            let done = FromNode::StepDone {
                logits: has_logits,
                metrics,
            };
            conn.send_control(&done)?;
            if let (Some(links), FromNode::StepDone { metrics, .. }) = (l.links.as_mut(), done) {
                links.stats.step_spans = metrics.spans;
            }
            if let Some(logits) = logits {
                let header = crate::net::TensorHeader::new(
                    crate::net::TensorDtype::F32,
                    &[logits.len() as u64],
                    3,
                )
                .map_err(|e| NetError::Encode {
                    peer: conn.peer().to_string(),
                    what: "logits",
                    problem: e.to_string(),
                })?;
                conn.send_tensor(&header, crate::parallel::f32_bytes(&logits))?;
            }
            Ok(())
        }
        Err(message) => conn.send_control(&error(phase, message)),
    }
}

/// Runs one step; returns this node's logits slice if it holds the head.
fn run_step(
    l: &mut Loaded,
    pos: usize,
    tokens: &[u32],
    seq: u32,
) -> Result<Option<Vec<f32>>, String> {
    let h = l.model.config().hidden;
    let t = tokens.len();
    let (embed, head) = (l.model.layout().embed, l.model.layout().head);
    let mut x = std::mem::take(&mut l.hidden);
    if embed {
        x = l.model.embed(tokens).map_err(|e| e.to_string())?;
    } else {
        let links = l.links.as_mut().ok_or("no link to the previous stage")?;
        links
            .recv_hidden(&mut x, t, h, seq)
            .map_err(|e| e.to_string())?;
    }
    {
        let reduce: &mut dyn AllReduce = match l.links.as_mut() {
            Some(links) if links.group_size() > 1 => links,
            _ => &mut NoReduce,
        };
        l.model
            .forward_layers(&mut x, t, pos, reduce)
            .map_err(|e| e.to_string())?;
    }
    let out = if head {
        let last = &x[(t - 1) * h..t * h];
        Some(l.model.head(last).map_err(|e| e.to_string())?)
    } else {
        let links = l.links.as_mut().ok_or("no link to the next stage")?;
        links.send_hidden(&x, seq).map_err(|e| e.to_string())?;
        None
    };
    l.hidden = x;
    Ok(out)
}
