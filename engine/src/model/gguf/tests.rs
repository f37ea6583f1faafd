//! GGUF writer/reader round trips, and the reader's answers to damaged files:
//! every corruption must come back as an error naming the file (and the key,
//! tensor or offset where there is one), never as a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::writer::{GgufWriteError, GgufWriter, TensorSource};
use super::{GgmlType, GgufError, GgufFile, MetadataArray, MetadataValue};
use crate::model::store::testutil::smollm2_path;

/// Deterministic filler bytes, so data comparisons are not all zeros.
fn bytes(n: usize, salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

fn every_metadata_kind() -> Vec<(&'static str, MetadataValue)> {
    use MetadataArray as A;
    use MetadataValue as V;
    vec![
        ("general.architecture", V::String("llama".into())),
        ("k.u8", V::U8(250)),
        ("k.i8", V::I8(-7)),
        ("k.u16", V::U16(65000)),
        ("k.i16", V::I16(-30000)),
        ("k.u32", V::U32(4_000_000_000)),
        ("k.i32", V::I32(-2_000_000_000)),
        ("k.u64", V::U64(1 << 60)),
        ("k.i64", V::I64(-(1 << 60))),
        ("k.f32", V::F32(1.5e-5)),
        ("k.f64", V::F64(-2.25e100)),
        ("k.bool", V::Bool(true)),
        ("k.string", V::String("héllo\nworld".into())),
        ("k.empty_string", V::String(String::new())),
        ("a.u8", V::Array(A::U8(vec![0, 1, 255]))),
        ("a.i8", V::Array(A::I8(vec![-128, 0, 127]))),
        ("a.u16", V::Array(A::U16(vec![1, 65535]))),
        ("a.i16", V::Array(A::I16(vec![-32768, 32767]))),
        ("a.u32", V::Array(A::U32(vec![7, u32::MAX]))),
        ("a.i32", V::Array(A::I32(vec![3, 4, 3]))),
        ("a.u64", V::Array(A::U64(vec![u64::MAX]))),
        ("a.i64", V::Array(A::I64(vec![i64::MIN, 0]))),
        ("a.f32", V::Array(A::F32(vec![0.5, -1.0, 3.25]))),
        ("a.f64", V::Array(A::F64(vec![1e-300]))),
        ("a.bool", V::Array(A::Bool(vec![true, false, true]))),
        (
            "a.string",
            V::Array(A::String(vec![
                "Ġthe".into(),
                String::new(),
                "<|im_end|>".into(),
            ])),
        ),
        ("a.empty", V::Array(A::U32(vec![]))),
        (
            "a.nested",
            V::Array(A::Array(vec![
                A::U8(vec![1, 2]),
                A::String(vec!["x".into()]),
            ])),
        ),
    ]
}

struct Expected {
    name: &'static str,
    dims: Vec<u64>,
    dtype: GgmlType,
    data: Vec<u8>,
}

fn expected_tensors() -> Vec<Expected> {
    let mk = |name, dims: Vec<u64>, dtype: GgmlType, salt| {
        let count: u64 = dims.iter().product();
        let n = count as usize / dtype.block_len() * dtype.block_bytes();
        Expected {
            name,
            dims,
            dtype,
            data: bytes(n, salt),
        }
    };
    vec![
        mk("f32.weight", vec![8, 3], GgmlType::F32, 1),
        mk("f16.weight", vec![5], GgmlType::F16, 2),
        mk("bf16.weight", vec![6, 1, 2], GgmlType::BF16, 3),
        mk("q4_0.weight", vec![64, 3], GgmlType::Q4_0, 4),
        mk("q8_0.weight", vec![32, 2, 2, 2], GgmlType::Q8_0, 5),
        mk("q4_k.weight", vec![256, 2], GgmlType::Q4K, 6),
        mk("q6_k.weight", vec![512], GgmlType::Q6K, 7),
    ]
}

fn write_full(path: &Path, alignment: Option<u32>, chunked: bool) -> Vec<Expected> {
    let mut w = GgufWriter::new();
    for (k, v) in every_metadata_kind() {
        w.add_metadata(k, v);
    }
    if let Some(a) = alignment {
        w.add_metadata("general.alignment", MetadataValue::U32(a));
    }
    let tensors = expected_tensors();
    for t in &tensors {
        let source = if chunked {
            let data = t.data.clone();
            // Uneven chunk sizes exercise the sink's bookkeeping.
            TensorSource::chunks(move |sink| {
                for c in data.chunks(7) {
                    sink(c)?;
                }
                Ok(())
            })
        } else {
            TensorSource::Bytes(t.data.clone())
        };
        w.add_tensor(t.name, &t.dims, t.dtype, source);
    }
    let size = w.write(path).expect("write");
    assert_eq!(size, std::fs::metadata(path).expect("stat").len());
    assert!(!tmp_of(path).exists(), "the .tmp file must be renamed away");
    tensors
}

fn tmp_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

fn check_round_trip(alignment: Option<u32>, chunked: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("round.gguf");
    let tensors = write_full(&path, alignment, chunked);
    let f = GgufFile::open(&path).expect("open what we wrote");
    assert_eq!(f.version, 3);
    let align = alignment.unwrap_or(32) as u64;
    assert_eq!(f.alignment, align);
    assert_eq!(f.data_offset % align, 0);

    let mut want: BTreeMap<String, MetadataValue> = every_metadata_kind()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if let Some(a) = alignment {
        want.insert("general.alignment".into(), MetadataValue::U32(a));
    }
    assert_eq!(f.metadata, want);

    assert_eq!(f.tensors.len(), tensors.len());
    for (got, exp) in f.tensors.iter().zip(&tensors) {
        assert_eq!(got.name, exp.name);
        assert_eq!(got.dims, exp.dims, "{}", exp.name);
        assert_eq!(got.dtype, exp.dtype, "{}", exp.name);
        assert_eq!(got.offset % align, 0, "{} is aligned", exp.name);
        assert_eq!(f.tensor_data(got), &exp.data[..], "{} data", exp.name);
    }
    let file_len = std::fs::metadata(&path).expect("stat").len();
    assert_eq!(file_len % align, 0, "the last tensor is padded too");
}

#[test]
fn round_trip_every_metadata_kind_and_tensor_type() {
    check_round_trip(None, false);
}

#[test]
fn round_trip_chunked_sources_and_custom_alignment() {
    check_round_trip(Some(64), true);
    check_round_trip(Some(1), true);
}

#[test]
fn chunked_and_in_memory_sources_write_identical_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
    write_full(&a, None, false);
    write_full(&b, None, true);
    assert_eq!(
        std::fs::read(&a).expect("read a"),
        std::fs::read(&b).expect("read b")
    );
}

