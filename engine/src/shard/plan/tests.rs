//! Whole plans end to end: every request kind on real and synthetic models,
//! the shape errors, and the refusal with its suggestion.

use super::fixtures::{kquant_model, llama70b, nodes_mib, smollm2_summary};
use super::memory::weight_bytes;
use super::*;
use crate::model::kv_type::KvType;
use crate::shard::plan::KvSpec;

const CTX: usize = 2048;

fn plan_of(model: &ModelSummary, budgets: &[f64], request: &str) -> Plan {
    plan(
        model,
        &nodes_mib(budgets),
        &request.parse().unwrap(),
        KvSpec::new(CTX, KvType::F16),
    )
    .unwrap()
}

fn plan_err(model: &ModelSummary, budgets: &[f64], request: &str) -> String {
    plan(
        model,
        &nodes_mib(budgets),
        &request.parse().unwrap(),
        KvSpec::new(CTX, KvType::F16),
    )
    .unwrap_err()
    .to_string()
}

/// Bytes of the tensors every tensor-parallel node holds whole.
fn replicated_bytes(model: &ModelSummary) -> u64 {
    model
        .tensors
        .iter()
        .filter(|t| t.name == "token_embd.weight" || t.name.ends_with("norm.weight"))
        .map(TensorSummary::bytes)
        .sum()
}

#[test]
fn from_gguf_reads_smollm2() {
    let model = smollm2_summary();
    let c = &model.config;
    assert_eq!(
        (c.n_layers, c.n_heads, c.n_kv_heads, c.ffn, c.vocab),
        (30, 9, 3, 1536, 49152)
    );
    assert!(c.tied_embeddings);
    let embd = model.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (embd.rows, embd.cols, embd.dtype.name()),
        (49152, 576, "Q8_0")
    );
    assert_eq!(model.tensors.len(), 30 * 9 + 2);
    assert_eq!(model.total_weight_bytes(), 96_576_768);
}

#[test]
fn single_node_holds_every_tensor() {
    let model = smollm2_summary();
    let p = plan_of(&model, &[1000.0], "single");
    assert_eq!(p.stages, vec![vec![0]]);
    let n = &p.nodes[0];
    assert_eq!(n.layout, LocalLayout::whole(&model.config));
    assert_eq!(n.memory.weights, model.total_weight_bytes());
    assert_eq!((n.rank, n.group_size, n.stage), (0, 1, 0));
    assert_eq!(n.budget_bytes, 1000 << 20);
    // Tensor over one node is the same layout.
    assert_eq!(
        plan_of(&model, &[1000.0], "tensor").nodes[0].layout,
        n.layout
    );
}

#[test]
fn tensor_nodes_together_hold_the_model_once_plus_replicas() {
    for model in [smollm2_summary(), kquant_model()] {
        for n in 1..=model.config.n_kv_heads.min(5) {
            let p = plan_of(&model, &vec![1e6; n], "tensor");
            assert_eq!(p.stages, vec![(0..n).collect::<Vec<_>>()]);
            let sum: u64 = p.nodes.iter().map(|n| n.memory.weights).sum();
            let want = model.total_weight_bytes() + (n as u64 - 1) * replicated_bytes(&model);
            assert_eq!(sum, want, "{} over {n}", model.config.name);
            for (i, np) in p.nodes.iter().enumerate() {
                assert_eq!((np.node, np.rank, np.group_size, np.stage), (i, i, n, 0));
            }
        }
    }
    // Beyond the KV heads, some K and V rows are held twice.
    let model = smollm2_summary();
    let wide = plan_of(&model, &[1e6; 4], "tensor");
    let sum: u64 = wide.nodes.iter().map(|n| n.memory.weights).sum();
    assert!(sum > model.total_weight_bytes() + 3 * replicated_bytes(&model));
}

#[test]
fn tensor_kv_cache_follows_owned_kv_heads() {
    let model = smollm2_summary();
    let p = plan_of(&model, &[1e6, 1e6], "tensor");
    // f16: 2 bytes a value.
    let per_head = 64 * 2 * 30 * CTX as u64 * 2;
    assert_eq!(p.nodes[0].memory.kv_cache, 2 * per_head);
    assert_eq!(p.nodes[1].memory.kv_cache, per_head);
}

