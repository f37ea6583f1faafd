//! A loaded shard: the model slice, its links to peers, the KV cache of
//! every sequence it serves, and its counters since the load.

use super::step::StepError;
use super::NodeOptions;
use crate::cluster::messages::NodeMetrics;
use crate::cluster::messages::StepSegment;
use crate::metrics::memory::{current_rss_bytes, peak_rss_bytes};
use crate::model::error::ModelError;
use crate::model::kv_cache::KvCache;
use crate::model::segments::{parked_caches, repeated};
use crate::model::transformer::Transformer;
use crate::net::heartbeat::Watch;
use crate::parallel::PeerLinks;

/// Sequences one node keeps KV caches for at once (`--parallel`).
pub const MAX_SEQUENCES: u32 = 64;

pub(super) struct Shard {
    pub model: Transformer,
    pub links: Option<PeerLinks>,
    /// Heartbeats on the peers of `links`: a peer that falls silent has
    /// its link cut, so a step waiting on it fails naming it.
    pub peer_watches: Vec<Watch>,
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
            peer_watches: Vec::new(),
            metrics: NodeMetrics::default(),
            hidden: Vec::new(),
            current_seq: 0,
            parked: Vec::new(),
        }
    }

    /// After a step failed: a failed exchange with a peer leaves the whole
    /// mesh out of step, so every link is closed at once (peers waiting on
    /// this node hear it now, not at their deadline). Other failures leave
    /// the links alone.
    pub fn after_failure(&mut self, e: &StepError) {
        let exchange = matches!(
            e,
            StepError::Peer(_) | StepError::Model(ModelError::Collective { .. })
        );
        if let (true, Some(links)) = (exchange, self.links.as_mut()) {
            links.close(&format!(
                "was cut off by this node after a failed exchange ({e})"
            ));
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

    /// Checks a batched step against the KV caches of its sequences before
    /// anything runs (every node of every stage sees the same caches, so
    /// all refuse alike and none waits on a hand-off that never comes).
    pub fn check_batch(&self, segments: &[StepSegment]) -> Result<(), StepError> {
        let seqs: Vec<u32> = segments.iter().map(|s| s.seq).collect();
        if segments.is_empty() {
            return Err(StepError::NoTokens);
        }
        if let Some(seq) = repeated(&seqs) {
            return Err(StepError::RepeatedSequence { seq });
        }
        let context = self.model.cache().context();
        for s in segments {
            if s.seq >= MAX_SEQUENCES {
                return Err(StepError::SequenceOutOfRange {
                    seq: s.seq,
                    max: MAX_SEQUENCES,
                });
            }
            let held = if s.seq == self.current_seq {
                self.model.cache().len()
            } else {
                self.parked
                    .iter()
                    .find(|(q, _)| *q == s.seq)
                    .map_or(0, |(_, c)| c.len())
            };
            let (pos, n) = (s.pos as usize, s.tokens.len());
            let why = if n == 0 {
                Some(ModelError::Other("no tokens to run".into()))
            } else if pos + n > context {
                Some(ModelError::ContextFull {
                    needed: pos + n,
                    context,
                })
            } else if pos > held {
                Some(ModelError::Other(format!(
                    "position {pos} skips ahead of the {held} cached positions"
                )))
            } else {
                None
            };
            if let Some(e) = why {
                return Err(StepError::Model(ModelError::InSequence {
                    seq: s.seq,
                    source: Box::new(e),
                }));
            }
        }
        Ok(())
    }

    /// The model, the peer links and the KV cache of each of `seqs`
    /// (checked with [`Self::check_batch`]), in order; `None` for the one
    /// whose cache is in the model.
    pub fn batch_parts(
        &mut self,
        seqs: &[u32],
    ) -> (
        &mut Transformer,
        Option<&mut PeerLinks>,
        Vec<Option<&mut KvCache>>,
    ) {
        let model = &mut self.model;
        let caches = parked_caches(&mut self.parked, self.current_seq, seqs, &|| {
            model.new_cache()
        });
        (model, self.links.as_mut(), caches)
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
