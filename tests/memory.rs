//! The plan's memory prediction against what node processes really hold:
//! SmolLM2 at a 512-token context in the single, tensor, pipeline and hybrid
//! layouts, and a synthetic mixture of experts in the expert layout, with
//! the context filled (a 500-token prompt, then decode steps
//! to the last position). Each node's peak resident memory must be within
//! 10% of its predicted total, and its KV cache exactly the predicted one.

use shardlab_engine::cluster::coordinator::{Cluster, ModelToLoad};
use shardlab_engine::model::gguf::GgufModel;
use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::model::synth::{synth, SynthArch, SynthOptions};
use shardlab_engine::shard::plan::KvSpec;
use shardlab_engine::shard::plan::{plan, LayoutRequest, ModelSummary};

mod common;

use common::{argmax, local, smollm2, Model};

const CONTEXT: usize = 512;
const PROMPT_TOKENS: usize = 500;
const TOLERANCE: f64 = 0.10;

fn prediction_holds(n: usize, layout: &str) {
    prediction_holds_for(&smollm2(), n, layout);
}

fn prediction_holds_for(m: &Model, n: usize, layout: &str) {
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster =
        Cluster::spawn_local(n, &local(home.path(), Vec::new()), "test").expect("spawns");
    let request: LayoutRequest = layout.parse().expect("layout");
    let p = plan(
        &m.summary,
        &cluster.budgets(),
        &request,
        KvSpec::new(CONTEXT, KvType::F16),
    )
    .expect("plans");
    let model = ModelToLoad {
        name: m.summary.config.name.clone(),
        config: &m.summary.config,
        source: &m.gguf,
        file: None,
    };
    cluster.load(&model, &p, &|_| {}).expect("loads");
    // Ordinary vocabulary entries, not special tokens.
    let vocab = m.summary.config.vocab as u32;
    let prompt: Vec<u32> = (0..PROMPT_TOKENS as u32)
        .map(|i| (vocab / 20 + i * 37) % vocab)
        .collect();
    let mut logits = cluster.step(&prompt, 0).expect("prefill");
    for pos in PROMPT_TOKENS..CONTEXT {
        logits = cluster.step(&[argmax(&logits)], pos).expect("decode");
    }
    for ((label, metrics), node) in cluster.metrics().into_iter().zip(&p.nodes) {
        let got = metrics.unwrap_or_else(|e| panic!("{label}: {e}"));
        let predicted = node.memory.total();
        let off = (predicted as f64 - got.peak_rss as f64) / got.peak_rss as f64;
        eprintln!(
            "{layout} over {n}, {label}: predicted {:.1} MiB, peak RSS {:.1} MiB ({:+.1}%)",
            predicted as f64 / 1048576.0,
            got.peak_rss as f64 / 1048576.0,
            100.0 * off
        );
        assert!(
            off.abs() <= TOLERANCE,
            "{layout} over {n}, {label}: predicted {predicted} bytes, peak RSS {} ({:+.1}%): {:?}",
            got.peak_rss,
            100.0 * off,
            node.memory
        );
        assert_eq!(
            got.kv_bytes, node.memory.kv_cache,
            "{layout} over {n}, {label}: a full KV cache is what the plan said"
        );
    }
}

#[test]
fn one_node_holds_what_the_plan_predicts() {
    prediction_holds(1, "single");
}

#[test]
fn tensor_and_pipeline_nodes_hold_what_the_plan_predicts() {
    prediction_holds(2, "tensor");
    prediction_holds(2, "pipeline");
}

#[test]
fn hybrid_nodes_hold_what_the_plan_predicts() {
    prediction_holds(4, "hybrid:2x2");
}

#[test]
fn expert_nodes_hold_what_the_plan_predicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("moe-small.gguf");
    let opts = SynthOptions::preset(SynthArch::Qwen3Moe, "moe-small").expect("preset");
    synth(&opts, &path, &mut |_, _| {}).expect("synth");
    let gguf = GgufModel::open(&path).expect("opens");
    let summary = ModelSummary::from_gguf(&gguf).expect("summary");
    prediction_holds_for(&Model { gguf, summary }, 2, "expert");
}