#[test]
fn progress_reaches_the_total() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.gguf");
    let mut w = GgufWriter::new();
    w.add_tensor(
        "t",
        &[32, 4],
        GgmlType::Q8_0,
        TensorSource::Bytes(bytes(136, 0)),
    );
    let mut seen = Vec::new();
    let size = w
        .write_with_progress(&path, &mut |done, total| seen.push((done, total)))
        .expect("write");
    assert_eq!(seen.last(), Some(&(size, size)));
    assert!(seen.windows(2).all(|p| p[0].0 <= p[1].0), "{seen:?}");
}

fn write_err(w: &GgufWriter, path: &Path) -> String {
    let e = w.write(path).expect_err("the writer must refuse");
    assert!(
        !path.exists() && !tmp_of(path).exists(),
        "nothing left behind: {e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "names the file: {msg}"
    );
    msg
}

#[test]
fn writer_refuses_what_a_reader_would_reject() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.gguf");

    let mut w = GgufWriter::new();
    w.add_metadata("x", MetadataValue::U8(1));
    w.add_metadata("x", MetadataValue::U8(2));
    assert!(write_err(&w, &path).contains("'x': added twice"));

    let mut w = GgufWriter::new();
    w.add_metadata("general.alignment", MetadataValue::U64(32));
    assert!(write_err(&w, &path).contains("general.alignment"));
    let mut w = GgufWriter::new();
    w.add_metadata("general.alignment", MetadataValue::U32(48));
    assert!(write_err(&w, &path).contains("power of two"));

    let mut w = GgufWriter::new();
    w.add_tensor(
        "five",
        &[1, 1, 1, 1, 1],
        GgmlType::F32,
        TensorSource::Bytes(vec![0; 4]),
    );
    assert!(write_err(&w, &path).contains("'five': 5 dimensions"));

    let mut w = GgufWriter::new();
    w.add_tensor(
        "odd",
        &[48],
        GgmlType::Q4_0,
        TensorSource::Bytes(vec![0; 27]),
    );
    assert!(write_err(&w, &path).contains("'odd': first dimension 48"));

    let mut w = GgufWriter::new();
    w.add_tensor(
        "short",
        &[4],
        GgmlType::F32,
        TensorSource::Bytes(vec![0; 15]),
    );
    assert!(write_err(&w, &path).contains("15 bytes given but [4] F32 needs 16"));

    let mut w = GgufWriter::new();
    w.add_tensor(
        "act",
        &[32],
        GgmlType::Q8_1,
        TensorSource::Bytes(vec![0; 36]),
    );
    assert!(write_err(&w, &path).contains("activation format"));

    let mut w = GgufWriter::new();
    w.add_tensor("t", &[1], GgmlType::F32, TensorSource::Bytes(vec![0; 4]));
    w.add_tensor("t", &[1], GgmlType::F32, TensorSource::Bytes(vec![0; 4]));
    assert!(write_err(&w, &path).contains("'t': added twice"));

    let long = "x".repeat(64);
    let mut w = GgufWriter::new();
    w.add_tensor(&long, &[1], GgmlType::F32, TensorSource::Bytes(vec![0; 4]));
    assert!(write_err(&w, &path).contains("llama.cpp allows 63"));
}

