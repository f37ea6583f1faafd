//! The MoE forward pass against an independent fact: a mixture whose
//! experts are all copies of one dense FFN, with renormalised top-k
//! weights, computes that dense FFN whatever the router picks. The files
//! are written from a synthetic dense model, so the expert tensors are laid
//! out exactly as GGUF stores them (3-D, experts outermost).
//!
//! Then the layouts: processes holding a share of the experts (expert) or
//! of every expert's columns (tensor), run in threads that sum their
//! partials in rank order as the exact wire does, give one process's tokens.

use crate::model::kv_type::KvType;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};

use crate::model::config::ModelConfig;
use crate::model::error::ModelError;
use crate::model::gguf::writer::{GgufWriter, TensorSource as WriteSource};
use crate::model::gguf::{GgmlType, GgufFile, GgufModel, MetadataValue};
use crate::model::layout::LocalLayout;
use crate::model::loader;
use crate::model::moe::EXPERT_CHUNK;
use crate::model::store::ModelSource;
use crate::model::synth::{synth, SynthArch, SynthOptions};
use crate::model::transformer::{AllReduce, Transformer};
use crate::model::weights::ModelWeights;

const EXPERTS: usize = 4;

/// A dense tiny model, and the same model with its FFN copied into
/// `EXPERTS` experts behind a random router.
fn dense_and_moe(dir: &Path, quant: GgmlType) -> (PathBuf, PathBuf) {
    let mut opts = SynthOptions::preset(SynthArch::Llama, "tiny").expect("preset");
    opts.quant = quant;
    let dense = dir.join("dense.gguf");
    synth(&opts, &dense, &mut |_, _| {}).expect("synth");
    let file = GgufFile::open(&dense).expect("open");
    let mut w = GgufWriter::new();
    for (k, v) in &file.metadata {
        w.add_metadata(k, v.clone());
    }
    w.add_metadata("llama.expert_count", MetadataValue::U32(EXPERTS as u32));
    w.add_metadata("llama.expert_used_count", MetadataValue::U32(2));
    let hidden = opts.hidden as u64;
    for t in &file.tensors {
        let bytes = file.tensor_data(t).to_vec();
        let stacked = |name: &str| {
            let mut dims = t.dims.clone();
            dims.push(EXPERTS as u64);
            let data = bytes.repeat(EXPERTS);
            (name.replace(".weight", "_exps.weight"), dims, data)
        };
        if t.name.contains(".ffn_gate.")
            || t.name.contains(".ffn_up.")
            || t.name.contains(".ffn_down.")
        {
            let (name, dims, data) = stacked(&t.name);
            w.add_tensor(&name, &dims, t.dtype, WriteSource::Bytes(data));
            if t.name.contains(".ffn_gate.") {
                let router: Vec<u8> = (0..hidden as usize * EXPERTS)
                    .flat_map(|i| (((i * 7919) % 101) as f32 / 50.0 - 1.0).to_le_bytes())
                    .collect();
                w.add_tensor(
                    &t.name.replace("ffn_gate.weight", "ffn_gate_inp.weight"),
                    &[hidden, EXPERTS as u64],
                    GgmlType::F32,
                    WriteSource::Bytes(router),
                );
            }
        } else {
            w.add_tensor(&t.name, &t.dims, t.dtype, WriteSource::Bytes(bytes));
        }
    }
    let moe = dir.join("moe.gguf");
    w.write(&moe).expect("write moe");
    (dense, moe)
}

fn logits(path: &Path, tokens: &[u32]) -> Vec<f32> {
    let mut m =
        loader::load(&ModelSource::Gguf(path.to_path_buf()), 64, KvType::F32).expect("load");
    m.transformer.forward(tokens, 0).expect("forward")
}

