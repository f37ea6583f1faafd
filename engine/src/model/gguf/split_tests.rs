//! Split GGUF files: shard names, the split plan, writing and opening a
//! split as one model (from any shard), every way a set of shards can be
//! wrong, and models (dense and MoE) that read and run exactly as their
//! unsplit files.

use crate::model::kv_type::KvType;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::split::{listed_bytes, shard_path, SplitName, MAX_SPLITS};
use super::split_writer::{plan_split, split_gguf, split_prefix, SplitBy, SplitOptions};
use super::writer::{GgufWriter, TensorSource};
use super::{GgmlType, GgufError, GgufFile, GgufModel, MetadataValue, SplitError};
use crate::kernels::WeightBytes;
use crate::model::config::ModelConfig;
use crate::model::loader;
use crate::model::store::ModelSource;
use crate::model::synth::{synth, synth_split, SynthArch, SynthOptions};
use crate::model::weights::{GgufSource, TensorSource as _};
use crate::shard::plan::ModelSummary;

// ---- names -----------------------------------------------------------------

#[test]
fn shard_names_parse_and_print_as_llama_cpp_writes_them() {
    let p = Path::new("/m/my-model-q4_0-00002-of-00003.gguf");
    let n = SplitName::parse(p).expect("a shard name");
    assert_eq!(
        n,
        SplitName {
            prefix: "/m/my-model-q4_0".into(),
            no: 1,
            count: 3
        }
    );
    assert_eq!(n.path(1), p);
    assert_eq!(
        n.paths(),
        [
            PathBuf::from("/m/my-model-q4_0-00001-of-00003.gguf"),
            p.to_path_buf(),
            PathBuf::from("/m/my-model-q4_0-00003-of-00003.gguf"),
        ]
    );
    assert_eq!(
        shard_path(Path::new("x"), 0, 1),
        Path::new("x-00001-of-00001.gguf")
    );
    // No directory.
    let n = SplitName::parse(Path::new("a-00007-of-12345.gguf")).expect("parses");
    assert_eq!(
        (n.prefix.as_path(), n.no, n.count),
        (Path::new("a"), 6, 12345)
    );
}

#[test]
fn other_names_are_not_shard_names() {
    for name in [
        "model.gguf",
        "model-00001-of-00003.bin",
        "model-00001-of-00003.gguf.tmp",
        "model-1-of-3.gguf",          // not zero-padded as llama.cpp pads
        "model-000001-of-00003.gguf", // padded past five digits
        "model-00000-of-00003.gguf",  // shards count from 1
        "model-00004-of-00003.gguf",  // past the count
        "-00001-of-00003.gguf",       // no prefix
        "model-0000a-of-00003.gguf",  // not digits
        "model-00001-of-99999.gguf",  // over split.count's u16
        "model_00001-of-00003.gguf",  // no dash before the number
        "model-00001_of_00003.gguf",
    ] {
        assert_eq!(SplitName::parse(Path::new(name)), None, "{name}");
    }
}

#[test]
fn split_prefix_drops_a_gguf_extension_only() {
    assert_eq!(split_prefix(Path::new("d/m.gguf")), Path::new("d/m"));
    assert_eq!(split_prefix(Path::new("d/m.q4")), Path::new("d/m.q4"));
    assert_eq!(split_prefix(Path::new("m")), Path::new("m"));
}

// ---- the plan --------------------------------------------------------------

fn lens(runs: &[std::ops::Range<usize>]) -> Vec<usize> {
    runs.iter().map(|r| r.len()).collect()
}

#[test]
fn files_are_contiguous_non_empty_and_even_by_bytes() {
    // One big tensor among small ones: each file gets whole tensors, the
    // big one its own file.
    let sizes = [32, 32, 320, 32, 32, 32, 32, 32];
    let runs = plan_split(&sizes, &SplitOptions::files(3)).expect("plans");
    assert_eq!(runs, [0..2, 2..3, 3..8]);
    // Equal sizes: equal counts.
    let runs = plan_split(&[64; 9], &SplitOptions::files(3)).expect("plans");
    assert_eq!(lens(&runs), [3, 3, 3]);
    // Every file gets a tensor even when one tensor holds nearly all bytes.
    for n in 1..=6 {
        let sizes = [1 << 20, 32, 32, 32, 32, 32];
        let runs = plan_split(&sizes, &SplitOptions::files(n)).expect("plans");
        assert_eq!(runs.len(), n);
        assert_eq!(runs.first().map(|r| r.start), Some(0));
        assert_eq!(runs.last().map(|r| r.end), Some(6));
        assert!(runs.windows(2).all(|w| w[0].end == w[1].start), "{runs:?}");
        assert!(runs.iter().all(|r| !r.is_empty()), "{runs:?}");
    }
}

