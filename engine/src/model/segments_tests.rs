//! Batched steps against each sequence run alone: bit for bit, on SmolLM2
//! and on a synthetic MoE (shared expert, biases) whose batch spans more
//! than one pass of `PREFILL_BATCH` rows.

use std::path::Path;

use super::{passes, Piece};
use crate::model::error::ModelError;
use crate::model::generate::{SeqStep, SequenceBackend};
use crate::model::kv_type::KvType;
use crate::model::loader;
use crate::model::local_sequences::{LocalSequences, ParkedCaches};
use crate::model::store::testutil::smollm2_path;
use crate::model::store::ModelSource;
use crate::model::synth::{synth, SynthArch, SynthOptions};
use crate::model::transformer::Transformer;

/// Each step: (sequence, tokens it runs). Sequences join and leave.
type Schedule = Vec<Vec<(u32, usize)>>;

fn load(path: &Path, context: usize) -> Transformer {
    loader::load(&ModelSource::Gguf(path.to_path_buf()), context, KvType::F16)
        .expect("load")
        .transformer
}

/// Sequence `seq`'s token ids, deterministic and inside `vocab`.
fn ids(seq: u32, n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 7919 + seq as usize * 104_729 + 11) % vocab) as u32)
        .collect()
}

/// The steps of `schedule` with positions, one `SeqStep` list per step.
fn steps(schedule: &Schedule, vocab: usize) -> Vec<Vec<SeqStep>> {
    let mut at = std::collections::HashMap::new();
    schedule
        .iter()
        .map(|step| {
            step.iter()
                .map(|&(seq, n)| {
                    let pos: &mut usize = at.entry(seq).or_default();
                    let all = ids(seq, *pos + n, vocab);
                    let s = SeqStep {
                        seq,
                        tokens: all[*pos..].to_vec(),
                        pos: *pos,
                    };
                    *pos += n;
                    s
                })
                .collect()
        })
        .collect()
}

/// Runs `schedule` batched on `batched` and each sequence alone on
/// `alone` (`Transformer::forward`, one sequence after another), and
/// asserts every logits row is the same bits.
fn batched_equals_alone(batched: &mut Transformer, alone: &mut Transformer, schedule: &Schedule) {
    let vocab = batched.config().vocab;
    let plan = steps(schedule, vocab);
    let mut got = Vec::new();
    {
        let mut parked = ParkedCaches::default();
        let mut seqs = LocalSequences::new(batched, &mut parked);
        for step in &plan {
            let logits = seqs.step_many(step).expect("batched step");
            assert_eq!(logits.len(), step.len());
            got.push(logits);
        }
    }
    let mut ids: Vec<u32> = plan.iter().flatten().map(|s| s.seq).collect();
    ids.sort_unstable();
    ids.dedup();
    for seq in ids {
        alone.truncate(0);
        for (k, step) in plan.iter().enumerate() {
            let Some(i) = step.iter().position(|s| s.seq == seq) else {
                continue;
            };
            let want = alone
                .forward(&step[i].tokens, step[i].pos)
                .expect("forward alone");
            let same = want
                .iter()
                .zip(&got[k][i])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same && want.len() == got[k][i].len(),
                "step {k}, sequence {seq} (pos {}, {} tokens): batched logits differ from the sequence alone",
                step[i].pos,
                step[i].tokens.len()
            );
        }
    }
}

#[test]
fn passes_hold_at_most_a_prefill_batch_and_cut_segments_in_order() {
    // 3 + 600 + 1 + 700 rows: the 600-row segment spans two passes.
    let cut = passes(&[(0, 3), (10, 600), (5, 1), (0, 700)]);
    let rows: Vec<usize> = cut.iter().map(|p| p.iter().map(|x| x.rows).sum()).collect();
    assert_eq!(rows, vec![512, 512, 280]);
    assert_eq!(
        cut[0],
        vec![
            Piece {
                segment: 0,
                pos: 0,
                rows: 3
            },
            Piece {
                segment: 1,
                pos: 10,
                rows: 509
            }
        ]
    );
    assert_eq!(
        cut[1],
        vec![
            Piece {
                segment: 1,
                pos: 519,
                rows: 91
            },
            Piece {
                segment: 2,
                pos: 5,
                rows: 1
            },
            Piece {
                segment: 3,
                pos: 0,
                rows: 420
            }
        ]
    );
    assert_eq!(
        cut[2],
        vec![Piece {
            segment: 3,
            pos: 420,
            rows: 280
        }]
    );
}

