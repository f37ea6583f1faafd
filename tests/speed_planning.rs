//! Calibration and speed-weighted splits over real node processes: nodes
//! measure themselves at connect, and a node slower than the others gets
//! a smaller share of every split, with the tokens still those of one
//! process.

use shardlab_engine::calibration::Calibration;
use shardlab_engine::cluster::coordinator::Cluster;
use shardlab_engine::cluster::link_settings::LinkSettings;
use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::shard::plan::{plan, KvSpec, LayoutRequest};

mod common;

use common::{greedy, load, local, single_node, smollm2, CONTEXT, PROMPT};

fn spawn(threads_each: Vec<usize>, home: &std::path::Path) -> Cluster {
    let mut opts = local(home, Vec::new());
    opts.threads_each = threads_each;
    let n = opts.threads_each.len();
    Cluster::spawn_local_with(n, &opts, "test", LinkSettings::default()).expect("spawns")
}

#[test]
fn nodes_calibrate_at_their_own_thread_counts_and_links_are_measured() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster = spawn(vec![2, 1], home.path());
    let measured = cluster.calibrate().expect("calibrates");
    assert_eq!(measured.len(), 2, "{measured:?}");
    for (node, threads) in cluster.nodes().iter().zip([2, 1]) {
        let c = node.calibration.as_ref().expect("calibrated");
        assert_eq!(c.threads, threads, "{}", node.label());
        assert!(c.bandwidth > 0.0 && c.call_overhead > 0.0, "{c:?}");
        assert!(c.kernels.iter().all(|k| k.decode > 0.0 && k.prefill > 0.0));
        let link = node.link_cost.expect("link measured");
        assert!(link.rtt > 0.0 && link.bandwidth > 0.0, "{link:?}");
    }
    // Asked again, nothing is measured twice.
    assert!(cluster.calibrate().expect("calibrates").is_empty());
}

/// `c` as a machine of half its speed elsewhere would measure it.
fn halved(c: &Calibration) -> Calibration {
    let mut slow = c.clone();
    slow.host = "a-slower-machine".into();
    slow.bandwidth /= 2.0;
    slow.host_bandwidth /= 2.0;
    for k in &mut slow.kernels {
        k.decode /= 2.0;
        k.prefill /= 2.0;
    }
    slow
}

#[test]
fn a_slower_node_gets_less_of_every_split_and_the_tokens_stay_the_same() {
    let m = smollm2();
    let expected = single_node(&m, &PROMPT);
    let home = tempfile::tempdir().expect("tempdir");
    for layout in ["tensor", "pipeline"] {
        let mut cluster = spawn(vec![1, 1], home.path());
        cluster.calibrate().expect("calibrates");
        let even = cluster.budgets();
        assert_eq!(even[0].speed, even[1].speed, "one machine, one thread each");
        // Node 1 as if it ran on a machine of half the speed.
        let fast = cluster.nodes()[0].calibration.clone().expect("calibrated");
        cluster.set_calibration(1, halved(&fast));
        let budgets = cluster.budgets();
        assert_eq!((budgets[0].speed, budgets[1].speed), (1.0, 0.5));
        let request: LayoutRequest = layout.parse().expect("layout");
        let cache = KvSpec::new(CONTEXT, KvType::F16);
        let even_plan = plan(&m.summary, &even, &request, cache).expect("plans");
        let summary = load(&mut cluster, &m, &request);
        let weighted = &cluster.loaded().expect("loaded").plan;
        let work = |p: &shardlab_engine::shard::plan::Plan, i: usize| {
            let l = &p.nodes[i].layout;
            (l.layers.len(), l.ffn.len(), l.vocab.len())
        };
        let (even_b, b, a) = (work(&even_plan, 1), work(weighted, 1), work(weighted, 0));
        match layout {
            // Fewer FFN columns and vocabulary rows than node 0, and than
            // it had at equal speed.
            "tensor" => assert!(b.1 < a.1 && b.2 < a.2 && b.1 < even_b.1, "{a:?} {b:?}"),
            _ => assert!(b.0 < even_b.0, "{b:?} against {even_b:?} at equal speed"),
        }
        assert_eq!(summary.nodes.len(), 2);
        let got = greedy(&PROMPT, |ids, pos| cluster.step(ids, pos).expect("step"));
        assert_eq!(got, expected, "{layout} with a slower node1");
    }
}