#[test]
fn max_tensors_max_bytes_and_a_metadata_only_first_file() {
    let by = |by| SplitOptions {
        by,
        metadata_only_first: false,
    };
    let sizes = [100u64; 7];
    assert_eq!(
        lens(&plan_split(&sizes, &by(SplitBy::MaxTensors(3))).unwrap()),
        [3, 3, 1]
    );
    // Sizes are padded to 32 bytes (128 each here): 2 fit in 300.
    assert_eq!(
        lens(&plan_split(&sizes, &by(SplitBy::MaxBytes(300))).unwrap()),
        [2, 2, 2, 1]
    );
    // A tensor over the limit gets a file of its own.
    assert_eq!(
        lens(&plan_split(&[32, 1000, 32], &by(SplitBy::MaxBytes(64))).unwrap()),
        [1, 1, 1]
    );
    let opts = SplitOptions {
        by: SplitBy::Files(2),
        metadata_only_first: true,
    };
    assert_eq!(lens(&plan_split(&sizes, &opts).unwrap()), [0, 3, 4]);
}

#[test]
fn impossible_plans_are_refused() {
    let files = |n| plan_split(&[32; 4], &SplitOptions::files(n)).unwrap_err();
    assert_eq!(files(5), "cannot make 5 files of 4 tensors");
    assert!(files(0).contains("at least 1"), "{}", files(0));
    let many = vec![32u64; MAX_SPLITS + 1];
    let opts = SplitOptions {
        by: SplitBy::MaxTensors(1),
        metadata_only_first: false,
    };
    assert!(plan_split(&many, &opts).unwrap_err().contains("65535"));
    assert_eq!(
        plan_split(&[], &SplitOptions::files(1)).unwrap_err(),
        "cannot make 1 files of 0 tensors"
    );
}

// ---- writing and opening ---------------------------------------------------

/// Deterministic filler, different per tensor.
fn filler(n: usize, salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(salt))
        .collect()
}

/// A small GGUF writer: a few metadata keys and `n` F32 tensors of varied size.
fn writer(n: usize) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        MetadataValue::String("llama".into()),
    );
    w.add_metadata("general.alignment", MetadataValue::U32(32));
    w.add_metadata("general.name", MetadataValue::String("split test".into()));
    for i in 0..n {
        let len = 8 * (1 + i % 4);
        w.add_tensor(
            &format!("t{i}"),
            &[len as u64],
            GgmlType::F32,
            TensorSource::Bytes(filler(4 * len, i as u8)),
        );
    }
    w
}

fn write_split(prefix: &Path, n_tensors: usize, opts: &SplitOptions) -> Vec<PathBuf> {
    let mut last = (0, 1);
    let files = writer(n_tensors)
        .write_split(prefix, opts, &mut |d, t| last = (d, t))
        .expect("writes the split");
    let total: u64 = files.iter().map(|(_, b)| b).sum();
    assert_eq!(last, (total, total), "progress ends at the total");
    for (p, b) in &files {
        assert_eq!(std::fs::metadata(p).unwrap().len(), *b);
    }
    files.into_iter().map(|(p, _)| p).collect()
}