#[test]
fn writer_checks_what_producers_produce() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chunks.gguf");

    let mut w = GgufWriter::new();
    w.add_tensor(
        "few",
        &[8],
        GgmlType::F32,
        TensorSource::chunks(|sink| sink(&[0; 31])),
    );
    let msg = write_err(&w, &path);
    assert!(
        msg.contains("'few': its data is 31 bytes but [8] F32 needs 32"),
        "{msg}"
    );

    let mut w = GgufWriter::new();
    w.add_tensor(
        "many",
        &[8],
        GgmlType::F32,
        TensorSource::chunks(|sink| sink(&[0; 33])),
    );
    let msg = write_err(&w, &path);
    assert!(
        msg.contains("'many'") && msg.contains("more than the 32 bytes"),
        "{msg}"
    );

    let mut w = GgufWriter::new();
    w.add_tensor(
        "fails",
        &[8],
        GgmlType::F32,
        TensorSource::chunks(|sink| {
            sink(&[0; 16])?;
            Err(std::io::Error::other("generator broke"))
        }),
    );
    match w.write(&path) {
        Err(GgufWriteError::Producer {
            tensor, written, ..
        }) => assert_eq!((tensor.as_str(), written), ("fails", 16)),
        other => panic!("expected a producer error, got {other:?}"),
    }
    assert!(!path.exists() && !tmp_of(&path).exists());
}

#[test]
fn writer_reports_an_unwritable_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no_such_dir").join("x.gguf");
    let e = GgufWriter::new()
        .write(&path)
        .expect_err("missing directory");
    assert!(matches!(e, GgufWriteError::Io { .. }), "{e}");
    assert!(e.to_string().contains("no_such_dir"), "{e}");
}

// --- the reader against damaged files -------------------------------------

/// A small file with known landmarks: keys `test.key_a` / `test.key_b` (u32),
/// tensor `alpha` (Q4_0 [32, 2], 36 bytes, so padding follows it) and tensor
/// `beta` (F32 [8, 2], 64 bytes: the file ends exactly where its data does).
fn small_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("small.gguf");
    let mut w = GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        MetadataValue::String("llama".into()),
    );
    w.add_metadata("test.key_a", MetadataValue::U32(7));
    w.add_metadata("test.key_b", MetadataValue::U32(8));
    w.add_metadata(
        "test.strings",
        MetadataValue::Array(MetadataArray::String(vec!["a".into(), "bc".into()])),
    );
    w.add_tensor(
        "alpha",
        &[32, 2],
        GgmlType::Q4_0,
        TensorSource::Bytes(bytes(36, 9)),
    );
    w.add_tensor(
        "beta",
        &[8, 2],
        GgmlType::F32,
        TensorSource::Bytes(bytes(64, 3)),
    );
    w.write(&path).expect("write small file");
    let data = std::fs::read(&path).expect("read back");
    (path, data)
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in file", String::from_utf8_lossy(needle)))
}

/// Writes `bytes` as a damaged copy, opens it, and returns the error text,
/// which must name the file.
fn open_damaged(dir: &Path, name: &str, bytes: &[u8]) -> (GgufError, String) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write damaged copy");
    let e = GgufFile::open(&path).expect_err(&format!("{name} must be rejected"));
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "{name}: names the file: {msg}"
    );
    (e, msg)
}

fn patch(data: &[u8], at: usize, with: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    d[at..at + with.len()].copy_from_slice(with);
    d
}