#[test]
fn pipeline_stages_embed_first_and_head_last() {
    let model = smollm2_summary();
    let p = plan_of(&model, &[500.0, 500.0], "pipeline");
    assert_eq!(p.stages, vec![vec![0], vec![1]]);
    let (a, b) = (&p.nodes[0].layout, &p.nodes[1].layout);
    assert_eq!(a.layers.end, b.layers.start);
    assert_eq!((a.layers.start, b.layers.end), (0, 30));
    assert!(a.embed && !a.head && a.vocab.is_empty());
    assert!(!b.embed && b.head && b.vocab == (0..49152));
    // Tied embeddings: the last stage holds token_embd for its head.
    let embd = model.tensor("token_embd.weight").unwrap().bytes();
    let layers_only = |l: &LocalLayout| {
        weight_bytes(
            &model,
            &LocalLayout {
                embed: false,
                head: false,
                ..l.clone()
            },
        )
        .unwrap()
    };
    let norm = model.tensor("output_norm.weight").unwrap().bytes();
    assert_eq!(p.nodes[1].memory.weights, layers_only(b) + embd + norm);
    assert_eq!(p.nodes[0].memory.weights, layers_only(a) + embd);
    let whole: u64 = p.nodes.iter().map(|n| n.memory.weights).sum();
    assert_eq!(whole, model.total_weight_bytes() + embd);
    // The head stage computes the whole output head every token (SmolLM2's
    // is worth 8 layers of multiply-adds), so it runs fewer layers and the
    // work per token evens out to within one layer.
    assert_eq!((a.layers.clone(), b.layers.clone()), (0..19, 19..30));
    let work = |l: &LocalLayout| super::memory::weight_elements(&model, l).unwrap();
    let work_a = work(&LocalLayout {
        embed: false,
        ..a.clone()
    });
    let per_layer = work_a / a.layers.len() as u64;
    assert!(
        work_a.abs_diff(work(b)) <= per_layer,
        "{work_a} vs {}",
        work(b)
    );
}

#[test]
fn a_pipeline_split_by_work_gives_way_to_memory_when_it_would_not_fit() {
    let model = smollm2_summary();
    // A budget the work-even split overfills on its first stage, while
    // the memory-even split fits.
    let roomy = plan_of(&model, &[500.0, 500.0], "pipeline");
    let need = roomy.nodes[0].memory.total();
    let tight = need as f64 / 1048576.0 * 0.9;
    let p = plan_of(&model, &[tight, tight], "pipeline");
    let (a, b) = (&p.nodes[0].layout, &p.nodes[1].layout);
    assert!(a.layers.len().abs_diff(b.layers.len()) <= 2, "{a:?} {b:?}");
}

#[test]
fn untied_pipeline_keeps_the_embedding_on_stage_zero_only() {
    let model = kquant_model();
    let p = plan_of(&model, &[1e5, 1e5, 1e5], "pipeline");
    let sum: u64 = p.nodes.iter().map(|n| n.memory.weights).sum();
    assert_eq!(sum, model.total_weight_bytes());
    assert_eq!(p.nodes[2].layout.vocab, 0..32000);
}

#[test]
fn pipeline_layers_follow_budgets() {
    // The even split by work would not fit the second node's 15 GB.
    let model = llama70b();
    let p = plan_of(&model, &[40_000.0, 15_000.0], "pipeline");
    let (a, b) = (&p.nodes[0], &p.nodes[1]);
    assert_eq!(a.layout.layers.len() + b.layout.layers.len(), 80);
    assert!(
        a.layout.layers.len() > b.layout.layers.len() * 3 / 2,
        "{:?} {:?}",
        a.layout,
        b.layout
    );
    // Each fills about the same share of its budget (within one layer's worth).
    let share = |n: &NodePlan| n.memory.total() as f64 / n.budget_bytes as f64;
    assert!(
        (share(a) - share(b)).abs() < 0.03,
        "{} {}",
        share(a),
        share(b)
    );
}

#[test]
fn pipeline_takes_hand_layers_and_checks_them() {
    let model = smollm2_summary();
    let p = plan_of(&model, &[100.0, 100.0, 100.0], "pipeline:0..5,5..6,6..30");
    let got: Vec<_> = p.nodes.iter().map(|n| n.layout.layers.clone()).collect();
    assert_eq!(got, vec![0..5, 5..6, 6..30]);
    let err = plan_err(&model, &[100.0, 100.0], "pipeline:0..5,5..6,6..30");
    assert!(err.contains("3 ranges for 2 pipeline stages"), "{err}");
    let err = plan_err(&model, &[100.0, 100.0], "pipeline:0..5,6..30");
    assert!(err.contains("must be contiguous"), "{err}");
}

