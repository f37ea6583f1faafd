//! A split GGUF over in-process nodes: streamed from every shard, or cut by
//! nodes that hold the shards themselves (`--model-dir`, mapped, nothing
//! written), the logits are the one-process logits bit for bit.

use super::harness::{
    greedy_logits, load_naming_file, reference, start_node_with_models, tiny_model,
    tiny_model_split,
};
use crate::cluster::coordinator::Cluster;
use crate::cluster::messages::LocalModel;
use crate::net::Token;
use crate::parallel::WireDtype;
use crate::shard::plan::LayoutRequest;

fn bits(steps: &[Vec<f32>]) -> Vec<Vec<u32>> {
    steps
        .iter()
        .map(|l| l.iter().map(|x| x.to_bits()).collect())
        .collect()
}

#[test]
fn nodes_slice_a_split_model_from_their_own_model_dir() {
    let m = tiny_model_split(3);
    assert_eq!(m.gguf.shards().len(), 3);
    let mut one = reference(&tiny_model());
    let expected = greedy_logits(|ids, pos| one.forward(ids, pos).expect("forward"));

    let token = Token::generate();
    let nodes: Vec<_> = (0..2)
        .map(|i| start_node_with_models(&format!("n{i}"), &token, Some(m.dir().to_path_buf())))
        .collect();
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
    let mut cluster = Cluster::connect(&addrs, token, "test").expect("connects");
    cluster.wire = WireDtype::F64;
    // Each node lists the split once: its first shard, every shard's bytes.
    let described = LocalModel::describe(m.gguf.path(), m.gguf.file_bytes());
    for n in cluster.nodes() {
        assert_eq!(
            n.info.local_models,
            std::slice::from_ref(&described),
            "{}",
            n.name
        );
    }

    let summary = load_naming_file(&mut cluster, &m, &LayoutRequest::Tensor, Some(described));
    assert_eq!(summary.bytes_sent, 0, "no weights streamed");
    for (node, report) in &summary.nodes {
        assert!(
            report.from_local_file,
            "{node} cut its slices from the shards"
        );
    }
    let got = greedy_logits(|ids, pos| cluster.step(ids, pos).expect("step"));
    assert_eq!(bits(&got), bits(&expected));
    // The slices were mapped from the file, not written to the shard cache:
    // four local nodes of a 40 GB model need its disk space once.
    for n in &nodes {
        let written = files_under(n.cache.path());
        assert!(written.is_empty(), "the shard cache holds {written:?}");
    }
}

/// Every file below `dir`.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("reads").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_split_model_streams_from_every_shard() {
    let m = tiny_model_split(4);
    let mut one = reference(&m);
    let expected = greedy_logits(|ids, pos| one.forward(ids, pos).expect("forward"));
    let (mut cluster, _nodes) = super::harness::cluster_of(2);
    cluster.wire = WireDtype::F64;
    let layout = LayoutRequest::Pipeline {
        layers: Some(vec![0..1, 1..2]),
    };
    let summary = super::harness::load(&mut cluster, &m, &layout);
    assert!(summary.bytes_sent > 0);
    let got = greedy_logits(|ids, pos| cluster.step(ids, pos).expect("step"));
    assert_eq!(bits(&got), bits(&expected));
}