#[test]
fn small_file_opens_and_its_landmarks_are_where_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, data) = small_file(dir.path());
    let f = GgufFile::open(&path).expect("open");
    let beta = f.tensor("beta").expect("beta");
    assert_eq!(f.data_offset + beta.offset + beta.size, data.len() as u64);
    assert_eq!(beta.offset, 64, "alpha's 36 bytes are padded to 64");
    assert_eq!(f.get_u64("test.key_a").expect("u32"), Some(7));
}

#[test]
fn bytes_in_memory_parse_like_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, data) = small_file(dir.path());
    let from_file = GgufFile::open(&path).expect("open");
    let from_mem = GgufFile::from_bytes("mem.gguf", &data).expect("from_bytes");
    assert_eq!(from_mem.metadata, from_file.metadata);
    assert_eq!(from_mem.data_offset, from_file.data_offset);
    let beta = from_mem.tensor("beta").expect("beta");
    assert_eq!(
        from_mem.tensor_data(beta),
        from_file.tensor_data(from_file.tensor("beta").expect("beta"))
    );
    // An empty image is a truncation error naming the given path.
    let e = GgufFile::from_bytes("empty.gguf", &[]).expect_err("empty is refused");
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
    assert!(e.to_string().contains("empty.gguf"), "{e}");
}

#[test]
fn every_truncation_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, data) = small_file(dir.path());
    // The file is a few hundred bytes; bound the loop anyway.
    let step = data.len().div_ceil(600).max(1);
    let mut cuts: Vec<usize> = (0..data.len()).step_by(step).collect();
    cuts.push(data.len() - 1);
    for cut in cuts {
        let (e, msg) = open_damaged(dir.path(), "cut.gguf", &data[..cut]);
        let offset_named = matches!(e, GgufError::Truncated { .. } | GgufError::Corrupt { .. });
        assert!(offset_named, "cut at {cut}: {msg}");
    }
}

#[test]
fn bad_magic_and_unsupported_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, data) = small_file(dir.path());
    let (e, msg) = open_damaged(dir.path(), "magic.gguf", &patch(&data, 0, b"GGML"));
    assert!(matches!(e, GgufError::BadMagic { .. }), "{msg}");
    for version in [1u32, 4] {
        let (e, msg) = open_damaged(
            dir.path(),
            "v.gguf",
            &patch(&data, 4, &version.to_le_bytes()),
        );
        assert!(matches!(e, GgufError::UnsupportedVersion { .. }), "{msg}");
        assert!(msg.contains(&format!("version {version}")), "{msg}");
    }
}

#[test]
fn absurd_counts_are_rejected_before_allocating() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, data) = small_file(dir.path());
    let (_, msg) = open_damaged(
        dir.path(),
        "tc.gguf",
        &patch(&data, 8, &(1u64 << 60).to_le_bytes()),
    );
    assert!(
        msg.contains("tensor count") && msg.contains("cannot fit"),
        "{msg}"
    );
    let (_, msg) = open_damaged(
        dir.path(),
        "kc.gguf",
        &patch(&data, 16, &u64::MAX.to_le_bytes()),
    );
    assert!(msg.contains("metadata count"), "{msg}");
    // An array claiming 2^60 strings.
    let at = find(&data, b"test.strings") + "test.strings".len() + 4 + 4;
    let (_, msg) = open_damaged(
        dir.path(),
        "ac.gguf",
        &patch(&data, at, &(1u64 << 60).to_le_bytes()),
    );
    assert!(
        msg.contains("'test.strings'") && msg.contains("cannot fit"),
        "{msg}"
    );
}

#[test]
fn string_length_past_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, data) = small_file(dir.path());
    // The first key's length sits right after the 24-byte header.
    let (e, msg) = open_damaged(
        dir.path(),
        "str.gguf",
        &patch(&data, 24, &(1u64 << 40).to_le_bytes()),
    );
    assert!(
        matches!(e, GgufError::Truncated { offset: 32, .. }),
        "{msg}"
    );
    assert!(msg.contains("metadata key"), "{msg}");
    // A string value inside an array.
    let at = find(&data, b"bc") - 8;
    let (_, msg) = open_damaged(
        dir.path(),
        "elem.gguf",
        &patch(&data, at, &(1u64 << 40).to_le_bytes()),
    );
    assert!(msg.contains("element 1 of array 'test.strings'"), "{msg}");
    assert!(
        msg.contains(&format!("{}", at + 8)),
        "names the offset: {msg}"
    );
}

