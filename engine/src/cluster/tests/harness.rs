//! What the in-process cluster tests share: a tiny random-weight model,
//! nodes served from threads, a relay that can cut one node off, and the
//! one-process reference.

use crate::model::kv_type::KvType;
use crate::shard::plan::KvSpec;
use std::io::copy;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use crate::cluster::coordinator::{Cluster, LoadSummary, ModelToLoad};
use crate::cluster::messages::LocalModel;
use crate::cluster::node::{serve, NodeOptions};
use crate::model::config::ModelConfig;
use crate::model::gguf::SplitOptions;
use crate::model::gguf::{GgmlType, GgufModel};
use crate::model::layout::LocalLayout;
use crate::model::synth::{synth, synth_split, SynthArch, SynthOptions};
use crate::model::transformer::Transformer;
use crate::model::weights::ModelWeights;
use crate::net::Token;
use crate::shard::plan::{plan, LayoutRequest, ModelSummary};

pub const CONTEXT: usize = 64;
/// Greedy tokens generated after the prompt.
pub const TOKENS: usize = 6;
pub const PROMPT: [u32; 4] = [3, 100, 200, 17];

/// A 2-layer Llama of hidden size 64: loads and steps in milliseconds.
pub struct TinyModel {
    dir: TempDir,
    pub gguf: GgufModel,
    pub summary: ModelSummary,
}

pub fn tiny_model() -> TinyModel {
    model_with(&tiny_options())
}

/// A synthetic model of another shape, as `tiny.gguf` in its own folder.
pub fn model_with(opts: &SynthOptions) -> TinyModel {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.gguf");
    synth(opts, &path, &mut |_, _| {}).expect("writes the tiny model");
    let gguf = GgufModel::open(&path).expect("opens");
    let summary = ModelSummary::from_gguf(&gguf).expect("summary");
    TinyModel { dir, gguf, summary }
}

/// The same model written as a split GGUF of `files` shards (in the
/// folder [`TinyModel::dir`] names), opened by its first shard.
pub fn tiny_model_split(files: usize) -> TinyModel {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("tiny.gguf");
    let report = synth_split(
        &tiny_options(),
        &out,
        &SplitOptions::files(files),
        &mut |_, _| {},
    )
    .expect("writes the split tiny model");
    let gguf = GgufModel::open(&report.path).expect("opens");
    let summary = ModelSummary::from_gguf(&gguf).expect("summary");
    TinyModel { dir, gguf, summary }
}

impl TinyModel {
    /// The folder its file(s) are in.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

pub fn tiny_options() -> SynthOptions {
    SynthOptions {
        arch: SynthArch::Llama,
        layers: 2,
        hidden: 64,
        heads: 4,
        kv_heads: 2,
        ffn: 128,
        vocab: 320,
        quant: GgmlType::Q8_0,
        seed: 11,
        context: CONTEXT,
        head_dim: None,
        moe: None,
    }
}

/// A node served from a thread for the rest of the test process.
pub struct TestNode {
    pub addr: SocketAddr,
    /// Its shard cache; kept alive as long as the test holds the node.
    pub cache: TempDir,
}

pub fn start_node(name: &str, token: &Token) -> TestNode {
    start_node_with_models(name, token, None)
}

/// A node that may slice model files of its own (`--model-dir`).
pub fn start_node_with_models(
    name: &str,
    token: &Token,
    model_dir: Option<std::path::PathBuf>,
) -> TestNode {
    let cache = tempfile::tempdir().expect("tempdir");
    let opts = NodeOptions {
        listen: "127.0.0.1:0".parse().expect("loopback"),
        name: name.to_string(),
        token: token.clone(),
        mem_limit: None,
        threads: 1,
        cache_dir: cache.path().to_path_buf(),
        model_dir,
        step_deadline: Duration::from_secs(10),
        link: None,
        calibration_dir: None,
    };
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let served = serve(opts, |addr| {
            let _ = tx.send(addr);
        });
        if let Err(e) = served {
            eprintln!("test node: {e}");
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the node listens");
    TestNode { addr, cache }
}

/// `n` nodes sharing a fresh token.
pub fn start_nodes(n: usize) -> (Vec<TestNode>, Token) {
    let token = Token::generate();
    let nodes = (0..n)
        .map(|i| start_node(&format!("n{i}"), &token))
        .collect();
    (nodes, token)
}

/// `n` nodes and a coordinator connected to them.
pub fn cluster_of(n: usize) -> (Cluster, Vec<TestNode>) {
    let (nodes, token) = start_nodes(n);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
    let cluster = Cluster::connect(&addrs, token, "test").expect("connects");
    (cluster, nodes)
}

/// Plans `layout` over the cluster's nodes and loads the tiny model.
pub fn load(cluster: &mut Cluster, m: &TinyModel, layout: &LayoutRequest) -> LoadSummary {
    load_naming_file(cluster, m, layout, None)
}

/// [`load`], telling the nodes which file the model is (`file`), so a node
/// with `--model-dir` may cut its slices from its own copy.
pub fn load_naming_file(
    cluster: &mut Cluster,
    m: &TinyModel,
    layout: &LayoutRequest,
    file: Option<LocalModel>,
) -> LoadSummary {
    let p = plan(
        &m.summary,
        &cluster.budgets(),
        layout,
        KvSpec::new(CONTEXT, KvType::F16),
    )
    .expect("plans");
    let model = ModelToLoad {
        name: "tiny".into(),
        config: &m.summary.config,
        source: &m.gguf,
        file,
    };
    cluster.load(&model, &p, &|_| {}).expect("loads")
}

/// The whole model in this process.
pub fn reference(m: &TinyModel) -> Transformer {
    reference_with_kv(m, KvType::F16)
}

/// The whole model in this process, its KV cache at `kv`.
pub fn reference_with_kv(m: &TinyModel, kv: KvType) -> Transformer {
    let config = ModelConfig::from_gguf(&m.gguf).expect("config");
    let layout = LocalLayout::whole(&config);
    let weights = ModelWeights::load(&config, &layout, &m.gguf).expect("weights");
    Transformer::new(config, layout, weights, CONTEXT, kv)
}

pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// The logits of every step of a greedy run (prefill, then one per token)
/// from any step function.
pub fn greedy_logits(mut step: impl FnMut(&[u32], usize) -> Vec<f32>) -> Vec<Vec<f32>> {
    let mut all = vec![step(&PROMPT, 0)];
    for pos in PROMPT.len()..PROMPT.len() + TOKENS {
        let next = argmax(all.last().expect("a step ran"));
        all.push(step(&[next], pos));
    }
    all
}

/// Forwards every connection to `target` until cut: what a cable pulled
/// out of one node looks like to everyone else.
pub struct Relay {
    pub addr: SocketAddr,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    pub fn to(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let addr = listener.local_addr().expect("address");
        let streams = Arc::new(Mutex::new(Vec::new()));
        let held = streams.clone();
        std::thread::spawn(move || {
            for inbound in listener.incoming().flatten() {
                let Ok(outbound) = TcpStream::connect(target) else {
                    continue;
                };
                let (Ok(a), Ok(b), Ok(c), Ok(d)) = (
                    inbound.try_clone(),
                    outbound.try_clone(),
                    inbound.try_clone(),
                    outbound.try_clone(),
                ) else {
                    continue;
                };
                if let Ok(mut s) = held.lock() {
                    s.extend([c, d]);
                }
                pipe(a, b);
                pipe(outbound, inbound);
            }
        });
        Self { addr, streams }
    }

    /// Closes every relayed connection, both ways.
    pub fn cut(&self) {
        for s in self.streams.lock().expect("relay streams").iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}