#[test]
fn more_stages_than_layers_names_the_node_left_empty() {
    let model = smollm2_summary();
    let err = plan_err(&model, &vec![100.0; 31], "pipeline");
    assert_eq!(
        err,
        "node 'n30' gets 0 layers: 31 pipeline stages but the model has only 30 layers"
    );
}

#[test]
fn shape_errors_are_specific() {
    let model = smollm2_summary();
    assert_eq!(
        plan_err(&model, &[], "tensor"),
        "tensor over 0 nodes: connect at least one node"
    );
    assert_eq!(
        plan_err(&model, &[], "pipeline"),
        "pipeline over 0 nodes: connect at least one node"
    );
    assert_eq!(
        plan_err(&model, &[1.0; 3], "hybrid:2x2"),
        "hybrid 2x2 needs 4 nodes, 3 connected"
    );
    assert!(plan_err(&model, &[1.0; 2], "single").contains("but 2 are connected"));
    let err = plan(
        &model,
        &nodes_mib(&[1.0]),
        &LayoutRequest::Single,
        KvSpec::new(0, KvType::F16),
    )
    .unwrap_err();
    assert!(matches!(err, PlanError::ZeroContext));
}

#[test]
fn hybrid_is_tensor_groups_as_pipeline_stages() {
    let model = smollm2_summary();
    let p = plan_of(&model, &[300.0; 4], "hybrid:2x2");
    assert_eq!(p.stages, vec![vec![0, 1], vec![2, 3]]);
    let l: Vec<&LocalLayout> = p.nodes.iter().map(|n| &n.layout).collect();
    assert_eq!(l[0].layers, l[1].layers);
    assert_eq!(l[2].layers, l[3].layers);
    assert_eq!(l[0].layers.end, l[2].layers.start);
    assert_eq!((l[0].layers.start, l[2].layers.end), (0, 30));
    for (i, n) in p.nodes.iter().enumerate() {
        assert_eq!((n.stage, n.rank, n.group_size), (i / 2, i % 2, 2));
        assert_eq!(n.layout.q_heads, if i % 2 == 0 { 0..6 } else { 6..9 });
        assert_eq!(n.layout.embed, i < 2);
        assert_eq!(n.layout.head, i >= 2);
    }
    assert_eq!(
        (l[2].vocab.clone(), l[3].vocab.clone()),
        (0..24576, 24576..49152)
    );
    assert!(l[0].vocab.is_empty());
    // 3x1 and 1x3 are tensor and pipeline by another name.
    let t = plan_of(&model, &[300.0; 3], "hybrid:3x1");
    assert_eq!(t.nodes, plan_of(&model, &[300.0; 3], "tensor").nodes);
    let pp = plan_of(&model, &[300.0; 3], "hybrid:1x3");
    assert_eq!(pp.nodes, plan_of(&model, &[300.0; 3], "pipeline").nodes);
}