fn open_err(path: &Path) -> (GgufError, String) {
    let e = GgufModel::open(path).expect_err("refused");
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn a_split_opens_from_any_shard_as_the_whole_model() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.gguf");
    writer(7).write(&whole).unwrap();
    let whole = GgufModel::open(&whole).unwrap();
    assert!(!whole.is_split());

    let paths = write_split(&dir.path().join("m"), 7, &SplitOptions::files(3));
    assert_eq!(
        paths[1].file_name().unwrap().to_str(),
        Some("m-00002-of-00003.gguf")
    );
    for given in &paths {
        let m = GgufModel::open(given).unwrap();
        assert!(m.is_split());
        assert_eq!(m.path(), paths[0], "named by its first shard");
        assert_eq!(m.shards().len(), 3);
        assert_eq!(m.tensor_count(), 7);
        let sizes: u64 = paths
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(m.file_bytes(), sizes);
        assert_eq!(m.get_str("general.name").unwrap(), Some("split test"));
        assert_eq!(m.get_u64("split.count").unwrap(), Some(3));
        // The same tensors, in the same order, with the same bytes.
        let names: Vec<&str> = m.tensors().map(|t| t.name.as_str()).collect();
        let want: Vec<&str> = whole.tensors().map(|t| t.name.as_str()).collect();
        assert_eq!(names, want);
        for t in whole.tensors() {
            assert_eq!(
                m.tensor_data(m.tensor(&t.name).unwrap()),
                whole.tensor_data(t)
            );
        }
        // Weights borrow the map of the shard that holds them: no copies.
        let source = GgufSource { file: &m };
        for (s, shard) in m.shards().iter().enumerate() {
            assert!(!shard.tensors.is_empty(), "shard {s} holds tensors");
            for t in &shard.tensors {
                let w = source.tensor(&t.name).unwrap().unwrap();
                let WeightBytes::Mapped { map, .. } = &w.data else {
                    panic!("{} was copied", t.name);
                };
                assert!(Arc::ptr_eq(map, shard.map()), "{} maps shard {s}", t.name);
                assert_eq!(&w.data[..], shard.tensor_data(t));
            }
        }
    }
    // Later shards hold only the split keys; the first holds everything.
    let second = GgufFile::open(&paths[1]).unwrap();
    let keys: Vec<&str> = second.metadata.keys().map(String::as_str).collect();
    assert_eq!(keys, ["split.count", "split.no", "split.tensors.count"]);
    assert_eq!(second.get("split.no"), Some(&MetadataValue::U16(1)));
    assert_eq!(
        second.get("split.tensors.count"),
        Some(&MetadataValue::I32(7))
    );
}

#[test]
fn a_metadata_only_first_shard_and_a_split_of_one_file_open_too() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SplitOptions {
        by: SplitBy::MaxTensors(2),
        metadata_only_first: true,
    };
    let paths = write_split(&dir.path().join("meta"), 5, &opts);
    assert_eq!(paths.len(), 4);
    let m = GgufModel::open(&paths[2]).unwrap();
    assert!(m.shards()[0].tensors.is_empty());
    assert_eq!(m.tensor_count(), 5);
    let one = write_split(&dir.path().join("one"), 3, &SplitOptions::files(1));
    let m = GgufModel::open(&one[0]).unwrap();
    assert!(!m.is_split());
    assert_eq!(m.tensor_count(), 3);
}

#[test]
fn an_existing_model_resplits_and_merges_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let whole_path = dir.path().join("whole.gguf");
    writer(6).write(&whole_path).unwrap();
    let whole = GgufModel::open(&whole_path).unwrap();
    let four = split_gguf(
        &whole,
        &dir.path().join("four"),
        &SplitOptions::files(4),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(four.len(), 4);
    let split = GgufModel::open(&four[3].0).unwrap();
    let merged = split_gguf(
        &split,
        &dir.path().join("merged"),
        &SplitOptions::files(1),
        &mut |_, _| {},
    )
    .unwrap();
    let merged = GgufModel::open(&merged[0].0).unwrap();
    assert_eq!(merged.tensor_count(), 6);
    for t in whole.tensors() {
        assert_eq!(
            merged.tensor_data(merged.tensor(&t.name).unwrap()),
            whole.tensor_data(t)
        );
    }
    assert_eq!(merged.get_str("general.name").unwrap(), Some("split test"));
}

// ---- what can be wrong -----------------------------------------------------

#[test]
fn a_missing_shard_is_named_with_the_count_expected() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_split(&dir.path().join("m"), 6, &SplitOptions::files(3));
    std::fs::remove_file(&paths[2]).unwrap();
    let (e, msg) = open_err(&paths[0]);
    assert!(
        matches!(e, GgufError::Split(SplitError::MissingShards { .. })),
        "{e:?}"
    );
    assert_eq!(
        msg,
        format!(
            "{}: the model is split into 3 files, but 1 of them is missing: {}",
            paths[0].display(),
            paths[2].display()
        )
    );
    // The first shard missing, asked for by the second: both missing named.
    std::fs::remove_file(&paths[0]).unwrap();
    let (_, msg) = open_err(&paths[1]);
    assert!(msg.contains("2 of them are missing"), "{msg}");
    assert!(msg.contains(&paths[0].display().to_string()), "{msg}");
}

