//! Control messages between the coordinator and nodes, and between nodes.
//! They travel as JSON in control frames; tensors (weights, activations,
//! logits) travel in tensor frames right after the message that announces
//! them.

use serde::{Deserialize, Serialize};

use crate::model::config::ModelConfig;
use crate::model::kv_type::KvType;
use crate::model::layout::LocalLayout;
use crate::net::LinkProfile;
use crate::parallel::WireDtype;

/// Coordinator to node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToNode {
    Info,
    /// Prepare a shard; the node answers `NeedTensors`.
    Load(Box<LoadRequest>),
    /// The next tensor frame holds bytes `offset..offset+len` of tensor `index`.
    TensorChunk {
        index: u32,
        offset: u64,
        len: u64,
    },
    /// Every needed chunk was sent; the node verifies and answers `Loaded`.
    LoadFinish,
    /// Connect to the other nodes this node exchanges activations with.
    ConnectPeers(PeerPlan),
    /// Run `tokens` of sequence `seq` at positions `pos..`. Each sequence
    /// has its own KV cache; steps are answered in the order they came, so
    /// several may be in flight (pipelined sequences).
    Step {
        pos: u32,
        tokens: Vec<u32>,
        #[serde(default)]
        seq: u32,
    },
    /// Run one step of several sequences as one forward pass (continuous
    /// batching): the rows of every segment go through each matmul
    /// together, each at its own positions with its own KV cache. Every
    /// node gets the same list; a pipeline stage receives all segments'
    /// hidden rows in one hand-off. A head node sends, before `StepDone`,
    /// `LogitRows` and its tensor frame for each group of the segments
    /// marked `logits`, in order. At most `PREFILL_BATCH` rows in all.
    StepMany {
        segments: Vec<StepSegment>,
    },
    /// Forget KV positions of sequence `seq` from `pos` on.
    Truncate {
        pos: u32,
        #[serde(default)]
        seq: u32,
    },
    Metrics,
    ResetMetrics,
    /// What sequence `seq`'s KV cache holds, as a digest of its bits (see
    /// `KvCache::digest`): shows that a cache rebuilt by replay equals the
    /// one built step by step. The node answers `KvDigest`.
    KvDigest {
        #[serde(default)]
        seq: u32,
    },
    Ping,
    /// Measure this node's memory bandwidth and kernel rates at its thread
    /// count (once per process; later asks get the same figures). The node
    /// answers `Calibration`.
    Calibrate,
    /// Link probe, coordinator to node: a tensor frame of `bytes` follows;
    /// the node answers `Ok` once it has it all.
    Absorb {
        bytes: u64,
    },
    /// Link probe, node to coordinator: the node answers `Ok` and then a
    /// tensor frame of `bytes` bytes.
    Emit {
        bytes: u64,
    },
    /// Emulate `link` on every link this node sends on (to the coordinator
    /// and to its peers, now and after later `ConnectPeers`) until told
    /// otherwise; `None` turns emulation off. The node answers `Ok`.
    EmulateLinks {
        link: Option<LinkProfile>,
    },
    /// Drop the shard, keep the connection.
    Unload,
    /// Drop the shard and close.
    Bye,
}

/// Node to coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromNode {
    Info(NodeInfo),
    /// Indices of tensors the node does not have; empty when the shard is cached.
    NeedTensors {
        missing: Vec<u32>,
        cached: bool,
    },
    Loaded(LoadedReport),
    PeersReady,
    /// Step finished; a head node sends its logits slice as the next tensor frame.
    StepDone {
        logits: bool,
        metrics: StepMetrics,
    },
    /// The next tensor frame holds `rows` logits rows (this node's
    /// vocabulary slice of each), for the next `rows` segments of a
    /// `StepMany` that want logits.
    LogitRows {
        rows: u32,
    },
    Metrics(NodeMetrics),
    /// Positions a sequence's KV cache holds and the hex SHA-256 of their bits.
    KvDigest {
        positions: u32,
        sha256: String,
    },
    Pong,
    Calibration(crate::calibration::Calibration),
    Ok,
    /// Something failed on the node, in `phase` of its conversation.
    Error {
        phase: Phase,
        message: String,
        /// The failure is a peer closing its link to this node mid-step: a
        /// knock-on of that peer's own failure (it gave up on a deadline,
        /// or its process ended), which the coordinator names instead.
        #[serde(default)]
        peer_closed: bool,
    },
}