#[test]
fn smollm2_batched_steps_equal_each_sequence_alone() {
    let path = smollm2_path();
    let (mut batched, mut alone) = (load(&path, 256), load(&path, 256));
    // Prefills and decodes in one step; sequence 3 joins late, 1 leaves;
    // the last step's 10 sequences take two groups of head rows.
    let schedule: Schedule = vec![
        vec![(0, 5), (1, 13), (2, 1)],
        vec![(0, 1), (1, 1), (2, 7), (3, 20)],
        vec![(2, 1), (0, 1), (3, 1)],
        vec![(3, 1), (2, 1), (0, 1)],
        (4..11)
            .map(|s| (s, 1 + s as usize % 3))
            .chain([(0, 1), (2, 1), (3, 1)])
            .collect(),
    ];
    batched_equals_alone(&mut batched, &mut alone, &schedule);
}

#[test]
fn moe_batched_steps_over_several_passes_equal_each_sequence_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = SynthOptions::preset(SynthArch::Qwen2Moe, "moe-tiny").expect("preset");
    opts.context = 1024;
    let file = dir.path().join("moe.gguf");
    synth(&opts, &file, &mut |_, _| {}).expect("synth");
    let (mut batched, mut alone) = (load(&file, 1024), load(&file, 1024));
    // 300 + 250 rows: the second segment crosses the first pass's end.
    let schedule: Schedule = vec![
        vec![(0, 300), (1, 250), (2, 3)],
        vec![(1, 1), (2, 1), (0, 1)],
        vec![(0, 600), (2, 1)],
    ];
    batched_equals_alone(&mut batched, &mut alone, &schedule);
}

#[test]
fn a_bad_step_runs_nothing_and_names_its_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SynthOptions::preset(SynthArch::Llama, "tiny").expect("preset");
    let file = dir.path().join("tiny.gguf");
    synth(&opts, &file, &mut |_, _| {}).expect("synth");
    let (mut batched, mut alone) = (load(&file, 32), load(&file, 32));
    let vocab = batched.config().vocab;
    let step = |seq, pos, n| SeqStep {
        seq,
        tokens: ids(seq, pos + n, vocab)[pos..].to_vec(),
        pos,
    };
    let mut parked = ParkedCaches::default();
    let mut seqs = LocalSequences::new(&mut batched, &mut parked);
    seqs.step_many(&[step(0, 0, 4), step(1, 0, 30)])
        .expect("first step");
    // Sequence 1 would pass the context: nothing runs, sequence 0 included.
    let err = seqs
        .step_many(&[step(0, 4, 1), step(1, 30, 3)])
        .expect_err("context full");
    assert!(
        matches!(&err, ModelError::InSequence { seq: 1, source } if matches!(**source, ModelError::ContextFull { needed: 33, context: 32 })),
        "{err}"
    );
    let err = seqs
        .step_many(&[step(0, 4, 1), step(0, 5, 1)])
        .expect_err("repeated");
    assert!(
        err.to_string().contains("sequence 0 appears twice"),
        "{err}"
    );
    let err = seqs.step_many(&[step(64, 0, 1)]).expect_err("out of range");
    assert!(err.to_string().contains("sequence id 64"), "{err}");
    let bad = SeqStep {
        seq: 2,
        tokens: vec![vocab as u32],
        pos: 0,
    };
    let err = seqs
        .step_many(&[step(0, 4, 1), bad])
        .expect_err("bad token");
    assert!(
        matches!(&err, ModelError::InSequence { seq: 2, source } if matches!(**source, ModelError::BadToken { .. })),
        "{err}"
    );
    // Sequence 0 goes on as if the failed steps never came.
    let next = seqs.step_many(&[step(0, 4, 1)]).expect("step after errors");
    drop(seqs);
    alone.forward(&ids(0, 4, vocab), 0).expect("alone");
    let want = alone.forward(&ids(0, 5, vocab)[4..], 4).expect("alone");
    assert!(want
        .iter()
        .zip(&next[0])
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}
