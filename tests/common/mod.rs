//! What the cluster tests share: the real model, local node options, and
//! greedy decoding against any step function (one process or a cluster).

#![allow(dead_code)] // each test file uses its own part

pub mod http;
pub mod python;

use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::shard::plan::KvSpec;
use std::path::PathBuf;

use shardlab_engine::cluster::coordinator::{
    Cluster, ClusterError, LoadProgress, LoadSummary, LocalNodeOptions, ModelToLoad,
};
use shardlab_engine::model::config::ModelConfig;
use shardlab_engine::model::gguf::GgufModel;
use shardlab_engine::model::layout::LocalLayout;
use shardlab_engine::model::store::default_model_path;
use shardlab_engine::model::transformer::Transformer;
use shardlab_engine::model::weights::ModelWeights;
use shardlab_engine::shard::plan::{check_fits, plan, LayoutRequest, ModelSummary};

pub const CONTEXT: usize = 256;
pub const TOKENS: usize = 32;

/// "The capital of France is" in SmolLM2's vocabulary.
pub const PROMPT: [u32; 5] = [504, 3575, 282, 4649, 314];

pub struct Model {
    pub gguf: GgufModel,
    pub summary: ModelSummary,
}

pub fn smollm2() -> Model {
    let path = default_model_path().expect("SmolLM2 installs into the model cache");
    let gguf = GgufModel::open(path).expect("opens");
    let summary = ModelSummary::from_gguf(&gguf).expect("summary");
    Model { gguf, summary }
}

/// Options for `n` local nodes, one thread each, with per-node budgets.
pub fn local(home: &std::path::Path, mem_limits: Vec<Option<u64>>) -> LocalNodeOptions {
    LocalNodeOptions {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_shardlab")),
        home: home.to_path_buf(),
        threads_per_node: 1,
        threads_each: Vec::new(),
        mem_limits,
        pin_cores: false,
        extra_args: Vec::new(),
    }
}

/// Plans `layout` on the live nodes and loads SmolLM2 accordingly.
pub fn try_load(
    cluster: &mut Cluster,
    m: &Model,
    layout: &LayoutRequest,
    progress: &(dyn Fn(LoadProgress) + Sync),
) -> Result<LoadSummary, ClusterError> {
    let budgets = cluster.budgets();
    let p = plan(
        &m.summary,
        &budgets,
        layout,
        KvSpec::new(CONTEXT, KvType::F16),
    )
    .expect("plan");
    check_fits(&m.summary, &p, &budgets).expect("fits");
    let model = ModelToLoad {
        name: "smollm2".into(),
        config: &m.summary.config,
        source: &m.gguf,
        file: None,
    };
    cluster.load(&model, &p, progress)
}

pub fn load(cluster: &mut Cluster, m: &Model, layout: &LayoutRequest) -> LoadSummary {
    try_load(cluster, m, layout, &|_| {}).expect("loads")
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

/// Prefill logits and `TOKENS` greedy tokens from any step function.
pub fn greedy_with_logits(
    prompt: &[u32],
    mut step: impl FnMut(&[u32], usize) -> Vec<f32>,
) -> (Vec<f32>, Vec<u32>) {
    let prefill = step(prompt, 0);
    let mut logits = prefill.clone();
    let mut out = Vec::new();
    for pos in prompt.len()..prompt.len() + TOKENS {
        let next = argmax(&logits);
        out.push(next);
        logits = step(&[next], pos);
    }
    (prefill, out)
}

/// `TOKENS` greedy tokens from any step function.
pub fn greedy(prompt: &[u32], step: impl FnMut(&[u32], usize) -> Vec<f32>) -> Vec<u32> {
    greedy_with_logits(prompt, step).1
}

/// The reference: the whole model in this process.
pub fn single_node(m: &Model, prompt: &[u32]) -> Vec<u32> {
    let config = ModelConfig::from_gguf(&m.gguf).expect("config");
    let layout = LocalLayout::whole(&config);
    let weights = ModelWeights::load(&config, &layout, &m.gguf).expect("weights");
    let mut t = Transformer::new(config, layout, weights, CONTEXT, KvType::F16);
    greedy(prompt, |ids, pos| t.forward(ids, pos).expect("forward"))
}
