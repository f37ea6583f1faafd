//! SmolLM2 on a cluster: open, plan, load and run greedy steps.

use shardlab_engine::cluster::coordinator::{Cluster, ClusterError, LoadSummary, ModelToLoad};
use shardlab_engine::model::gguf::GgufFile;
use shardlab_engine::model::store::default_model_path;
use shardlab_engine::shard::plan::{check_fits, plan, LayoutRequest, ModelSummary};

pub const CONTEXT: usize = 256;

/// "The capital of France is" in SmolLM2's vocabulary.
pub const PROMPT: [u32; 5] = [504, 3575, 282, 4649, 314];

pub struct Model {
    pub gguf: GgufFile,
    pub summary: ModelSummary,
}

pub fn smollm2() -> Model {
    let path = default_model_path().expect("SmolLM2 installs into the model cache");
    let gguf = GgufFile::open(path).expect("opens");
    let summary = ModelSummary::from_gguf(&gguf).expect("summary");
    Model { gguf, summary }
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

/// Plans `layout` on the live nodes and loads it.
pub fn try_load(
    cluster: &mut Cluster,
    m: &Model,
    layout: &LayoutRequest,
    progress: &(dyn Fn(shardlab_engine::cluster::coordinator::LoadProgress) + Sync),
) -> Result<LoadSummary, ClusterError> {
    let budgets = cluster.budgets();
    let p = plan(&m.summary, &budgets, layout, CONTEXT).expect("plan");
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
    match try_load(cluster, m, layout, &|_| {}) {
        Ok(s) => s,
        Err(e) => panic!("load: {e}"),
    }
}

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
