//! A node started with `--model-dir` whose copy cannot serve its slices
//! (no such file, another size, other bytes) has them streamed, and its
//! load report says which: nothing silent.

use std::path::Path;

use super::harness::{
    greedy_logits, load_naming_file, model_with, reference, start_node_with_models, tiny_model,
    tiny_options, TinyModel,
};
use crate::cluster::coordinator::Cluster;
use crate::cluster::messages::{LocalFileMiss, LocalModel};
use crate::model::synth::SynthOptions;
use crate::net::Token;
use crate::parallel::WireDtype;
use crate::shard::plan::LayoutRequest;

/// Loads `m` on one node whose `--model-dir` is `dir`: the node's report of
/// why it did not use its copy, after checking the slices were streamed and
/// give the one-process logits.
fn miss_with_model_dir(m: &TinyModel, dir: &Path) -> Option<LocalFileMiss> {
    let token = Token::generate();
    let node = start_node_with_models("n0", &token, Some(dir.to_path_buf()));
    let mut cluster = Cluster::connect(&[node.addr.to_string()], token, "test").expect("connects");
    cluster.wire = WireDtype::F64;
    let file = LocalModel::describe(m.gguf.path(), m.gguf.file_bytes());
    let summary = load_naming_file(&mut cluster, m, &LayoutRequest::Single, Some(file));
    assert!(summary.bytes_sent > 0, "the slices were streamed");
    let (_, report) = &summary.nodes[0];
    assert!(!report.from_local_file && !report.from_cache);
    let mut one = reference(m);
    let expected = greedy_logits(|ids, pos| one.forward(ids, pos).expect("forward"));
    let got = greedy_logits(|ids, pos| cluster.step(ids, pos).expect("step"));
    assert_eq!(got, expected);
    report.local_file_miss.clone()
}

#[test]
fn a_model_dir_without_the_file_is_reported() {
    let m = tiny_model();
    let empty = tempfile::tempdir().expect("tempdir");
    let dir = empty.path().display().to_string();
    assert_eq!(
        miss_with_model_dir(&m, empty.path()),
        Some(LocalFileMiss::Missing {
            dir,
            file: "tiny.gguf".into()
        })
    );
}

#[test]
fn a_copy_of_another_size_is_reported_with_both_sizes() {
    let m = tiny_model();
    let larger = model_with(&SynthOptions {
        vocab: 384,
        ..tiny_options()
    });
    let (have, want) = (larger.gguf.file_bytes(), m.gguf.file_bytes());
    assert_ne!(have, want);
    assert_eq!(
        miss_with_model_dir(&m, larger.dir()),
        Some(LocalFileMiss::OtherSize {
            dir: larger.dir().display().to_string(),
            file: "tiny.gguf".into(),
            have,
            want,
        })
    );
}

#[test]
fn a_copy_of_the_same_size_with_other_weights_is_reported_by_tensor() {
    let m = tiny_model();
    let reseeded = model_with(&SynthOptions {
        seed: 12,
        ..tiny_options()
    });
    assert_eq!(reseeded.gguf.file_bytes(), m.gguf.file_bytes());
    let miss = miss_with_model_dir(&m, reseeded.dir());
    let Some(LocalFileMiss::OtherContent { dir, file, tensor }) = &miss else {
        panic!("expected other content, got {miss:?}");
    };
    assert_eq!(dir, &reseeded.dir().display().to_string());
    assert_eq!(file, "tiny.gguf");
    assert!(
        m.gguf.tensor(tensor).is_some(),
        "names a real tensor: {tensor}"
    );
    let text = miss.as_ref().expect("a miss").to_string();
    assert!(
        text.contains("same size") && text.contains(tensor.as_str()),
        "{text}"
    );
}
