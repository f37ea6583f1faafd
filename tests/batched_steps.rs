//! Batched steps (`Cluster::step_many`) over real node processes on
//! loopback: several sequences, some prefilling and some decoding, go
//! through each node as ONE step, and every logits row is the bits one
//! process gives that sequence alone. Bad batches are refused before any
//! node sees them; a dead node is named.

use std::collections::HashMap;

use shardlab_engine::cluster::coordinator::Cluster;
use shardlab_engine::model::config::ModelConfig;
use shardlab_engine::model::generate::SeqStep;
use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::model::layout::LocalLayout;
use shardlab_engine::model::transformer::Transformer;
use shardlab_engine::model::weights::ModelWeights;
use shardlab_engine::shard::plan::LayoutRequest;

mod common;

use common::{load, local, smollm2, Model, CONTEXT};

/// Each step: (sequence, tokens it runs). Sequence 3 joins late, 1 leaves;
/// the last step's 11 sequences take two groups of head rows.
const SCHEDULE: [&[(u32, usize)]; 5] = [
    &[(0, 5), (1, 13), (2, 1)],
    &[(0, 1), (1, 1), (2, 7), (3, 20)],
    &[(2, 1), (0, 1), (3, 1)],
    &[(3, 1), (2, 1), (0, 1)],
    &[
        (4, 2),
        (0, 1),
        (5, 3),
        (6, 1),
        (2, 1),
        (7, 2),
        (8, 4),
        (3, 1),
        (9, 1),
        (10, 2),
        (11, 1),
    ],
];

/// Sequences the schedule uses.
const SEQUENCES: u32 = 12;

fn ids(seq: u32, n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 7919 + seq as usize * 104_729 + 11) % 49_152) as u32)
        .collect()
}

/// The schedule with positions.
fn steps() -> Vec<Vec<SeqStep>> {
    let mut at: HashMap<u32, usize> = HashMap::new();
    SCHEDULE
        .iter()
        .map(|step| {
            step.iter()
                .map(|&(seq, n)| {
                    let pos = at.entry(seq).or_default();
                    let s = SeqStep {
                        seq,
                        tokens: ids(seq, *pos + n)[*pos..].to_vec(),
                        pos: *pos,
                    };
                    *pos += n;
                    s
                })
                .collect()
        })
        .collect()
}

/// Each step's logits rows from one process, every sequence run alone.
fn alone(m: &Model, plan: &[Vec<SeqStep>]) -> Vec<Vec<Vec<f32>>> {
    let config = ModelConfig::from_gguf(&m.gguf).expect("config");
    let layout = LocalLayout::whole(&config);
    let weights = ModelWeights::load(&config, &layout, &m.gguf).expect("weights");
    let mut t = Transformer::new(config, layout, weights, CONTEXT, KvType::F16);
    let mut out: Vec<Vec<Vec<f32>>> = plan.iter().map(|s| vec![Vec::new(); s.len()]).collect();
    for seq in 0..SEQUENCES {
        t.truncate(0);
        for (k, step) in plan.iter().enumerate() {
            if let Some(i) = step.iter().position(|s| s.seq == seq) {
                out[k][i] = t.forward(&step[i].tokens, step[i].pos).expect("forward");
            }
        }
    }
    out
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn batched_steps_on_tensor_and_pipeline_equal_one_process_in_one_step_per_node() {
    let m = smollm2();
    let plan = steps();
    let want = alone(&m, &plan);
    let home = tempfile::tempdir().expect("tempdir");
    for layout in ["tensor", "pipeline"] {
        let mut cluster =
            Cluster::spawn_local(2, &local(home.path(), Vec::new()), "test").expect("spawns");
        let request: LayoutRequest = layout.parse().expect("layout");
        load(&mut cluster, &m, &request);
        cluster.reset_metrics();
        for (k, step) in plan.iter().enumerate() {
            let got = cluster.step_many(step).expect("batched step");
            assert_eq!(got.len(), step.len());
            for (i, s) in step.iter().enumerate() {
                assert!(
                    same_bits(&got[i], &want[k][i]),
                    "{layout}: step {k}, sequence {} differs from one process",
                    s.seq
                );
            }
            // Every node ran the batch as one step of all its rows.
            let rows: usize = step.iter().map(|s| s.tokens.len()).sum();
            for (node, metrics) in cluster.last_step.iter().enumerate() {
                let tokens = metrics.as_ref().map(|s| s.tokens as usize);
                assert_eq!(tokens, Some(rows), "{layout}: node{node}, step {k}");
            }
            for (node, m) in cluster.metrics() {
                let steps = m.expect("metrics").steps;
                assert_eq!(steps, k as u64 + 1, "{layout}: {node} after step {k}");
            }
        }
    }
}

#[test]
fn a_bad_batch_is_refused_before_any_node_sees_it_and_a_dead_node_is_named() {
    let m = smollm2();
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster =
        Cluster::spawn_local(2, &local(home.path(), Vec::new()), "test").expect("spawns");
    let pipeline: LayoutRequest = "pipeline".parse().expect("layout");
    load(&mut cluster, &m, &pipeline);
    cluster.reset_metrics();
    let step = |seq, pos, n| SeqStep {
        seq,
        tokens: ids(seq, pos + n)[pos..].to_vec(),
        pos,
    };
    let refused = [
        (
            vec![step(0, 0, 3), step(1, CONTEXT - 2, 3)],
            "past the context",
        ),
        (vec![step(0, 0, 3), step(64, 0, 1)], "sequence id 64"),
        (vec![step(0, 0, 3), step(0, 3, 1)], "appears twice"),
    ];
    for (batch, why) in refused {
        let err = cluster.step_many(&batch).expect_err(why).to_string();
        assert!(err.contains(why), "{err}");
    }
    for (node, m) in cluster.metrics() {
        assert_eq!(m.expect("metrics").steps, 0, "{node} ran a refused step");
    }
    // The cluster is still whole: the same sequences run as if nothing came.
    let plan = steps();
    let want = alone(&m, &plan);
    let got = cluster.step_many(&plan[0]).expect("step after refusals");
    assert!(got.iter().zip(&want[0]).all(|(a, b)| same_bits(a, b)));
    // A node that died is named, and the cluster asks to be re-planned.
    cluster.local_nodes().expect("local").kill(1).expect("kill");
    let err = cluster
        .step_many(&plan[1])
        .expect_err("dead node")
        .to_string();
    assert!(err.contains("node1"), "{err}");
    let again = cluster.step_many(&plan[1]).expect_err("broken").to_string();
    assert!(again.contains("re-plan"), "{again}");
}