#[test]
fn a_shard_of_another_split_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let three = write_split(&dir.path().join("m"), 6, &SplitOptions::files(3));
    let four = write_split(&dir.path().join("other"), 6, &SplitOptions::files(4));
    // Shard 2 of a 4-way split, renamed into the 3-way one's place.
    std::fs::copy(&four[1], &three[1]).unwrap();
    let (e, msg) = open_err(&three[0]);
    assert!(
        matches!(e, GgufError::Split(SplitError::CountMismatch { .. })),
        "{e:?}"
    );
    assert_eq!(
        msg,
        format!(
            "{}: belongs to another split: its split.count is 4, but {} says 3",
            three[1].display(),
            three[0].display()
        )
    );
    // Opened by that shard, its own name disagrees with its keys.
    let (e, msg) = open_err(&three[1]);
    assert!(
        matches!(e, GgufError::Split(SplitError::BadName { .. })),
        "{e:?}"
    );
    assert!(msg.contains("shard 2 of 4"), "{msg}");
}

#[test]
fn shards_out_of_place_and_renamed_shards_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_split(&dir.path().join("m"), 6, &SplitOptions::files(3));
    // Shards 2 and 3 swapped on disk.
    let tmp = dir.path().join("swap");
    std::fs::rename(&paths[1], &tmp).unwrap();
    std::fs::rename(&paths[2], &paths[1]).unwrap();
    std::fs::rename(&tmp, &paths[2]).unwrap();
    let (e, msg) = open_err(&paths[0]);
    assert!(
        matches!(e, GgufError::Split(SplitError::WrongIndex { .. })),
        "{e:?}"
    );
    assert!(
        msg.contains(
            "split.no is 2 (shard 3 of its split), but it stands where shard 2 of 3 belongs"
        ),
        "{msg}"
    );

    let renamed = dir.path().join("renamed.gguf");
    std::fs::copy(&paths[0], &renamed).unwrap();
    let (_, msg) = open_err(&renamed);
    assert_eq!(
        msg,
        format!(
            "{}: this file is shard 1 of 3 (so say its split keys), but its name does not end in \
             -00001-of-00003.gguf, so the other shards cannot be found: keep the names \
             llama-gguf-split gave them",
            renamed.display()
        )
    );
    // One shard parsed on its own is not the model.
    let alone = GgufFile::open(&paths[0]).unwrap();
    let e = GgufModel::from_file(alone).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("shard 1 of 3 on its own; open it from disk so the other shards are found"),
        "{e}"
    );
}

/// Writes shard `no` of `count` by hand: metadata, split keys as given, tensors.
fn hand_shard(path: &Path, no: u16, count: u16, total: i32, tensors: &[&str]) {
    let mut w = GgufWriter::new();
    if no == 0 {
        w.add_metadata(
            "general.architecture",
            MetadataValue::String("llama".into()),
        );
    }
    w.add_metadata("split.no", MetadataValue::U16(no));
    w.add_metadata("split.count", MetadataValue::U16(count));
    w.add_metadata("split.tensors.count", MetadataValue::I32(total));
    for (i, t) in tensors.iter().enumerate() {
        w.add_tensor(
            t,
            &[8],
            GgmlType::F32,
            TensorSource::Bytes(filler(32, i as u8)),
        );
    }
    w.write(path).unwrap();
}

#[test]
fn duplicate_tensors_and_a_wrong_total_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |no| shard_path(&dir.path().join("d"), no, 2);
    hand_shard(&p(0), 0, 2, 3, &["a", "b"]);
    hand_shard(&p(1), 1, 2, 3, &["b"]);
    let (e, msg) = open_err(&p(0));
    assert!(
        matches!(e, GgufError::Split(SplitError::DuplicateTensor { .. })),
        "{e:?}"
    );
    assert_eq!(
        msg,
        format!(
            "tensor 'b' is in two shards: {} and {}",
            p(0).display(),
            p(1).display()
        )
    );

    hand_shard(&p(1), 1, 2, 3, &["c", "d"]);
    let (e, msg) = open_err(&p(1));
    assert!(
        matches!(e, GgufError::Split(SplitError::TensorCount { .. })),
        "{e:?}"
    );
    assert_eq!(
        msg,
        format!(
            "{}: split.tensors.count says 3 tensors, but the 2 shards hold 4",
            p(0).display()
        )
    );
    // A split that leaves split.no out of a later shard.
    let mut w = GgufWriter::new();
    w.add_metadata("split.count", MetadataValue::U16(2));
    w.add_tensor("c", &[8], GgmlType::F32, TensorSource::Bytes(filler(32, 1)));
    w.write(&p(1)).unwrap();
    let (_, msg) = open_err(&p(0));
    assert!(
        msg.ends_with("metadata key 'split.no': missing in a split file"),
        "{msg}"
    );
    // A later shard that says it is a file of its own.
    hand_shard(&p(1), 0, 1, 3, &["c"]);
    let (e, _) = open_err(&p(0));
    assert!(
        matches!(
            e,
            GgufError::Split(SplitError::CountMismatch { found: 1, .. })
        ),
        "{e:?}"
    );
}

