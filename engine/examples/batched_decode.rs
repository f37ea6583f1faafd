//! Decode rate of K sequences on SmolLM2 in this process: batched (one
//! forward pass per step for all, `LocalSequences::step_many`) against one
//! by one (a batch of one sequence at a time).
//!
//! `cargo run -p shardlab-engine --example batched_decode [K] [STEPS]`

use std::time::Instant;

use shardlab_engine::model::generate::{SeqStep, SequenceBackend};
use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::model::loader;
use shardlab_engine::model::local_sequences::{LocalSequences, ParkedCaches};
use shardlab_engine::model::store::{default_model_path, ModelSource};

/// Any error, printed.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs `steps` decode steps of `k` sequences after a 16-token prefill
/// each; returns decoded tokens per second.
fn rate(seqs: &mut LocalSequences, k: u32, steps: usize, batched: bool) -> Result<f64> {
    for seq in 0..k {
        seqs.reset(seq)?;
        let prompt: Vec<u32> = (0..16).map(|i| 100 + i * 37 + seq * 5).collect();
        seqs.step_many(&[SeqStep {
            seq,
            tokens: prompt,
            pos: 0,
        }])?;
    }
    let started = Instant::now();
    for t in 0..steps {
        let step: Vec<SeqStep> = (0..k)
            .map(|seq| SeqStep {
                seq,
                tokens: vec![200 + seq + t as u32],
                pos: 16 + t,
            })
            .collect();
        if batched {
            seqs.step_many(&step)?;
        } else {
            for s in step {
                seqs.step_many(&[s])?;
            }
        }
    }
    Ok((k as usize * steps) as f64 / started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let k: u32 = args.next().map_or(Ok(4), |a| a.parse())?;
    let steps: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let path = default_model_path()?;
    let mut model = loader::load(&ModelSource::Gguf(path), 256, KvType::F16)?.transformer;
    let mut parked = ParkedCaches::default();
    let mut seqs = LocalSequences::new(&mut model, &mut parked);
    // Warm the weights into memory first.
    rate(&mut seqs, k, 4, true)?;
    let one_by_one = rate(&mut seqs, k, steps, false)?;
    let batched = rate(&mut seqs, k, steps, true)?;
    println!(
        "SmolLM2, {k} sequences, {steps} decode steps: one by one {one_by_one:.1} tok/s, batched {batched:.1} tok/s ({:.2}x)",
        batched / one_by_one
    );
    Ok(())
}
