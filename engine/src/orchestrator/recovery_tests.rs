//! Recovery through the orchestrator, on nodes served from threads: one
//! node is cut off in the middle of a generation (every connection to it
//! closed, as a pulled cable looks), and the generation finishes on the
//! survivors with the text an uninterrupted run gives.

use std::cell::Cell;

use super::tests::{greedy, orchestrator};
use super::*;
use crate::cluster::tests::harness::{model_with, start_nodes, tiny_options, Relay, TinyModel};
use crate::model::store::ModelSource;

const PROMPT: [u32; 4] = [3, 100, 200, 17];

/// Three layers of six 32-wide heads over two KV heads: splits over
/// three nodes and two, by heads or by layers.
fn three_way_model() -> TinyModel {
    let mut opts = tiny_options();
    opts.hidden = 192;
    opts.heads = 6;
    opts.ffn = 384;
    opts.layers = 3;
    model_with(&opts)
}

/// An orchestrator connected to three thread nodes, the second behind a
/// relay that can be cut, with the tiny model sharded `layout`.
fn sharded(m: &TinyModel, layout: &LayoutRequest) -> (Orchestrator, Relay, Vec<impl Sized>) {
    let (nodes, token) = start_nodes(3);
    let relay = Relay::to(nodes[1].addr);
    let token_file = m.dir().join("token");
    token.write_file(&token_file).expect("token file");
    let addrs = vec![
        nodes[0].addr.to_string(),
        relay.addr.to_string(),
        nodes[2].addr.to_string(),
    ];
    let mut o = orchestrator(m.dir());
    o.connect(NodesSpec::Remote {
        addrs,
        token_file: Some(token_file),
    })
    .expect("connects");
    let model = OpenModel::open_source("tiny", ModelSource::Gguf(m.dir().join("tiny.gguf")))
        .expect("opens");
    o.set_model(model);
    o.context = Some(64);
    o.shard(layout, &|_| {}, &mut |_| {}).expect("shards");
    (o, relay, nodes)
}

#[test]
fn a_node_cut_off_mid_generation_is_recovered_from_and_the_text_is_unchanged() {
    let m = three_way_model();
    for layout in [
        LayoutRequest::Tensor,
        LayoutRequest::Pipeline { layers: None },
    ] {
        let (mut o, relay, _nodes) = sharded(&m, &layout);
        let whole = o
            .generate(&PROMPT, &greedy(12), None, &mut |_| {})
            .expect("an uninterrupted run");
        o.forget_cache();

        let pieces = Cell::new(0);
        let cut = o
            .generate(&PROMPT, &greedy(12), None, &mut |_| {
                pieces.set(pieces.get() + 1);
                if pieces.get() == 4 {
                    relay.cut();
                }
            })
            .expect("the generation survives the cut");
        assert_eq!(cut.ids, whole.ids, "{layout}");
        assert_eq!(cut.text, whole.text, "{layout}");

        let recoveries = o.take_recoveries();
        assert_eq!(recoveries.len(), 1, "{layout}: {recoveries:?}");
        let r = &recoveries[0];
        assert_eq!(r.lost.len(), 1);
        assert!(r.lost[0].starts_with("node1 "), "{}", r.lost[0]);
        assert_eq!(r.nodes, ["node0", "node2"]);
        assert_eq!(r.phase, crate::cluster::messages::Phase::Decode);
        // The prompt and the tokens decoded before the cut were replayed.
        assert!(r.replayed_tokens > PROMPT.len(), "{r}");
        assert_eq!(o.layout(), Some(survivor_layout(&layout, 2)));
        assert_eq!(o.cluster().expect("nodes").nodes().len(), 2);

        // The next generation runs on the survivors as any other.
        let again = o
            .generate(&PROMPT, &greedy(12), None, &mut |_| {})
            .expect("generates after the recovery");
        assert_eq!(again.ids, whole.ids);
    }
}

#[test]
fn with_recovery_off_the_generation_fails_naming_the_node() {
    let m = three_way_model();
    let (mut o, relay, _nodes) = sharded(&m, &LayoutRequest::Tensor);
    o.set_recover(false);
    let pieces = Cell::new(0);
    let err = o
        .generate(&PROMPT, &greedy(12), None, &mut |_| {
            pieces.set(pieces.get() + 1);
            if pieces.get() == 2 {
                relay.cut();
            }
        })
        .expect_err("no recovery");
    assert!(err.to_string().starts_with("node1 "), "{err}");
    assert!(o.take_recoveries().is_empty());
}
