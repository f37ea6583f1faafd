//! Writes the seed corpus under `fuzz/corpus/<target>/` from the engine's own
//! writers (GGUF writer, synthetic models, frame and header encoders), so the
//! seeds are valid inputs of the current formats. Run by hand when a format
//! changes (fuzz/README.md); the output is committed.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use shardlab_engine::cluster::heartbeat::Liveness;
use shardlab_engine::cluster::messages::{
    CachedShard, ExpertMetrics, FromNode, LoadRequest, LoadedReport, LocalFileMiss, LocalModel,
    NodeInfo, NodeMetrics, PeerAddr, PeerPlan, PeerTraffic, Phase, Span, SpanKind, StepMetrics,
    StepSegment, TensorMeta, ToNode,
};
use shardlab_engine::model::config::ModelConfig;
use shardlab_engine::model::gguf::writer::{GgufWriter, TensorSource};
use shardlab_engine::model::gguf::{GgmlType, GgufModel, MetadataArray, MetadataValue};
use shardlab_engine::model::hf::config::{config_to_json, SpecialIds};
use shardlab_engine::model::hf::safetensors::{write_header, StEntry};
use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::model::layout::LocalLayout;
use shardlab_engine::model::synth::{synth, SynthArch, SynthOptions};
use shardlab_engine::net::frame::{Frame, TensorDtype, TensorHeader};
use shardlab_engine::net::{Connection, LinkSecurity};
use shardlab_engine::parallel::WireDtype;
use shardlab_repl::command::COMMANDS;

struct Out {
    root: PathBuf,
}

impl Out {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    }
}

/// A small synthetic model: one layer, hidden 32, the smallest vocabulary.
fn small_model(arch: SynthArch, quant: GgmlType, tmp: &Path) -> Result<(Vec<u8>, PathBuf)> {
    let mut o = SynthOptions::preset(arch, "tiny")?;
    o.layers = 1;
    o.hidden = 32;
    o.heads = 2;
    o.kv_heads = 1;
    o.ffn = 32;
    o.vocab = 268;
    o.context = 64;
    o.quant = quant;
    let path = tmp.join(format!("{arch}-{}.gguf", quant.name()));
    synth(&o, &path, &mut |_, _| {})?;
    Ok((std::fs::read(&path)?, path))
}

/// A GGUF holding only `meta` (no tensors): what the tokenizer reads.
fn metadata_only(meta: &[(String, MetadataValue)], tmp: &Path) -> Result<Vec<u8>> {
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add_metadata(k, v.clone());
    }
    let path = tmp.join("meta.gguf");
    w.write(&path)?;
    Ok(std::fs::read(&path)?)
}

