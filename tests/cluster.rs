//! The cluster over real node processes on loopback: every layout gives the
//! same greedy tokens as one process (a split GGUF too), memory refusal, the
//! shard cache, hostile input and a node dying mid-decode.

use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::shard::plan::KvSpec;
use std::time::{Duration, Instant};

use shardlab_engine::cluster::coordinator::{Cluster, ModelToLoad};
use shardlab_engine::model::gguf::GgufModel;
use shardlab_engine::shard::plan::{check_fits, plan, LayoutRequest, ModelSummary};

mod common;

use common::{argmax, greedy, load, local, single_node, smollm2, Model, CONTEXT, PROMPT, TOKENS};

#[test]
fn every_layout_gives_the_single_node_greedy_tokens() {
    let m = smollm2();
    let expected = single_node(&m, &PROMPT);
    let home = tempfile::tempdir().expect("tempdir");
    let layouts = [
        (2, "tensor"),
        (3, "tensor"),
        (4, "tensor"),
        (2, "pipeline"),
        (3, "pipeline"),
        (4, "hybrid:2x2"),
    ];
    for (n, layout) in layouts {
        let mut cluster =
            Cluster::spawn_local(n, &local(home.path(), Vec::new()), "test").expect("spawns");
        let request: LayoutRequest = layout.parse().expect("layout");
        load(&mut cluster, &m, &request);
        let got = greedy(&PROMPT, |ids, pos| cluster.step(ids, pos).expect("step"));
        assert_eq!(got, expected, "{layout} over {n} nodes");
    }
}

#[test]
fn a_qwen2_shape_with_replicated_kv_heads_matches_one_node() {
    // 14 Q heads and 2 KV heads: tensor over 3 splits the heads unevenly and
    // must replicate a KV head.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("qwen2.gguf");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_shardlab"))
        .args([
            "synth",
            "--arch",
            "qwen2",
            "--layers",
            "2",
            "--hidden",
            "896",
            "--heads",
            "14",
            "--kv-heads",
            "2",
        ])
        .args([
            "--ffn", "1024", "--vocab", "512", "--quant", "q8_0", "--seed", "7", "--out",
        ])
        .arg(&path)
        .output()
        .expect("runs synth");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let gguf = GgufModel::open(&path).expect("opens");
    let summary = ModelSummary::from_gguf(&gguf).expect("summary");
    let m = Model { gguf, summary };
    let prompt = [3u32, 100, 200, 300, 17];
    let expected = single_node(&m, &prompt);
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster =
        Cluster::spawn_local(3, &local(home.path(), Vec::new()), "test").expect("spawns");
    let p = load(&mut cluster, &m, &LayoutRequest::Tensor);
    assert_eq!(p.nodes.len(), 3);
    let plan = &cluster.loaded().expect("loaded").plan;
    let kv: Vec<_> = plan
        .nodes
        .iter()
        .map(|n| n.layout.kv_heads(&m.summary.config))
        .collect();
    assert!(
        kv.windows(2).any(|w| w[0].end > w[1].start),
        "a KV head is replicated: {kv:?}"
    );
    let got = greedy(&prompt, |ids, pos| cluster.step(ids, pos).expect("step"));
    assert_eq!(got, expected);
}