impl FromNode {
    /// The reply for a failure of this node's own, in `phase`.
    pub fn error(phase: Phase, e: impl std::fmt::Display) -> Self {
        FromNode::Error {
            phase,
            message: e.to_string(),
            peer_closed: false,
        }
    }
}

/// One sequence's part of a `StepMany`: `tokens` at positions `pos..`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepSegment {
    pub seq: u32,
    pub pos: u32,
    pub tokens: Vec<u32>,
    /// Whether the head runs on this segment's last row (false for the
    /// first part of a prompt cut across two steps).
    pub logits: bool,
}

impl StepSegment {
    /// The phase of a batched step: a prefill if any segment is one.
    pub fn phase(segments: &[StepSegment]) -> Phase {
        if segments
            .iter()
            .any(|s| Phase::of_step(s.tokens.len(), s.pos as usize) == Phase::Prefill)
        {
            Phase::Prefill
        } else {
            Phase::Decode
        }
    }

    /// A digest of the segment list that a pipeline hand-off carries in its
    /// tag, so a stage never takes rows cut for a different list.
    pub fn digest(segments: &[StepSegment]) -> u32 {
        segments.iter().fold(17u32, |h, s| {
            [s.seq, s.pos, s.tokens.len() as u32]
                .into_iter()
                .fold(h, |h, v| h.wrapping_mul(31).wrapping_add(v))
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub version: String,
    pub protocol: u16,
    pub hostname: String,
    pub listen: String,
    pub cores: usize,
    pub threads: usize,
    pub mem_total: u64,
    pub mem_free: u64,
    /// `--mem-limit`, or free memory when none was given.
    pub budget: u64,
    pub cached_shards: Vec<CachedShard>,
    /// A model file this node can read locally (`--model-dir`).
    pub local_models: Vec<LocalModel>,
    /// The link profile this node's sends emulate (`--link`, `:links emulate`).
    #[serde(default)]
    pub link: Option<LinkProfile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CachedShard {
    pub key: String,
    pub model: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LocalModel {
    /// The file's name; a split GGUF's first shard's.
    pub file_name: String,
    /// Its size; every shard's together for a split GGUF.
    pub bytes: u64,
}

impl LocalModel {
    /// How a node with `--model-dir` recognises its own copy of `path`
    /// (`bytes`: see the field).
    pub fn describe(path: &std::path::Path, bytes: u64) -> Self {
        Self {
            file_name: path
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default(),
            bytes,
        }
    }
}

/// One tensor of a shard, as the node will hold it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TensorMeta {
    pub name: String,
    pub dtype: u32,
    pub rows: u64,
    pub cols: u64,
    pub bytes: u64,
    /// Hex SHA-256 of the slice's bytes.
    pub sha256: String,
}

impl TensorMeta {
    /// The description of slice `w` named `name`: what the coordinator
    /// announces, and what a node that cut its own slice checks it against.
    pub fn of(name: &str, w: &crate::kernels::Weight) -> Self {
        Self {
            name: name.to_string(),
            dtype: crate::model::gguf::GgmlType::from(w.dtype).id(),
            rows: w.rows as u64,
            cols: w.cols as u64,
            bytes: w.byte_len() as u64,
            sha256: crate::cluster::node::shard_cache::sha256_hex(&w.data),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadRequest {
    pub session: String,
    pub model_name: String,
    /// The source file's name and size, so a node with `--model-dir` can
    /// slice its own copy instead of receiving bytes.
    pub model_file: Option<LocalModel>,
    pub config: ModelConfig,
    pub layout: LocalLayout,
    pub context: usize,
    /// The precision the KV cache stores.
    pub kv: KvType,
    pub tensors: Vec<TensorMeta>,
    /// Content hash of the whole shard (layout + every tensor hash).
    pub shard_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadedReport {
    pub weight_bytes: u64,
    pub received_bytes: u64,
    pub from_cache: bool,
    pub from_local_file: bool,
    pub seconds: f64,
    pub rss: u64,
    /// Why a node started with `--model-dir` did not cut its slices from
    /// its own copy of the file (and so had them streamed, or took them
    /// from its cache); `None` when it did, or has no `--model-dir`.
    #[serde(default)]
    pub local_file_miss: Option<LocalFileMiss>,
}

/// Why a node's `--model-dir` copy of the model was not used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, thiserror::Error)]
pub enum LocalFileMiss {
    #[error("--model-dir {dir} has no {file}")]
    Missing { dir: String, file: String },
    #[error("{file} in --model-dir {dir} could not be read: {error}")]
    Unreadable {
        dir: String,
        file: String,
        error: String,
    },
    #[error("{file} in --model-dir {dir} is {have} bytes, the coordinator's {want}")]
    OtherSize {
        dir: String,
        file: String,
        have: u64,
        want: u64,
    },
    #[error(
        "{file} in --model-dir {dir} is another file of the same size: its tensor '{tensor}' differs from the coordinator's"
    )]
    OtherContent {
        dir: String,
        file: String,
        tensor: String,
    },
}

/// Where a node's activations come from and go to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerPlan {
    pub session: String,
    /// This node's index in the cluster.
    pub me: usize,
    /// Nodes of this node's tensor group, in rank order (including itself).
    pub group: Vec<PeerAddr>,
    /// The node this one receives hidden states from (previous stage).
    pub prev: Option<PeerAddr>,
    /// The node this one sends hidden states to (next stage).
    pub next: Option<PeerAddr>,
    /// Precision of activations between nodes for this load.
    #[serde(default)]
    pub wire: WireDtype,
    /// How long a peer may stay silent before this node names it.
    #[serde(default)]
    pub liveness: crate::cluster::heartbeat::Liveness,
    /// Whether this node's peer links are sealed (as the coordinator's are).
    #[serde(default)]
    pub security: crate::net::LinkSecurity,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerAddr {
    pub index: usize,
    pub name: String,
    pub addr: String,
}

/// What one step cost on one node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StepMetrics {
    pub tokens: u32,
    pub compute_seconds: f64,
    /// Blocked on peers: all-reduce exchanges and hidden-state receives.
    pub wait_seconds: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Timeline of this step, for `:trace`.
    pub spans: Vec<Span>,
    /// The node process's resident memory when the step ended; 0 where the
    /// platform does not say. Defaults to 0 from a node that predates it,
    /// so old and new nodes still speak the same protocol version.
    #[serde(default)]
    pub resident_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Span {
    pub kind: SpanKind,
    /// Seconds from the start of the step.
    pub start: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum SpanKind {
    Compute,
    /// The routed experts' share of compute (mixture-of-experts layers).
    Expert,
    Send,
    Wait,
    Receive,
}

/// Totals since the shard loaded (or the last reset).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeMetrics {
    pub rss: u64,
    /// The most resident memory this process has held (`VmHWM`).
    #[serde(default)]
    pub peak_rss: u64,
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    pub budget: u64,
    pub steps: u64,
    pub compute_seconds: f64,
    pub wait_seconds: f64,
    /// Per peer: (peer name, bytes sent, bytes received).
    pub traffic: Vec<PeerTraffic>,
    /// All-reduce latencies in seconds (most recent, bounded).
    pub allreduce_seconds: Vec<f64>,
    /// Hidden-state hand-off latencies to the next stage (bounded).
    pub hop_seconds: Vec<f64>,
    /// Mixture-of-experts models: this node's experts and what was routed to them.
    #[serde(default)]
    pub experts: Option<ExpertMetrics>,
}

/// What the router sent to one process's experts since the load.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExpertMetrics {
    /// Experts this process owns (global indices).
    pub owned: std::ops::Range<usize>,
    /// (token, expert) choices that fell on the owned experts, summed over layers.
    pub routed: u64,
    /// (token, expert) choices made, summed over layers.
    pub total: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerTraffic {
    pub peer: String,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Seconds this node spent blocked receiving from this peer: summed
    /// over the nodes, it says whom the cluster waits on (the straggler).
    #[serde(default)]
    pub waited_seconds: f64,
}

/// Which part of a conversation failed, for error messages. The serde
/// names are the words nodes have always sent in `FromNode::Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Connect,
    Load,
    Peers,
    Prefill,
    Decode,
    Control,
    /// Turning link emulation on or off (`EmulateLinks`).
    Links,
    /// A link probe (`Absorb`, `Emit`).
    #[serde(rename = "link probe")]
    LinkProbe,
}

impl Phase {
    /// The phase of a step: the first one of a sequence, or any that runs
    /// several tokens, is a prefill; one token past the start is a decode.
    pub fn of_step(tokens: usize, pos: usize) -> Self {
        if tokens > 1 || pos == 0 {
            Phase::Prefill
        } else {
            Phase::Decode
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Load => "load",
            Phase::Peers => "peer setup",
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
            Phase::Control => "control",
            Phase::Links => "links",
            Phase::LinkProbe => "link probe",
        })
    }
}

/// Tags on tensor frames live with the frames (`net::tag`).
pub use crate::net::TensorTag;