#[test]
fn too_small_a_node_is_refused_with_a_layout_that_fits() {
    let model = smollm2_summary();
    let as_mib = |b: u64| b as f64 / 1048576.0;
    let whole = plan_of(&model, &[1e6], "single").nodes[0].memory.total();
    let half = plan_of(&model, &[1e6, 1e6], "tensor").nodes[1]
        .memory
        .total();
    // Neither node can hold the model alone, node 1 not even its tensor share...
    let budgets = [as_mib(whole) - 10.0, as_mib(half) - 1.0];
    let nodes = nodes_mib(&budgets);
    let tensor = plan(
        &model,
        &nodes,
        &LayoutRequest::Tensor,
        KvSpec::new(CTX, KvType::F16),
    )
    .unwrap();
    let err = check_fits(&model, &tensor, &nodes).unwrap_err();
    let PlanError::DoesNotFit {
        node,
        predicted,
        budget,
        shortfall,
        suggestion,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(node, "n1");
    assert_eq!(*shortfall, predicted - budget);
    // ...but a pipeline weighted by budget puts fewer layers on it.
    let s = suggestion.as_deref().unwrap_or_default();
    assert!(s.starts_with("pipeline over these 2 nodes fits: "), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("node 'n1' does not fit: predicted "),
        "{text}"
    );
    assert!(text.contains(&format!("budget {}", mib(*budget))), "{text}");
    assert!(
        text.contains(&format!("short by {}", mib(*shortfall))),
        "{text}"
    );
    assert!(
        text.contains(" MiB and ") && text.ends_with(" MiB"),
        "{text}"
    );
    let (request, fits) = suggest(&model, &nodes, KvSpec::new(CTX, KvType::F16)).unwrap();
    assert_eq!(request, LayoutRequest::Pipeline { layers: None });
    assert!(check_fits(&model, &fits, &nodes).is_ok());
    assert!(fits.nodes[0].layout.layers.len() > fits.nodes[1].layout.layers.len());
}

#[test]
fn suggest_prefers_tensor_and_gives_up_when_nothing_fits() {
    let model = smollm2_summary();
    let (request, _) = suggest(
        &model,
        &nodes_mib(&[1000.0, 1000.0]),
        KvSpec::new(CTX, KvType::F16),
    )
    .unwrap();
    assert_eq!(request, LayoutRequest::Tensor);
    assert!(suggest(
        &model,
        &nodes_mib(&[50.0, 50.0]),
        KvSpec::new(CTX, KvType::F16)
    )
    .is_none());
    let single = plan_of(&model, &[50.0], "single");
    let err = check_fits(&model, &single, &nodes_mib(&[50.0]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("node 'n0' does not fit") && !err.contains("fits:"),
        "{err}"
    );
    let err = check_fits(&model, &single, &nodes_mib(&[50.0, 50.0]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 nodes but 2 node budgets"), "{err}");
}

/// Plans over nodes of the given relative speeds, each with room to spare.
fn plan_at_speeds(model: &ModelSummary, speeds: &[f64], request: &str) -> Plan {
    let mut nodes = nodes_mib(&vec![1e6; speeds.len()]);
    for (n, &s) in nodes.iter_mut().zip(speeds) {
        n.speed = s;
    }
    plan(
        model,
        &nodes,
        &request.parse().unwrap(),
        KvSpec::new(CTX, KvType::F16),
    )
    .unwrap()
}

#[test]
fn a_speed_weighted_tensor_split_gives_the_slower_node_less_work() {
    for model in [smollm2_summary(), llama70b()] {
        let even = plan_at_speeds(&model, &[1.0, 1.0], "tensor");
        let uneven = plan_at_speeds(&model, &[1.0, 0.5], "tensor");
        let (fast, slow) = (&uneven.nodes[0].layout, &uneven.nodes[1].layout);
        assert!(slow.ffn.len() < fast.ffn.len(), "{fast:?} {slow:?}");
        assert!(
            slow.q_heads.len() <= fast.q_heads.len(),
            "{fast:?} {slow:?}"
        );
        assert!(slow.vocab.len() < fast.vocab.len(), "{fast:?} {slow:?}");
        // About a third of the weights on the node of half the speed.
        let w = |p: &Plan, i: usize| p.nodes[i].memory.weights as f64;
        let share = w(&uneven, 1) / (w(&uneven, 0) + w(&uneven, 1));
        assert!((0.28..0.42).contains(&share), "{share}");
        // Equal speeds: the split by bytes, as for nodes never calibrated.
        let plain = plan_of(&model, &[1e6, 1e6], "tensor");
        assert_eq!(even.nodes[0].layout, plain.nodes[0].layout);
        assert_eq!(even.nodes[1].layout, plain.nodes[1].layout);
    }
}

#[test]
fn a_speed_weighted_pipeline_gives_the_slower_stage_fewer_layers() {
    let model = smollm2_summary();
    let even = plan_at_speeds(&model, &[1.0, 1.0], "pipeline");
    let uneven = plan_at_speeds(&model, &[1.0, 0.5], "pipeline");
    let layers = |p: &Plan, i: usize| p.nodes[i].layout.layers.len();
    assert!(
        layers(&uneven, 1) < layers(&even, 1),
        "{:?}",
        uneven.nodes[1].layout
    );
    // The slow stage also carries the head: it ends well under half.
    assert!(layers(&uneven, 1) * 3 < 30 + 3, "{}", layers(&uneven, 1));
    let slow_first = plan_at_speeds(&model, &[0.5, 1.0], "pipeline");
    assert!(layers(&slow_first, 0) < layers(&even, 0));
}