#[test]
fn models_interleaved_at_load_decode_as_one_node_in_every_layout() {
    // On x86-64 a process interleaves its Q4_0 and Q4_K matmul weights
    // eight rows at a time at load. A 500-token vocabulary over 2 or 3
    // nodes leaves output slices whose rows are not whole groups of eight.
    // Q4_K's 256-value blocks need 512 columns to split over 2 nodes.
    let shapes: [(&str, &[&str], usize); 2] = [
        ("q4_0", &["--vocab", "500"], 3),
        (
            "q4_k",
            &["--vocab", "500", "--hidden", "512", "--heads", "8"],
            2,
        ),
    ];
    for (quant, shape, tensor_nodes) in shapes {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(format!("tiny-{quant}.gguf"));
        synth_tiny_in(quant, &path, shape);
        let gguf = GgufModel::open(&path).expect("opens");
        let summary = ModelSummary::from_gguf(&gguf).expect("summary");
        let m = Model { gguf, summary };
        let prompt = [3u32, 100, 200, 300, 17];
        let expected = single_node(&m, &prompt);
        let home = tempfile::tempdir().expect("tempdir");
        for (n, layout) in [(tensor_nodes, "tensor"), (2, "pipeline")] {
            let mut cluster =
                Cluster::spawn_local(n, &local(home.path(), Vec::new()), "test").expect("spawns");
            load(&mut cluster, &m, &layout.parse().expect("layout"));
            let got = greedy(&prompt, |ids, pos| cluster.step(ids, pos).expect("step"));
            assert_eq!(got, expected, "{quant} {layout} over {n} nodes");
        }
    }
}

/// `shardlab synth --preset tiny --quant q8_0` (seed 3) into `out`, with
/// any extra flags.
fn synth_tiny(out: &std::path::Path, extra: &[&str]) -> String {
    synth_tiny_in("q8_0", out, extra)
}

