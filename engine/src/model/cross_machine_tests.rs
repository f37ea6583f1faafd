//! SmolLM2's forward pass as figures another machine can check: the greedy
//! continuation of a fixed prompt and every logit each token was picked
//! from. One build records them (`SHARDLAB_FORWARD_RECORD=FILE`), another
//! compares with them (`SHARDLAB_FORWARD_EXPECT=FILE`): `scripts/test-arm`
//! records on x86-64 and compares under aarch64 emulation, so the NEON
//! kernels and the rest of the forward pass are checked end to end against
//! the x86 build. With neither set, the figures are compared with the same
//! run on one thread. Either way they must be the same bits.

use std::path::Path;

use crate::model::config::ModelConfig;
use crate::model::gguf::GgufModel;
use crate::model::kv_type::KvType;
use crate::model::layout::LocalLayout;
use crate::model::store::testutil::smollm2_path;
use crate::model::transformer::Transformer;
use crate::model::weights::{GgufSource, ModelWeights};

/// "The capital of France is".
const PROMPT: &[u32] = &[504, 3575, 282, 4649, 314];
const STEPS: usize = 8;

// The figures must match bit for bit. Measured: x86-64 with AVX2 and
// emulated aarch64 with NEON, with and without dotprod, give the same 393216
// logits. The kernels sum in the same order on both, nothing fuses a
// multiply and an add, and both sides use glibc's `exp`/`sin`/`cos`; a libm
// that rounds those differently (macOS's) would need a tolerance here.

struct Figures {
    tokens: Vec<u32>,
    /// `STEPS` rows of vocabulary logits: row i picked `tokens[i]`.
    logits: Vec<Vec<f32>>,
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn smollm2() -> (ModelConfig, GgufModel) {
    let gguf = GgufModel::open(smollm2_path()).unwrap();
    let config = ModelConfig::from_gguf(&gguf).unwrap();
    (config, gguf)
}

fn greedy(config: &ModelConfig, gguf: &GgufModel) -> Figures {
    let layout = LocalLayout::whole(config);
    let weights = ModelWeights::load(config, &layout, &GgufSource { file: gguf }).unwrap();
    let mut t = Transformer::new(config.clone(), layout, weights, 64, KvType::F16);
    let mut last = t.forward(PROMPT, 0).unwrap();
    let mut out = Figures {
        tokens: Vec::new(),
        logits: Vec::new(),
    };
    for _ in 0..STEPS {
        let next = argmax(&last);
        out.tokens.push(next);
        let pos = t.position();
        let logits = std::mem::replace(&mut last, t.forward(&[next], pos).unwrap());
        out.logits.push(logits);
    }
    out
}

/// Token count, tokens, then every logit row: little-endian u32 / f32.
fn write(path: &Path, f: &Figures) {
    let mut bytes = Vec::new();
    bytes.extend((f.tokens.len() as u32).to_le_bytes());
    bytes.extend(f.tokens.iter().flat_map(|t| t.to_le_bytes()));
    bytes.extend(f.logits.iter().flatten().flat_map(|x| x.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

fn read(path: &Path, vocab: usize) -> Figures {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let words: Vec<[u8; 4]> = bytes
        .chunks_exact(4)
        .map(|c| c.try_into().unwrap())
        .collect();
    let n = u32::from_le_bytes(words[0]) as usize;
    let tokens = words[1..1 + n]
        .iter()
        .map(|&w| u32::from_le_bytes(w))
        .collect();
    let values: Vec<f32> = words[1 + n..]
        .iter()
        .map(|&w| f32::from_le_bytes(w))
        .collect();
    assert_eq!(values.len(), n * vocab, "{}: truncated", path.display());
    Figures {
        tokens,
        logits: values.chunks(vocab).map(<[f32]>::to_vec).collect(),
    }
}

/// The largest logit difference, and how many logits differ at all.
fn compare(got: &Figures, want: &Figures) -> (f32, usize) {
    let mut max = 0.0f32;
    let mut differ = 0;
    for (g, w) in got
        .logits
        .iter()
        .flatten()
        .zip(want.logits.iter().flatten())
    {
        max = max.max((g - w).abs());
        differ += usize::from(g.to_bits() != w.to_bits());
    }
    (max, differ)
}

#[test]
fn smollm2_forward_matches_the_recorded_machine() {
    let (config, gguf) = smollm2();
    let got = greedy(&config, &gguf);
    let record = std::env::var_os("SHARDLAB_FORWARD_RECORD");
    let expect = std::env::var_os("SHARDLAB_FORWARD_EXPECT");
    if let Some(path) = &record {
        write(Path::new(path), &got);
    }
    let want = match &expect {
        Some(path) => read(Path::new(path), config.vocab),
        None => {
            let one = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            one.install(|| greedy(&config, &gguf))
        }
    };
    let (max, differ) = compare(&got, &want);
    let total = want.logits.iter().map(Vec::len).sum::<usize>();
    eprintln!(
        "greedy {:?} (expected {:?}); {differ} of {total} logits differ, by at most {max:e}",
        got.tokens, want.tokens
    );
    assert_eq!(got.tokens, want.tokens, "greedy tokens");
    assert_eq!(got.logits.len(), STEPS);
    assert_eq!(differ, 0, "logits differ, by at most {max:e}");
}