#[test]
fn unknown_metadata_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, data) = small_file(dir.path());
    let at = find(&data, b"test.key_a") + "test.key_a".len();
    let (e, msg) = open_damaged(
        dir.path(),
        "kind.gguf",
        &patch(&data, at, &99u32.to_le_bytes()),
    );
    assert!(
        matches!(e, GgufError::Corrupt { offset, .. } if offset == at as u64),
        "{msg}"
    );
    assert!(
        msg.contains("'test.key_a'") && msg.contains("unknown metadata type 99"),
        "{msg}"
    );
}

#[test]
fn duplicate_metadata_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, data) = small_file(dir.path());
    let at = find(&data, b"test.key_b");
    let (e, msg) = open_damaged(dir.path(), "dup.gguf", &patch(&data, at, b"test.key_a"));
    assert!(
        matches!(e, GgufError::Corrupt { offset, .. } if offset == at as u64 - 8),
        "{msg}"
    );
    assert!(
        msg.contains("'test.key_a'") && msg.contains("twice"),
        "{msg}"
    );
}

/// Offsets of a tensor's table entry fields: (n_dims, type, offset).
fn tensor_fields(data: &[u8], name: &str, n_dims: usize) -> (usize, usize, usize) {
    let at = find(data, name.as_bytes()) + name.len();
    let type_at = at + 4 + 8 * n_dims;
    (at, type_at, type_at + 4)
}

#[test]
fn tensor_with_five_dimensions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, data) = small_file(dir.path());
    let (dims_at, _, _) = tensor_fields(&data, "alpha", 2);
    let (_, msg) = open_damaged(
        dir.path(),
        "dims.gguf",
        &patch(&data, dims_at, &5u32.to_le_bytes()),
    );
    assert!(
        msg.contains("tensor 'alpha'") && msg.contains("5 dimensions"),
        "{msg}"
    );
    let entry = dims_at - "alpha".len() - 8;
    assert!(msg.contains(&format!("offset {entry}")), "{msg}");
}

#[test]
fn unknown_tensor_type_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, data) = small_file(dir.path());
    let (_, type_at, _) = tensor_fields(&data, "alpha", 2);
    for id in [4u32, 16, 39, u32::MAX] {
        let (e, msg) = open_damaged(
            dir.path(),
            "ty.gguf",
            &patch(&data, type_at, &id.to_le_bytes()),
        );
        assert!(
            matches!(e, GgufError::Tensor { ref tensor, .. } if tensor == "alpha"),
            "{msg}"
        );
        assert!(msg.contains(&format!("element type {id}")), "{msg}");
    }
}

#[test]
fn tensor_data_past_the_end_and_misaligned_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, data) = small_file(dir.path());
    let (_, _, off_at) = tensor_fields(&data, "beta", 2);

    let (e, msg) = open_damaged(
        dir.path(),
        "far.gguf",
        &patch(&data, off_at, &(1u64 << 20).to_le_bytes()),
    );
    assert!(matches!(e, GgufError::Truncated { .. }), "{msg}");
    assert!(msg.contains("data of tensor 'beta'"), "{msg}");

    let (_, msg) = open_damaged(
        dir.path(),
        "wrap.gguf",
        &patch(&data, off_at, &(u64::MAX - 31).to_le_bytes()),
    );
    assert!(msg.contains("data of tensor 'beta'"), "{msg}");

    let (e, msg) = open_damaged(
        dir.path(),
        "mis.gguf",
        &patch(&data, off_at, &65u64.to_le_bytes()),
    );
    assert!(
        matches!(e, GgufError::Tensor { ref tensor, .. } if tensor == "beta"),
        "{msg}"
    );
    assert!(
        msg.contains("offset 65 is not a multiple of the alignment 32"),
        "{msg}"
    );

    let (_, msg) = open_damaged(dir.path(), "short.gguf", &data[..data.len() - 1]);
    assert!(msg.contains("data of tensor 'beta'"), "{msg}");
}

#[test]
fn opens_the_real_smollm2_file() {
    let path = smollm2_path();
    let f = GgufFile::open(&path).expect("open SmolLM2");
    assert_eq!(f.version, 3);
    assert_eq!(f.tensors.len(), 272);
    assert_eq!(
        f.get_str("general.architecture").expect("string"),
        Some("llama")
    );
    let emb = f.tensor("token_embd.weight").expect("token_embd");
    assert_eq!(emb.dtype, GgmlType::Q8_0);
    assert_eq!(emb.dims, vec![576, 49152]);
}
