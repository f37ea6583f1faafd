//! A prompt longer than one prefill batch (`PREFILL_BATCH` = 512 tokens)
//! over real node processes: the coordinator sends it as several steps, so
//! no step's deadline has to cover the whole prompt, and the tokens are one
//! process's, for a single sequence (tensor) and for two in flight at once
//! (pipeline, where each sequence's prompt batches interleave).

use shardlab_engine::cluster::coordinator::{Cluster, ModelToLoad};
use shardlab_engine::model::generate::{generate_many, GenerateOptions};
use shardlab_engine::model::gguf::GgufModel;
use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::model::loader::load;
use shardlab_engine::model::sampling::SamplingParams;
use shardlab_engine::model::store::ModelSource;
use shardlab_engine::model::synth::{synth, SynthArch, SynthOptions};
use shardlab_engine::model::transformer::PREFILL_BATCH;
use shardlab_engine::shard::plan::KvSpec;
use shardlab_engine::shard::plan::{plan, LayoutRequest, ModelSummary};

mod common;

use common::{argmax, local};

const CONTEXT: usize = 2048;
const PROMPT_TOKENS: usize = 2 * PREFILL_BATCH + 300;
const GEN: usize = 8;

/// The `tiny` llama preset at [`CONTEXT`], written as `dir/tiny.gguf`.
fn tiny(dir: &std::path::Path, seed: u64) -> std::path::PathBuf {
    let path = dir.join("tiny.gguf");
    let mut opts = SynthOptions::preset(SynthArch::Llama, "tiny").expect("preset");
    opts.context = CONTEXT;
    opts.seed = seed;
    synth(&opts, &path, &mut |_, _| {}).expect("synth");
    path
}

/// Plans `layout` on the cluster's nodes and loads the file at `path`.
fn load_as(cluster: &mut Cluster, path: &std::path::Path, layout: &str) {
    let gguf = GgufModel::open(path).expect("opens");
    let summary = ModelSummary::from_gguf(&gguf).expect("summary");
    let model = ModelToLoad {
        name: "tiny-long".into(),
        config: &summary.config,
        source: &gguf,
        file: None,
    };
    let request: LayoutRequest = layout.parse().expect("layout");
    let p = plan(
        &summary,
        &cluster.budgets(),
        &request,
        KvSpec::new(CONTEXT, KvType::F16),
    )
    .expect("plans");
    cluster.load(&model, &p, &|_| {}).expect("loads");
}

#[test]
fn a_prompt_of_several_batches_gives_one_process_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny(dir.path(), 21);
    let prompts: Vec<Vec<u32>> = (0..2u32)
        .map(|s| {
            (0..PROMPT_TOKENS as u32)
                .map(|i| 3 + (i * 7 + s * 11) % 300)
                .collect()
        })
        .collect();

    // One process: Transformer::forward batches the prompt itself.
    let mut one = load(&ModelSource::Gguf(path.clone()), CONTEXT, KvType::F16).expect("loads");
    let expected: Vec<Vec<u32>> = prompts
        .iter()
        .map(|prompt| {
            let t = &mut one.transformer;
            t.truncate(0);
            let mut logits = t.forward(prompt, 0).expect("prefill");
            let mut out = Vec::new();
            for pos in prompt.len()..prompt.len() + GEN {
                let next = argmax(&logits);
                out.push(next);
                logits = t.forward(&[next], pos).expect("decode");
            }
            out
        })
        .collect();

    let home = tempfile::tempdir().expect("tempdir");
    for layout in ["tensor", "pipeline"] {
        let mut cluster =
            Cluster::spawn_local(2, &local(home.path(), Vec::new()), "test").expect("spawns");
        load_as(&mut cluster, &path, layout);
        if layout == "tensor" {
            let mut logits = cluster.step(&prompts[0], 0).expect("prefill");
            let mut got = Vec::new();
            for pos in PROMPT_TOKENS..PROMPT_TOKENS + GEN {
                let next = argmax(&logits);
                got.push(next);
                logits = cluster.step(&[next], pos).expect("decode");
            }
            assert_eq!(got, expected[0], "tensor over 2");
        } else {
            let opts = GenerateOptions {
                max_tokens: GEN,
                sampling: SamplingParams::greedy(),
                stop_strings: Vec::new(),
                stop_at_eos: false,
            };
            let many = generate_many(&mut cluster, &one.tokenizer, &prompts, &opts, None)
                .expect("generates");
            for (g, want) in many.generations.iter().zip(&expected) {
                assert_eq!(&g.ids, want, "pipeline over 2, two sequences in flight");
            }
        }
    }
}

/// A prefill step may take far longer than a decode step's deadline. Here
/// the first stage's hand-off of a 512-row step crosses an emulated 2
/// Mbit/s link (about 2 s at f32, 4 s at f64), against a node step
/// deadline of 1 s and a coordinator one of 2 s; a decode step's hand-off
/// takes a few milliseconds. With one fixed deadline per step the second
/// stage gave up on the first ("closed the connection"); each step now gets
/// one deadline per 16 rows (`parallel::step_deadline`).
#[test]
fn a_prefill_step_longer_than_a_decode_deadline_completes_over_a_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny(dir.path(), 22);
    let home = tempfile::tempdir().expect("tempdir");
    let mut nodes = local(home.path(), Vec::new());
    nodes.extra_args = ["--step-timeout", "1", "--link", "bandwidth=2mbit"]
        .map(String::from)
        .to_vec();
    let mut cluster = Cluster::spawn_local(2, &nodes, "test").expect("spawns");
    cluster.step_deadline = std::time::Duration::from_secs(2);
    load_as(&mut cluster, &path, "pipeline");
    let prompt: Vec<u32> = (0..PREFILL_BATCH as u32 + 40)
        .map(|i| 3 + (i * 5) % 300)
        .collect();
    let logits = cluster
        .step(&prompt, 0)
        .expect("a 512-row step gets more than a decode step's deadline");
    cluster
        .step(&[argmax(&logits)], prompt.len())
        .expect("decode after it");
}