#[test]
fn identical_experts_compute_the_dense_ffn() {
    let dir = tempfile::tempdir().expect("tempdir");
    for quant in [GgmlType::Q8_0, GgmlType::Q4K] {
        let (dense, moe) = dense_and_moe(dir.path(), quant);
        let file = GgufModel::open(&moe).expect("open");
        let config = ModelConfig::from_gguf(&file).expect("config");
        let m = config
            .moe
            .as_ref()
            .expect("a llama file with experts is MoE");
        assert_eq!((m.n_experts, m.n_experts_used, m.expert_ffn), (4, 2, 512));
        assert!(m.norm_topk && !m.shared_expert);
        let tokens = [5, 77, 200, 31, 9, 150];
        let (a, b) = (logits(&dense, &tokens), logits(&moe, &tokens));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "{quant}: logits differ by {worst}");
    }
}

#[test]
fn one_process_holds_each_expert_as_a_view_of_one_stack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, moe) = dense_and_moe(dir.path(), GgmlType::Q4_0);
    let m = loader::load(&ModelSource::Gguf(moe), 64, KvType::F32).expect("load");
    let layer = &m.transformer.weights().layers[0];
    let experts = layer.moe.as_ref().expect("MoE layer");
    assert!(layer.ffn.is_none(), "a MoE layer has no dense FFN");
    assert_eq!(experts.per_expert.len(), EXPERTS);
    let stacked = experts.stacked.as_ref().expect("owned experts");
    // Interleaved at load where this CPU runs that layout, else the file's
    // pages; either way one copy.
    let interleaves = crate::kernels::interleave::runs_here(crate::kernels::QuantType::Q4_0);
    let stacks = [&stacked.gate, &stacked.up, &stacked.down];
    for s in stacks {
        assert_eq!(s.data.is_interleaved(), interleaves);
        if !interleaves {
            assert!(matches!(s.data, crate::kernels::WeightBytes::Mapped { .. }));
        }
    }
    for (e, ffn) in experts.per_expert.iter().enumerate() {
        for (w, s) in [&ffn.gate, &ffn.up, &ffn.down].into_iter().zip(stacks) {
            let (whole, part): (&[u8], &[u8]) = (&s.data, &w.data);
            let at = part.as_ptr() as usize - whole.as_ptr() as usize;
            assert_eq!(
                (at, part.len()),
                (e * part.len(), whole.len() / EXPERTS),
                "expert {e} must be its own rows of the stack"
            );
        }
    }
}

/// Sums every rank's partials in rank order, all ranks in threads of one
/// process: the exact wire without the wire.
struct ThreadReduce {
    rank: usize,
    slots: Arc<Mutex<Vec<Vec<f64>>>>,
    barrier: Arc<Barrier>,
}

impl AllReduce for ThreadReduce {
    fn all_reduce(&mut self, buf: &mut [f64]) -> Result<(), ModelError> {
        self.slots.lock().expect("slots")[self.rank] = buf.to_vec();
        self.barrier.wait();
        {
            let slots = self.slots.lock().expect("slots");
            buf.copy_from_slice(&slots[0]);
            for s in &slots[1..] {
                for (b, v) in buf.iter_mut().zip(s) {
                    *b += v;
                }
            }
        }
        self.barrier.wait();
        Ok(())
    }
}

/// Greedy tokens from `layouts` run together, one thread each; the last
/// layout holds the whole output head.
fn greedy_across(path: &Path, layouts: Vec<LocalLayout>, prompt: &[u32], n: usize) -> Vec<u32> {
    let file = GgufModel::open(path).expect("open");
    let config = ModelConfig::from_gguf(&file).expect("config");
    let ranks = layouts.len();
    let slots = Arc::new(Mutex::new(vec![Vec::new(); ranks]));
    let barrier = Arc::new(Barrier::new(ranks));
    let handles: Vec<_> = layouts
        .into_iter()
        .enumerate()
        .map(|(rank, layout)| {
            let weights = ModelWeights::load(&config, &layout, &file).expect("weights");
            let mut t = Transformer::new(config.clone(), layout, weights, 64, KvType::F32);
            let mut reduce = ThreadReduce {
                rank,
                slots: slots.clone(),
                barrier: barrier.clone(),
            };
            let prompt = prompt.to_vec();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut tokens = prompt;
                let mut pos = 0;
                for _ in 0..n {
                    let mut x = t.embed(&tokens).expect("embed");
                    t.forward_layers(&mut x, tokens.len(), pos, &mut reduce)
                        .expect("layers");
                    pos += tokens.len();
                    let h = t.config().hidden;
                    let last = &x[(tokens.len() - 1) * h..];
                    let logits = t.head(last).expect("head");
                    let next = argmax(&logits);
                    out.push(next);
                    tokens = vec![next];
                }
                out
            })
        })
        .collect();
    let mut results: Vec<Vec<u32>> = handles
        .into_iter()
        .map(|h| h.join().expect("rank"))
        .collect();
    results.pop().expect("a rank")
}

