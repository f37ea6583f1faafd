//! Mixture-of-experts models over real node processes on loopback: the
//! expert, tensor, pipeline and hybrid layouts give one process's greedy
//! tokens (qwen3moe, qwen2moe with its shared expert, Mixtral in K-quants
//! too narrow to split its heads, where the expert layout replicates
//! attention), the routed choices add up across the expert owners, and a
//! MoE too big for one node runs on two.

use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::shard::plan::KvSpec;
use std::path::{Path, PathBuf};

use shardlab_engine::cluster::coordinator::Cluster;
use shardlab_engine::model::gguf::GgufModel;
use shardlab_engine::shard::plan::{check_fits, plan, LayoutRequest, ModelSummary, NodeBudget};

mod common;

use common::{greedy, load, local, single_node, Model, CONTEXT};

const PROMPT: [u32; 6] = [3, 100, 200, 77, 31, 150];

/// `shardlab synth` as a user runs it.
fn synth(dir: &Path, name: &str, args: &[&str]) -> Model {
    let path: PathBuf = dir.join(name);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardlab"))
        .arg("synth")
        .args(args)
        .arg("--out")
        .arg(&path)
        .output()
        .expect("runs synth");
    assert!(
        out.status.success(),
        "synth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gguf = GgufModel::open(&path).expect("opens");
    let summary = ModelSummary::from_gguf(&gguf).expect("summary");
    Model { gguf, summary }
}

fn matches_one_node(m: &Model, layouts: &[(usize, &str)]) {
    let expected = single_node(m, &PROMPT);
    let home = tempfile::tempdir().expect("tempdir");
    for &(n, layout) in layouts {
        let mut cluster =
            Cluster::spawn_local(n, &local(home.path(), Vec::new()), "test").expect("spawns");
        let request: LayoutRequest = layout.parse().expect("layout");
        load(&mut cluster, m, &request);
        let got = greedy(&PROMPT, |ids, pos| cluster.step(ids, pos).expect("step"));
        assert_eq!(got, expected, "{layout} over {n} nodes");
    }
}

#[test]
fn qwen3moe_gives_one_nodes_tokens_in_every_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = synth(
        dir.path(),
        "qwen3moe.gguf",
        &[
            "--preset", "moe-tiny", "--arch", "qwen3moe", "--quant", "q8_0", "--seed", "11",
        ],
    );
    let moe = m.summary.config.moe.clone().expect("a MoE model");
    assert!(moe.n_experts >= 4 && moe.norm_topk);
    matches_one_node(
        &m,
        &[
            (2, "expert"),
            (3, "expert"),
            (2, "tensor"),
            (3, "tensor"),
            (2, "pipeline"),
            (4, "hybrid:2x2"),
        ],
    );
}

#[test]
fn qwen2moe_shared_expert_and_mixtral_k_quants_split_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let qwen2 = synth(
        dir.path(),
        "qwen2moe.gguf",
        &[
            "--preset", "moe-tiny", "--arch", "qwen2moe", "--quant", "q8_0", "--seed", "12",
        ],
    );
    assert!(qwen2
        .summary
        .config
        .moe
        .as_ref()
        .is_some_and(|m| m.shared_expert && !m.norm_topk));
    matches_one_node(&qwen2, &[(2, "expert"), (3, "tensor")]);

    // Q4_K: attention is one 256-wide block (4 heads x 64). The tensor
    // layout, which splits heads, is refused past one node; the expert
    // layout replicates attention instead, and a pipeline runs as ever.
    let mixtral = synth(
        dir.path(),
        "mixtral.gguf",
        &[
            "--preset", "moe-tiny", "--arch", "llama", "--quant", "q4_k", "--seed", "13",
        ],
    );
    assert_eq!(mixtral.summary.config.arch.name(), "llama");
    let refused = plan(
        &mixtral.summary,
        &unlimited(3),
        &LayoutRequest::Tensor,
        KvSpec::new(CONTEXT, KvType::F16),
    )
    .expect_err("Q4_K heads cannot split over 3");
    assert!(
        refused
            .to_string()
            .contains("cannot split 4 attention heads over 3 nodes"),
        "{refused}"
    );
    let expert = plan(
        &mixtral.summary,
        &unlimited(3),
        &LayoutRequest::Expert,
        KvSpec::new(CONTEXT, KvType::F16),
    )
    .expect("the expert layout plans");
    assert!(expert.nodes.iter().all(|n| n.layout.replicated_attention));
    matches_one_node(&mixtral, &[(2, "pipeline"), (2, "expert"), (3, "expert")]);
}