#[test]
fn a_plain_file_with_split_keys_of_one_opens_as_before() {
    // As in llama.cpp, split keys of a single file are not checked.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x-00003-of-00007.gguf");
    hand_shard(&path, 5, 1, 99, &["a", "b"]);
    let m = GgufModel::open(&path).unwrap();
    assert_eq!((m.tensor_count(), m.path()), (2, path.as_path()));
}

#[test]
fn listings_show_a_split_once_with_every_shards_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let paths = write_split(&dir.path().join("m"), 6, &SplitOptions::files(3));
    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    let total: u64 = paths.iter().map(|p| len(p)).sum();
    assert_eq!(listed_bytes(&paths[0], len(&paths[0])), Some(total));
    assert_eq!(listed_bytes(&paths[1], len(&paths[1])), None);
    let plain = dir.path().join("plain.gguf");
    assert_eq!(listed_bytes(&plain, 5), Some(5));
    // A later shard whose first is gone is listed, so loading it can say why.
    std::fs::remove_file(&paths[0]).unwrap();
    assert_eq!(listed_bytes(&paths[2], 9), Some(9));
}

// ---- whole models ----------------------------------------------------------

fn tiny(quant: GgmlType) -> SynthOptions {
    let mut o = SynthOptions::preset(SynthArch::Llama, "tiny").expect("tiny preset");
    o.quant = quant;
    o.seed = 5;
    o
}

/// Prefill logits and 8 greedy tokens of a model file, loaded whole.
fn run(path: &Path) -> (Vec<Vec<f32>>, Vec<u32>) {
    let loaded =
        loader::load(&ModelSource::Gguf(path.to_path_buf()), 64, KvType::F32).expect("loads");
    let mut t = loaded.transformer;
    let prompt = [1u32, 40, 300, 7, 99];
    let mut logits = vec![t.forward(&prompt, 0).expect("prefill")];
    let mut tokens = Vec::new();
    for pos in prompt.len()..prompt.len() + 8 {
        let last = logits.last().unwrap();
        let next = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]).then(b.cmp(&a)))
            .unwrap() as u32;
        tokens.push(next);
        logits.push(t.forward(&[next], pos).expect("decode"));
    }
    (logits, tokens)
}