#[test]
fn expert_and_tensor_splits_match_one_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, moe) = dense_and_moe(dir.path(), GgmlType::Q8_0);
    // Different experts per token, so the expert split really divides work.
    let file = GgufModel::open(&moe).expect("open");
    let config = ModelConfig::from_gguf(&file).expect("config");
    let prompt = [5, 77, 200, 31];
    let whole = LocalLayout::whole(&config);
    let one = greedy_across(&moe, vec![whole.clone()], &prompt, 8);
    type R = std::ops::Range<usize>;
    // Every rank computes the whole output head; the last one's is used.
    let split = |heads: Vec<R>, experts: Vec<R>, cols: Vec<R>| {
        heads
            .into_iter()
            .zip(experts)
            .zip(cols)
            .map(|((q_heads, experts), expert_ffn)| LocalLayout {
                q_heads,
                experts,
                expert_ffn,
                ..whole.clone()
            })
            .collect::<Vec<_>>()
    };
    // Expert layout over 3: 2 + 1 + 1 experts; tensor layout over 2: 256 columns each.
    let by_expert = greedy_across(
        &moe,
        split(
            vec![0..2, 2..3, 3..4],
            vec![0..2, 2..3, 3..4],
            vec![0..512, 0..512, 0..512],
        ),
        &prompt,
        8,
    );
    assert_eq!(by_expert, one, "expert layout");
    let by_cols = greedy_across(
        &moe,
        split(vec![0..2, 2..4], vec![0..4, 0..4], vec![0..256, 256..512]),
        &prompt,
        8,
    );
    assert_eq!(by_cols, one, "tensor layout");
    // Expert layout with every head on every node: attention is not summed.
    let replicated: Vec<LocalLayout> =
        split(vec![0..4, 0..4], vec![0..3, 3..4], vec![0..512, 0..512])
            .into_iter()
            .map(|l| LocalLayout {
                replicated_attention: true,
                ..l
            })
            .collect();
    let by_expert_replicated = greedy_across(&moe, replicated, &prompt, 8);
    assert_eq!(
        by_expert_replicated, one,
        "expert layout, attention replicated"
    );
}

/// A prompt whose experts each get more than [`EXPERT_CHUNK`] tokens runs
/// them in chunks; the logits must be the bits of feeding it token by token.
#[test]
fn experts_chunked_in_a_long_batch_give_the_token_by_token_logits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, moe) = dense_and_moe(dir.path(), GgmlType::Q4_0);
    // Two of four experts per token: 3 x 64 tokens put more than one chunk
    // on at least one expert.
    let tokens: Vec<u32> = (0..3 * EXPERT_CHUNK as u32)
        .map(|i| (i * 37) % 300)
        .collect();
    let source = ModelSource::Gguf(moe);
    let mut batch = loader::load(&source, 256, KvType::F32).expect("load");
    let at_once = batch.transformer.forward(&tokens, 0).expect("forward");
    let mut single = loader::load(&source, 256, KvType::F32).expect("load");
    let mut last = Vec::new();
    for (pos, &t) in tokens.iter().enumerate() {
        last = single.transformer.forward(&[t], pos).expect("forward");
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&at_once), bits(&last));
}

/// The first index of the largest logit.
fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best as u32
}
