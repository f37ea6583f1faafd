//! A loaded shard: the model slice, its links to peers, the KV cache of
//! every sequence it serves, and its counters since the load.

use super::step::StepError;
use super::NodeOptions;
use crate::cluster::messages::NodeMetrics;
use crate::metrics::memory::{current_rss_bytes, peak_rss_bytes};
use crate::model::kv_cache::KvCache;
use crate::model::transformer::Transformer;
use crate::parallel::PeerLinks;

/// Sequences one node keeps KV caches for at once (`--parallel`).
const MAX_SEQUENCES: u32 = 64;

pub(super) struct Shard {
    pub model: Transformer,
    pub links: Option<PeerLinks>,
    pub metrics: NodeMetrics,
    /// Activations of the last step, kept for their allocation.
    pub hidden: Vec<f32>,
    /// The sequence whose KV cache is in `model`.
    current_seq: u32,
    /// The other sequences' caches, parked while another one runs.
    parked: Vec<(u32, KvCache)>,
}

impl Shard {
    pub fn new(model: Transformer) -> Self {
        Self {
            model,
            links: None,
            metrics: NodeMetrics::default(),
            hidden: Vec::new(),
            current_seq: 0,
            parked: Vec::new(),
        }
    }

    /// Puts sequence `seq`'s KV cache into the model (a fresh one the first time).
    pub fn select(&mut self, seq: u32) -> Result<(), StepError> {
        if seq == self.current_seq {
            return Ok(());
        }
        if seq >= MAX_SEQUENCES {
            return Err(StepError::SequenceOutOfRange {
                seq,
                max: MAX_SEQUENCES,
            });
        }
        let mut cache = match self.parked.iter().position(|(s, _)| *s == seq) {
            Some(i) => self.parked.swap_remove(i).1,
            None => self.model.new_cache(),
        };
        self.model.swap_cache(&mut cache);
        self.parked.push((self.current_seq, cache));
        self.current_seq = seq;
        Ok(())
    }

    /// Counters since the load, with memory as it is now.
    pub fn snapshot(&self, opts: &NodeOptions) -> NodeMetrics {
        let mut m = self.metrics.clone();
        m.rss = current_rss_bytes().unwrap_or(0);
        m.peak_rss = peak_rss_bytes().unwrap_or(0);
        m.weight_bytes = self.model.weights().byte_len() as u64;
        m.kv_bytes = (self.model.cache().used_bytes()
            + self
                .parked
                .iter()
                .map(|(_, c)| c.used_bytes())
                .sum::<usize>()) as u64;
        m.budget = super::info::budget(opts);
        m.experts = self.model.expert_metrics();
        if let Some(links) = &self.links {
            m.traffic = links.stats.traffic.clone();
            m.allreduce_seconds = links.stats.allreduce_seconds.clone();
            m.hop_seconds = links.stats.hop_seconds.clone();
        }
        m
    }

    /// Forgets counters (`ResetMetrics`).
    pub fn reset_metrics(&mut self) {
        self.metrics = NodeMetrics::default();
        self.model.reset_expert_load();
        if let Some(links) = self.links.as_mut() {
            links.stats = Default::default();
        }
    }
}
