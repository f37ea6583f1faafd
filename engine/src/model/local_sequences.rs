//! Several sequences on one in-process [`Transformer`]: each sequence has
//! its own KV cache, parked while another one runs (as a node's shard does).

use std::collections::VecDeque;

use super::error::ModelError;
use super::generate::{SeqStep, SequenceBackend};
use super::kv_cache::KvCache;
use super::segments::{parked_caches, repeated, Segment};
use super::transformer::Transformer;

/// Sequences one process keeps KV caches for at once.
pub const MAX_LOCAL_SEQUENCES: u32 = 64;

/// The KV caches of every sequence but 0 (whose cache stays in the model),
/// kept while no [`LocalSequences`] is in use: between the server's turns.
#[derive(Default)]
pub struct ParkedCaches {
    caches: Vec<(u32, KvCache)>,
}

impl ParkedCaches {
    /// Drops every parked cache (the model they were made for is gone).
    pub fn clear(&mut self) {
        self.caches.clear();
    }
}

pub struct LocalSequences<'a> {
    model: &'a mut Transformer,
    /// The sequence whose KV cache is in `model`.
    current: u32,
    parked: &'a mut Vec<(u32, KvCache)>,
    /// Batches run but not yet collected, oldest first: each step's
    /// sequence and last logits.
    done: VecDeque<Vec<(u32, Vec<f32>)>>,
}

impl<'a> LocalSequences<'a> {
    /// Takes over `model`, whose current cache is sequence 0's; the other
    /// sequences' caches are `parked` ones, and stay there afterwards.
    pub fn new(model: &'a mut Transformer, parked: &'a mut ParkedCaches) -> Self {
        Self {
            model,
            current: 0,
            parked: &mut parked.caches,
            done: VecDeque::new(),
        }
    }

    fn check_id(seq: u32) -> Result<(), ModelError> {
        if seq >= MAX_LOCAL_SEQUENCES {
            return Err(ModelError::Other(format!(
                "sequence id {seq} is out of range (at most {MAX_LOCAL_SEQUENCES} sequences)"
            )));
        }
        Ok(())
    }

    /// Puts sequence `seq`'s cache into the model (a fresh one the first time).
    fn select(&mut self, seq: u32) -> Result<(), ModelError> {
        if seq == self.current {
            return Ok(());
        }
        Self::check_id(seq)?;
        let mut cache = match self.parked.iter().position(|(s, _)| *s == seq) {
            Some(i) => self.parked.swap_remove(i).1,
            None => self.model.new_cache(),
        };
        self.model.swap_cache(&mut cache);
        self.parked.push((self.current, cache));
        self.current = seq;
        Ok(())
    }

    /// KV bytes held by every sequence.
    pub fn kv_bytes(&self) -> usize {
        self.model.cache().used_bytes()
            + self
                .parked
                .iter()
                .map(|(_, c)| c.used_bytes())
                .sum::<usize>()
    }
}

impl Drop for LocalSequences<'_> {
    /// Leaves sequence 0's cache in the model, as it was handed over.
    fn drop(&mut self) {
        let _ = self.select(0);
    }
}

impl SequenceBackend for LocalSequences<'_> {
    /// Runs the batch at once; [`Self::collect`] hands its logits back.
    fn submit(&mut self, steps: &[SeqStep]) -> Result<(), ModelError> {
        let logits = self.run_batch(steps)?;
        let seqs = steps.iter().map(|s| s.seq);
        self.done.push_back(seqs.zip(logits).collect());
        Ok(())
    }

    fn collect(&mut self) -> Result<Vec<(u32, Vec<f32>)>, ModelError> {
        self.done
            .pop_front()
            .ok_or_else(|| ModelError::Other("no step to collect".into()))
    }

    fn reset(&mut self, seq: u32) -> Result<(), ModelError> {
        self.select(seq)?;
        self.model.truncate(0);
        Ok(())
    }

    fn context(&self) -> usize {
        self.model.cache().context()
    }

    /// [`Self::run_batch`], with nothing else waiting to be collected.
    fn step_many(&mut self, steps: &[SeqStep]) -> Result<Vec<Vec<f32>>, ModelError> {
        if !self.done.is_empty() {
            return Err(ModelError::Other(
                "submitted steps are waiting to be collected".into(),
            ));
        }
        self.run_batch(steps)
    }
}

impl LocalSequences<'_> {
    /// One forward pass for every listed sequence (each at its own
    /// position, with its own cache). Nothing runs if any step is bad.
    fn run_batch(&mut self, steps: &[SeqStep]) -> Result<Vec<Vec<f32>>, ModelError> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: Vec<u32> = steps.iter().map(|s| s.seq).collect();
        for &seq in &seqs {
            Self::check_id(seq)?;
        }
        if let Some(seq) = repeated(&seqs) {
            return Err(ModelError::Other(format!(
                "sequence {seq} appears twice in one step"
            )));
        }
        let model = &mut *self.model;
        let caches = parked_caches(self.parked, self.current, &seqs, &|| model.new_cache());
        let mut segments: Vec<Segment> = steps
            .iter()
            .zip(caches)
            .map(|(s, cache)| Segment {
                seq: s.seq,
                rows: s.tokens.len(),
                pos: s.pos,
                cache,
            })
            .collect();
        let tokens: Vec<&[u32]> = steps.iter().map(|s| s.tokens.as_slice()).collect();
        model.forward_segments(&tokens, &mut segments)
    }
}