#[test]
fn a_synthetic_model_in_three_files_runs_exactly_as_in_one() {
    let dir = tempfile::tempdir().unwrap();
    let opts = tiny(GgmlType::Q4_0);
    let whole = dir.path().join("tiny.gguf");
    let one = synth(&opts, &whole, &mut |_, _| {}).unwrap();
    let split = synth_split(
        &opts,
        &dir.path().join("tiny-split.gguf"),
        &SplitOptions::files(3),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(split.files, 3);
    assert_eq!(
        split.path.file_name().unwrap().to_str(),
        Some("tiny-split-00001-of-00003.gguf")
    );
    assert_eq!(
        (split.tensors, split.parameters),
        (one.tensors, one.parameters)
    );

    let (a, b) = (
        GgufModel::open(&whole).unwrap(),
        GgufModel::open(&split.path).unwrap(),
    );
    assert_eq!(b.file_bytes(), split.bytes);
    assert_eq!(
        ModelConfig::from_gguf(&a).unwrap(),
        ModelConfig::from_gguf(&b).unwrap()
    );
    assert_eq!(
        ModelSummary::from_gguf(&a).unwrap(),
        ModelSummary::from_gguf(&b).unwrap()
    );
    // Every shard holds tensors; the embedding is in the first, the last
    // layer's in the last.
    assert!(b.shards().iter().all(|s| !s.tensors.is_empty()));
    assert_eq!(b.locate("token_embd.weight").unwrap().0.path, split.path);
    let last_shard = &b.shards()[2].path;
    assert_eq!(
        &b.locate("blk.1.ffn_down.weight").unwrap().0.path,
        last_shard
    );

    let (logits_one, tokens_one) = run(&whole);
    // By its last shard's path too.
    let last = shard_path(&dir.path().join("tiny-split"), 2, 3);
    let (logits_split, tokens_split) = run(&last);
    assert_eq!(tokens_split, tokens_one);
    assert_eq!(logits_split, logits_one, "bit-identical logits");
}

/// A small qwen2moe file: experts as 3-D tensors, a shared expert.
fn moe_writer() -> GgufWriter {
    let (h, layers, experts, eff, shared, vocab) = (64u64, 2, 4u64, 32u64, 64u64, 96u64);
    let mut w = GgufWriter::new();
    let a = "qwen2moe";
    let u = |v: u64| MetadataValue::U32(v as u32);
    w.add_metadata("general.architecture", MetadataValue::String(a.into()));
    w.add_metadata(
        "general.name",
        MetadataValue::String("moe split test".into()),
    );
    for (k, v) in [
        ("block_count", layers),
        ("embedding_length", h),
        ("attention.head_count", 4),
        ("attention.head_count_kv", 2),
        ("context_length", 256),
        ("vocab_size", vocab),
        ("expert_count", experts),
        ("expert_used_count", 2),
        ("expert_feed_forward_length", eff),
        ("expert_shared_feed_forward_length", shared),
    ] {
        w.add_metadata(&format!("{a}.{k}"), u(v));
    }
    let mut salt = 0u8;
    let mut add = |w: &mut GgufWriter, name: String, dims: &[u64]| {
        salt = salt.wrapping_add(1);
        let n: u64 = dims.iter().product();
        w.add_tensor(
            &name,
            dims,
            GgmlType::F32,
            TensorSource::Bytes(filler(4 * n as usize, salt)),
        );
    };
    add(&mut w, "token_embd.weight".into(), &[h, vocab]);
    for l in 0..layers {
        let p = |s: &str| format!("blk.{l}.{s}");
        add(&mut w, p("attn_norm.weight"), &[h]);
        for t in ["attn_q", "attn_output"] {
            add(&mut w, p(&format!("{t}.weight")), &[h, h]);
        }
        for t in ["attn_k", "attn_v"] {
            add(&mut w, p(&format!("{t}.weight")), &[h, h / 2]);
        }
        add(&mut w, p("ffn_norm.weight"), &[h]);
        add(&mut w, p("ffn_gate_inp.weight"), &[h, experts]);
        add(&mut w, p("ffn_gate_exps.weight"), &[h, eff, experts]);
        add(&mut w, p("ffn_up_exps.weight"), &[h, eff, experts]);
        add(&mut w, p("ffn_down_exps.weight"), &[eff, h, experts]);
        add(&mut w, p("ffn_gate_inp_shexp.weight"), &[h]);
        add(&mut w, p("ffn_gate_shexp.weight"), &[h, shared]);
        add(&mut w, p("ffn_up_shexp.weight"), &[h, shared]);
        add(&mut w, p("ffn_down_shexp.weight"), &[shared, h]);
    }
    add(&mut w, "output_norm.weight".into(), &[h]);
    add(&mut w, "output.weight".into(), &[h, vocab]);
    w
}

#[test]
fn a_moe_model_split_reads_as_its_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("moe.gguf");
    moe_writer().write(&whole).unwrap();
    let opts = SplitOptions {
        by: SplitBy::MaxTensors(5),
        metadata_only_first: false,
    };
    let files = moe_writer()
        .write_split(&dir.path().join("moe"), &opts, &mut |_, _| {})
        .unwrap();
    let (a, b) = (
        GgufModel::open(&whole).unwrap(),
        GgufModel::open(&files[0].0).unwrap(),
    );
    assert!(b.shards().len() > 3);
    // What the config reads beyond the metadata lives in later shards.
    for name in ["blk.0.ffn_gate_inp_shexp.weight", "output.weight"] {
        assert_ne!(b.locate(name).unwrap().0.path, files[0].0, "{name}");
    }
    let config = ModelConfig::from_gguf(&b).unwrap();
    assert!(config
        .moe
        .as_ref()
        .is_some_and(|m| m.shared_expert && m.n_experts == 4));
    assert!(!config.tied_embeddings);
    assert_eq!(config, ModelConfig::from_gguf(&a).unwrap());
    assert_eq!(
        ModelSummary::from_gguf(&b).unwrap(),
        ModelSummary::from_gguf(&a).unwrap()
    );
    let source = GgufSource { file: &b };
    for t in a.tensors() {
        let w = source.tensor(&t.name).unwrap().unwrap();
        assert!(matches!(w.data, WeightBytes::Mapped { .. }));
        assert_eq!(&w.data[..], a.tensor_data(t), "{}", t.name);
    }
}