/// The tokenizer target's input: u16 text length, text, GGUF.
fn tokenizer_input(text: &str, gguf: &[u8]) -> Vec<u8> {
    let mut v = (text.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(text.as_bytes());
    v.extend_from_slice(gguf);
    v
}

/// A SentencePiece-style ("llama") vocabulary: unk, bos, eos, byte
/// fallback tokens, then a few scored pieces.
fn spm_metadata() -> Vec<(String, MetadataValue)> {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    for p in [
        "▁", "▁the", "▁a", "he", "th", "in", "▁t", "e", "t", "h", "a", "n", "i",
    ] {
        tokens.push(p.to_string());
        types.push(1);
    }
    let scores: Vec<f32> = (0..tokens.len()).map(|i| -(i as f32)).collect();
    vec![
        (
            "tokenizer.ggml.model".into(),
            MetadataValue::String("llama".into()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            MetadataValue::Array(MetadataArray::String(tokens)),
        ),
        (
            "tokenizer.ggml.scores".into(),
            MetadataValue::Array(MetadataArray::F32(scores)),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            MetadataValue::Array(MetadataArray::I32(types)),
        ),
        ("tokenizer.ggml.bos_token_id".into(), MetadataValue::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), MetadataValue::U32(2)),
        (
            "tokenizer.ggml.unknown_token_id".into(),
            MetadataValue::U32(0),
        ),
        (
            "tokenizer.ggml.add_bos_token".into(),
            MetadataValue::Bool(true),
        ),
    ]
}

fn gguf_and_tokenizer_seeds(out: &Out, tmp: &Path) -> Result<ModelConfig> {
    let mut config = None;
    for (arch, quant) in [
        (SynthArch::Llama, GgmlType::Q8_0),
        (SynthArch::Qwen2, GgmlType::Q4_0),
        (SynthArch::Qwen3, GgmlType::F16),
    ] {
        let (bytes, path) = small_model(arch, quant, tmp)?;
        out.put("gguf", &format!("{arch}-{}.gguf", quant.name()), &bytes)?;
        let file = GgufModel::open(&path)?;
        config.get_or_insert(ModelConfig::from_gguf(&file)?);
        if arch == SynthArch::Llama {
            let tok: Vec<(String, MetadataValue)> = file
                .metadata()
                .iter()
                .filter(|(k, _)| k.starts_with("tokenizer."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (pre, text) in [
                ("default", "Hello there, the answer is 42."),
                ("llama-bpe", "<|im_start|>user\nhi 12345<|im_end|>"),
                ("qwen2", " the  in\ton er\r\n  über 😀"),
                ("smollm", "x = 1234 + 56;"),
            ] {
                let mut meta = tok.clone();
                for (k, v) in &mut meta {
                    if k == "tokenizer.ggml.pre" {
                        *v = MetadataValue::String(pre.into());
                    }
                }
                let g = metadata_only(&meta, tmp)?;
                out.put(
                    "tokenizer",
                    &format!("gpt2-{pre}"),
                    &tokenizer_input(text, &g),
                )?;
            }
        }
    }
    let spm = metadata_only(&spm_metadata(), tmp)?;
    out.put(
        "tokenizer",
        "spm",
        &tokenizer_input("the hat\n\u{1F600} é", &spm),
    )?;

    // Every metadata kind, nested arrays and several tensor types.
    let mut w = GgufWriter::new();
    let v = MetadataValue::Array;
    let kinds = [
        (
            "general.architecture",
            MetadataValue::String("llama".into()),
        ),
        ("general.alignment", MetadataValue::U32(64)),
        ("k.u8", MetadataValue::U8(1)),
        ("k.i8", MetadataValue::I8(-1)),
        ("k.u16", MetadataValue::U16(2)),
        ("k.i16", MetadataValue::I16(-2)),
        ("k.u32", MetadataValue::U32(3)),
        ("k.i32", MetadataValue::I32(-3)),
        ("k.f32", MetadataValue::F32(0.5)),
        ("k.bool", MetadataValue::Bool(true)),
        ("k.u64", MetadataValue::U64(4)),
        ("k.i64", MetadataValue::I64(-4)),
        ("k.f64", MetadataValue::F64(0.25)),
        ("k.bools", v(MetadataArray::Bool(vec![true, false]))),
        ("k.u16s", v(MetadataArray::U16(vec![1, 2]))),
        (
            "k.nested",
            v(MetadataArray::Array(vec![
                MetadataArray::U8(vec![1, 2]),
                MetadataArray::String(vec!["s".into()]),
            ])),
        ),
    ];
    for (k, val) in kinds {
        w.add_metadata(k, val);
    }
    for (name, dims, dtype, len) in [
        ("f32", vec![4u64, 2], GgmlType::F32, 32usize),
        ("q4_0", vec![32], GgmlType::Q4_0, 18),
        ("q4_k", vec![256], GgmlType::Q4K, 144),
        ("q6_k", vec![256], GgmlType::Q6K, 210),
        ("bf16", vec![2], GgmlType::BF16, 4),
    ] {
        let data = (0..len).map(|i| (i * 37 % 251) as u8).collect();
        w.add_tensor(name, &dims, dtype, TensorSource::Bytes(data));
    }
    let path = tmp.join("kinds.gguf");
    w.write(&path)?;
    out.put("gguf", "every-kind.gguf", &std::fs::read(&path)?)?;
    config.context("no model config")
}

fn to_node(config: &ModelConfig) -> Vec<ToNode> {
    let layout = LocalLayout::whole(config);
    vec![
        ToNode::Info,
        ToNode::Load(Box::new(LoadRequest {
            session: "s1".into(),
            model_name: "tiny".into(),
            model_file: Some(LocalModel {
                file_name: "tiny.gguf".into(),
                bytes: 123_456,
            }),
            config: config.clone(),
            layout,
            context: 64,
            kv: KvType::Q8_0,
            tensors: vec![TensorMeta {
                name: "blk.0.attn_q.weight".into(),
                dtype: 8,
                rows: 32,
                cols: 32,
                bytes: 1088,
                sha256: "ab".repeat(32),
            }],
            shard_key: "cd".repeat(32),
        })),
        ToNode::TensorChunk {
            index: 3,
            offset: 4096,
            len: 1 << 20,
        },
        ToNode::LoadFinish,
        ToNode::ConnectPeers(PeerPlan {
            session: "s1".into(),
            me: 1,
            group: vec![PeerAddr {
                index: 0,
                name: "node0".into(),
                addr: "127.0.0.1:7001".into(),
            }],
            prev: None,
            next: Some(PeerAddr {
                index: 2,
                name: "node2".into(),
                addr: "[::1]:7002".into(),
            }),
            wire: WireDtype::F16,
            liveness: Liveness::After { ms: 1500 },
            security: LinkSecurity::Sealed,
        }),
        ToNode::Step {
            pos: 7,
            tokens: vec![1, 2, 3],
            seq: 1,
        },
        ToNode::StepMany {
            segments: vec![
                StepSegment {
                    seq: 0,
                    pos: 12,
                    tokens: vec![9],
                    logits: true,
                },
                StepSegment {
                    seq: 2,
                    pos: 0,
                    tokens: vec![4, 5, 6],
                    logits: false,
                },
            ],
        },
        ToNode::Truncate { pos: 4, seq: 1 },
        ToNode::Metrics,
        ToNode::ResetMetrics,
        ToNode::Ping,
        ToNode::Absorb { bytes: 1 << 20 },
        ToNode::Emit { bytes: 64 },
        ToNode::Unload,
        ToNode::Bye,
    ]
}

fn from_node() -> Vec<FromNode> {
    vec![
        FromNode::Info(NodeInfo {
            name: "node0".into(),
            version: "0.1.0".into(),
            protocol: 1,
            hostname: "box".into(),
            listen: "127.0.0.1:7001".into(),
            cores: 2,
            threads: 2,
            mem_total: 24 << 30,
            mem_free: 8 << 30,
            budget: 4 << 30,
            cached_shards: vec![CachedShard {
                key: "ab".repeat(32),
                model: "tiny".into(),
                bytes: 4096,
            }],
            local_models: vec![LocalModel {
                file_name: "tiny.gguf".into(),
                bytes: 123_456,
            }],
            link: None,
        }),
        FromNode::NeedTensors {
            missing: vec![0, 5],
            cached: false,
        },
        FromNode::Loaded(LoadedReport {
            weight_bytes: 1000,
            received_bytes: 900,
            from_cache: false,
            from_local_file: true,
            seconds: 0.125,
            rss: 1 << 24,
            local_file_miss: None,
        }),
        FromNode::Loaded(LoadedReport {
            weight_bytes: 1000,
            received_bytes: 1000,
            from_cache: false,
            from_local_file: false,
            seconds: 0.5,
            rss: 1 << 24,
            local_file_miss: Some(LocalFileMiss::OtherSize {
                dir: "/models".into(),
                file: "m.gguf".into(),
                have: 999,
                want: 1000,
            }),
        }),
        FromNode::PeersReady,
        FromNode::StepDone {
            logits: true,
            metrics: StepMetrics {
                tokens: 3,
                compute_seconds: 0.01,
                wait_seconds: 0.002,
                bytes_sent: 512,
                bytes_received: 256,
                spans: vec![Span {
                    kind: SpanKind::Wait,
                    start: 0.001,
                    seconds: 1e-4,
                }],
                resident_bytes: 1 << 24,
            },
        },
        FromNode::Metrics(NodeMetrics {
            rss: 1,
            peak_rss: 2,
            weight_bytes: 2,
            kv_bytes: 3,
            budget: 4,
            steps: 5,
            compute_seconds: 6.5,
            wait_seconds: 7.25,
            traffic: vec![PeerTraffic {
                peer: "node1".into(),
                bytes_sent: 8,
                bytes_received: 9,
                waited_seconds: 0.5,
            }],
            allreduce_seconds: vec![0.001, 0.002],
            hop_seconds: vec![0.003],
            experts: Some(ExpertMetrics {
                owned: 0..4,
                routed: 10,
                total: 16,
            }),
        }),
        FromNode::LogitRows { rows: 2 },
        FromNode::Pong,
        FromNode::Ok,
        FromNode::error(Phase::Load, "tensor 'x': \"quoted\" \u{1F600}"),
        FromNode::Error {
            phase: Phase::Prefill,
            message: "node1 (127.0.0.1:7071) closed the connection".into(),
            peer_closed: true,
        },
    ]
}

fn message_and_frame_seeds(out: &Out, config: &ModelConfig) -> Result<()> {
    let mut frames: Vec<u8> = Vec::new();
    for (i, m) in to_node(config).iter().enumerate() {
        let json = serde_json::to_vec(m)?;
        out.put("message", &format!("to-node-{i:02}"), &json)?;
        Frame::Control(json).encode(&mut frames)?;
    }
    for (i, m) in from_node().iter().enumerate() {
        out.put(
            "message",
            &format!("from-node-{i:02}"),
            &serde_json::to_vec(m)?,
        )?;
    }
    out.put("frame", "control-stream", &frames)?;
    for (i, (dtype, dims)) in [
        (TensorDtype::F32, vec![2u64, 3]),
        (TensorDtype::F16, vec![]),
        (TensorDtype::Bf16, vec![4]),
        (TensorDtype::Bytes, vec![5, 1, 1]),
    ]
    .into_iter()
    .enumerate()
    {
        let header = TensorHeader::new(dtype, &dims, 40 + i as u32)?;
        let len = usize::try_from(header.data_len()?)?;
        let mut th = Vec::new();
        header.encode(&mut th);
        out.put("message", &format!("tensor-header-{i}"), &th)?;
        let mut f = Vec::new();
        Frame::Tensor {
            header,
            data: (0..len).map(|b| b as u8).collect(),
        }
        .encode(&mut f)?;
        out.put("frame", &format!("tensor-{}", dtype.name()), &f)?;
    }
    Ok(())
}

/// What a sealed client sends (the `sealed` target's keys: its token and
/// zero nonces): control messages, a tensor, then its close frame.
fn sealed_seeds(out: &Out, config: &ModelConfig) -> Result<()> {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let stream = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (mut raw, _) = listener.accept()?;
    let mut client = Connection::from_stream(stream, "seeds")?;
    if !client.seal_with_fixed_nonces(b"fuzz-token", true) {
        bail!("cannot seal with the fuzz token");
    }
    for m in to_node(config).iter().take(3) {
        client.send_control(m)?;
    }
    let header = TensorHeader::new(TensorDtype::F32, &[2, 3], 7)?;
    client.send_tensor(&header, &[1; 24])?;
    drop(client);
    let mut bytes = Vec::new();
    raw.read_to_end(&mut bytes)?;
    out.put("sealed", "stream", &bytes)
}

fn safetensors_seeds(out: &Out, config: &ModelConfig) -> Result<()> {
    let entries = [
        ("model.embed_tokens.weight", "F32", vec![4usize, 2], 32u64),
        ("model.norm.weight", "F16", vec![4], 8),
        ("lm_head.weight", "BF16", vec![2, 2], 8),
    ];
    let entries: Vec<StEntry> = entries
        .into_iter()
        .map(|(name, dtype, shape, len)| StEntry {
            name: name.into(),
            dtype,
            shape,
            len,
        })
        .collect();
    let mut file = Vec::new();
    write_header(&mut file, &entries)?;
    let data: u64 = entries.iter().map(|e| e.len).sum();
    file.extend((0..data).map(|i| (i * 13 % 256) as u8));
    out.put("safetensors", "three-tensors.safetensors", &file)?;
    // Integer and fp8 entries, which validate but the engine does not run.
    let header = br#"{"__metadata__":{"format":"pt"},"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"f8":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[16,19]}}"#;
    let mut other = (header.len() as u64).to_le_bytes().to_vec();
    other.extend_from_slice(header);
    other.extend_from_slice(&[7; 19]);
    out.put("safetensors", "other-dtypes.safetensors", &other)?;
    let json = config_to_json(
        Path::new("seed.gguf"),
        config,
        "float32",
        SpecialIds {
            bos: Some(1),
            eos: Some(2),
            pad: None,
        },
    )?;
    out.put(
        "safetensors",
        "config.json",
        &serde_json::to_vec_pretty(&json)?,
    )?;
    Ok(())
}

/// Transcripts are copied as they are; every `> ` line and every command's
/// usage line becomes a command seed.
fn repl_seeds(out: &Out, transcripts: &Path) -> Result<()> {
    let mut lines = BTreeMap::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(transcripts)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no transcripts in {}", transcripts.display());
    }
    for p in names {
        let text = std::fs::read_to_string(&p)?;
        let name = p.file_name().map(|n| n.to_string_lossy().to_string());
        out.put("transcript", &name.unwrap_or_default(), text.as_bytes())?;
        for l in text.lines().filter_map(|l| l.strip_prefix("> ")) {
            lines.insert(l.to_string(), ());
        }
    }
    for spec in COMMANDS {
        lines.insert(spec.usage.to_string(), ());
    }
    for extra in [
        "\"\"\"\n:quit\nsecond line\n\"\"\"",
        "\\:not a command",
        ":set temperature 0.7",
        ":connect local 2 --mem 1GiB,2GiB --threads 1",
        ":plan hybrid 2x2 --layers 0..3,3..6",
    ] {
        lines.insert(extra.to_string(), ());
    }
    for (i, l) in lines.keys().enumerate() {
        out.put("command", &format!("line-{i:03}"), l.as_bytes())?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: seeds CORPUS_DIR")?;
    let out = Out { root };
    let tmp = tempfile::tempdir()?;
    let config = gguf_and_tokenizer_seeds(&out, tmp.path())?;
    message_and_frame_seeds(&out, &config)?;
    sealed_seeds(&out, &config)?;
    safetensors_seeds(&out, &config)?;
    let transcripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../transcripts");
    repl_seeds(&out, &transcripts)?;
    Ok(())
}