/// Budgets no model exceeds, for `n` nodes.
fn unlimited(n: usize) -> Vec<NodeBudget> {
    (1..=n)
        .map(|i| NodeBudget {
            name: format!("node{i}"),
            budget_bytes: u64::MAX,
            speed: 1.0,
        })
        .collect()
}

#[test]
fn routed_choices_add_up_across_expert_owners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = synth(
        dir.path(),
        "moe.gguf",
        &[
            "--preset", "moe-tiny", "--arch", "qwen3moe", "--quant", "q8_0", "--seed", "14",
        ],
    );
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster =
        Cluster::spawn_local(3, &local(home.path(), Vec::new()), "test").expect("spawns");
    load(&mut cluster, &m, &LayoutRequest::Expert);
    greedy(&PROMPT, |ids, pos| cluster.step(ids, pos).expect("step"));
    let metrics: Vec<_> = cluster
        .metrics()
        .into_iter()
        .map(|(label, m)| {
            let m = m.expect("metrics");
            m.experts
                .unwrap_or_else(|| panic!("{label}: no expert counters"))
        })
        .collect();
    let total = metrics[0].total;
    assert!(total > 0);
    assert!(metrics.iter().all(|e| e.total == total), "{metrics:?}");
    let routed: u64 = metrics.iter().map(|e| e.routed).sum();
    assert_eq!(
        routed, total,
        "every choice lands on exactly one owner: {metrics:?}"
    );
    let owned: usize = metrics.iter().map(|e| e.owned.len()).sum();
    assert_eq!(
        owned,
        m.summary.config.moe.as_ref().map_or(0, |c| c.n_experts)
    );
}

#[test]
fn a_moe_too_big_for_one_node_is_refused_there_and_runs_on_two_and_three() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = synth(
        dir.path(),
        "moe.gguf",
        // Big enough (about 215 MB) that the per-node runtime allowance
        // does not decide the outcome.
        &[
            "--arch",
            "qwen3moe",
            "--layers",
            "4",
            "--hidden",
            "1024",
            "--heads",
            "8",
            "--kv-heads",
            "4",
            "--experts",
            "16",
            "--experts-used",
            "4",
            "--expert-ffn",
            "1024",
            "--vocab",
            "512",
            "--quant",
            "q8_0",
            "--seed",
            "15",
        ],
    );
    let probe = [NodeBudget {
        name: "probe".into(),
        budget_bytes: u64::MAX,
        speed: 1.0,
    }];
    let whole = plan(
        &m.summary,
        &probe,
        &LayoutRequest::Single,
        KvSpec::new(CONTEXT, KvType::F16),
    )
    .expect("plan");
    let limit = whole.nodes[0].memory.total() * 7 / 10;
    let home = tempfile::tempdir().expect("tempdir");
    let one =
        Cluster::spawn_local(1, &local(home.path(), vec![Some(limit)]), "test").expect("spawns");
    let budgets = one.budgets();
    let p = plan(
        &m.summary,
        &budgets,
        &LayoutRequest::Single,
        KvSpec::new(CONTEXT, KvType::F16),
    )
    .expect("plan");
    let err = check_fits(&m.summary, &p, &budgets).expect_err("one node is too small");
    assert!(err.to_string().contains("short by"), "{err}");
    drop(one);
    let expected = single_node(&m, &PROMPT);
    for (n, layout) in [
        (2, LayoutRequest::Expert),
        (2, LayoutRequest::Tensor),
        (3, LayoutRequest::Expert),
    ] {
        let mut c = Cluster::spawn_local(n, &local(home.path(), vec![Some(limit); n]), "test")
            .expect("spawns");
        load(&mut c, &m, &layout);
        let got = greedy(&PROMPT, |ids, pos| c.step(ids, pos).expect("step"));
        assert_eq!(got, expected, "{layout} over {n}");
    }
}