/// As [`synth_tiny`], in `quant`.
fn synth_tiny_in(quant: &str, out: &std::path::Path, extra: &[&str]) -> String {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_shardlab"))
        .args(["synth", "--preset", "tiny", "--quant", quant, "--seed", "3"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .expect("runs synth");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8_lossy(&run.stdout).to_string()
}

#[test]
fn a_split_gguf_runs_tensor_parallel_on_two_nodes_as_on_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let said = synth_tiny(&dir.path().join("tiny.gguf"), &["--split", "3"]);
    let first = dir.path().join("tiny-00001-of-00003.gguf");
    assert!(said.contains("first of 3 files"), "{said}");
    assert!(said.contains(&first.display().to_string()), "{said}");
    // Opened by its last shard: the whole model, named by the first.
    let gguf = GgufModel::open(dir.path().join("tiny-00003-of-00003.gguf")).expect("opens");
    assert_eq!((gguf.path(), gguf.shards().len()), (first.as_path(), 3));
    let summary = ModelSummary::from_gguf(&gguf).expect("summary");
    let m = Model { gguf, summary };
    let prompt = [3u32, 100, 200, 300, 17];
    let expected = single_node(&m, &prompt);

    // The same model in one file decodes the same.
    let whole = dir.path().join("whole.gguf");
    synth_tiny(&whole, &[]);
    let gguf = GgufModel::open(&whole).expect("opens");
    let summary = ModelSummary::from_gguf(&gguf).expect("summary");
    assert_eq!(summary, m.summary);
    assert_eq!(single_node(&Model { gguf, summary }, &prompt), expected);

    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster =
        Cluster::spawn_local(2, &local(home.path(), Vec::new()), "test").expect("spawns");
    let loaded = load(&mut cluster, &m, &LayoutRequest::Tensor);
    assert_eq!(loaded.nodes.len(), 2);
    let got = greedy(&prompt, |ids, pos| cluster.step(ids, pos).expect("step"));
    assert_eq!(got, expected);
}

#[test]
fn a_model_too_big_for_one_node_is_refused_there_and_runs_on_two() {
    let m = smollm2();
    let home = tempfile::tempdir().expect("tempdir");
    // A budget of 80% of what one node would need for the whole model.
    let whole = plan(
        &m.summary,
        &[shardlab_engine::shard::plan::NodeBudget {
            name: "probe".into(),
            budget_bytes: u64::MAX,
            speed: 1.0,
        }],
        &LayoutRequest::Single,
        KvSpec::new(CONTEXT, KvType::F16),
    )
    .expect("plan");
    let limit = whole.nodes[0].memory.total() * 8 / 10;

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
    let msg = err.to_string();
    assert!(msg.contains("node0"), "{msg}");
    assert!(msg.contains("short by"), "{msg}");
    drop(one);

    for layout in [
        LayoutRequest::Tensor,
        LayoutRequest::Pipeline { layers: None },
    ] {
        let mut two = Cluster::spawn_local(
            2,
            &local(home.path(), vec![Some(limit), Some(limit)]),
            "test",
        )
        .expect("spawns");
        load(&mut two, &m, &layout);
        let got = greedy(&PROMPT[..3], |ids, pos| two.step(ids, pos).expect("step"));
        assert_eq!(got.len(), TOKENS);
    }
}

#[test]
fn a_node_refuses_a_shard_over_its_own_budget_even_when_asked() {
    let m = smollm2();
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster =
        Cluster::spawn_local(1, &local(home.path(), vec![Some(20 << 20)]), "test").expect("spawns");
    // A plan made as if the node had plenty of memory.
    let generous = [shardlab_engine::shard::plan::NodeBudget {
        name: "node0".into(),
        budget_bytes: u64::MAX,
        speed: 1.0,
    }];
    let p = plan(
        &m.summary,
        &generous,
        &LayoutRequest::Single,
        KvSpec::new(CONTEXT, KvType::F16),
    )
    .expect("plan");
    let model = ModelToLoad {
        name: "smollm2".into(),
        config: &m.summary.config,
        source: &m.gguf,
        file: None,
    };
    let err = cluster
        .load(&model, &p, &|_| {})
        .expect_err("the node refuses");
    assert!(err.to_string().contains("over this node's budget"), "{err}");
    assert!(cluster.nodes()[0].is_alive(), "a refusal is not a failure");
    // Refused before any weight arrived: nothing reached its shard cache.
    let cache = home.path().join("nodes").join("local-0");
    assert!(
        shardlab_engine::cluster::node::shard_cache::ShardCache::new(cache)
            .list()
            .is_empty(),
        "the refused shard was not stored"
    );
}

#[test]
fn a_second_load_of_the_same_slices_sends_no_weight_bytes() {
    let m = smollm2();
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster =
        Cluster::spawn_local(2, &local(home.path(), Vec::new()), "test").expect("spawns");
    let first = load(&mut cluster, &m, &LayoutRequest::Tensor);
    assert!(
        first.bytes_sent > 50 << 20,
        "first load sends the slices: {}",
        first.bytes_sent
    );
    let second = load(&mut cluster, &m, &LayoutRequest::Tensor);
    assert_eq!(second.bytes_sent, 0);
    assert!(second
        .nodes
        .iter()
        .all(|(_, r)| r.from_cache && r.received_bytes == 0));
    let got = greedy(&PROMPT[..2], |ids, pos| {
        cluster.step(ids, pos).expect("step")
    });
    assert_eq!(got.len(), TOKENS);
}

#[test]
fn a_node_killed_mid_decode_is_named_within_two_seconds_and_survivors_replan() {
    let m = smollm2();
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster =
        Cluster::spawn_local(3, &local(home.path(), Vec::new()), "test").expect("spawns");
    load(&mut cluster, &m, &LayoutRequest::Tensor);
    let mut logits = cluster.step(&PROMPT, 0).expect("prefill");
    let mut pos = PROMPT.len();
    for _ in 0..3 {
        logits = cluster.step(&[argmax(&logits)], pos).expect("decode");
        pos += 1;
    }
    let victim = cluster.nodes()[1].label();
    cluster
        .local_nodes()
        .expect("local")
        .kill(1)
        .expect("kills");
    let started = Instant::now();
    let err = cluster
        .step(&[argmax(&logits)], pos)
        .expect_err("the step fails");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(err.node, victim, "{err}");
    assert!(err.to_string().contains("decode"), "{err}");

    let removed = cluster.remove_failed();
    assert_eq!(removed, vec![victim]);
    load(&mut cluster, &m, &LayoutRequest::Tensor);
    let got = greedy(&PROMPT, |ids, pos| cluster.step(ids, pos).expect("step"));
    assert_eq!(got, single_node(&m, &PROMPT));
}
