//! `:plan best`: every layout of the connected nodes ranked by predicted
//! speed, with the ones that do not fit said so.

use serde::Serialize;

use crate::shard::plan::speed::{SpeedPrediction, Workload};
use crate::shard::plan::LayoutRequest;

/// What a ranking orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Objective {
    /// Decoded tokens per second (chat, generation).
    Decode,
    /// Prompt tokens per second (long prompts: the time to the first token).
    Prefill,
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Objective::Decode => "decode",
            Objective::Prefill => "prefill",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RankRow {
    pub layout: LayoutRequest,
    /// Why `shard` would refuse it; `None` when every node fits.
    pub refusal: Option<String>,
    pub prediction: Option<SpeedPrediction>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RankReport {
    pub objective: Objective,
    pub workload: Workload,
    /// Fastest first; layouts that do not fit after every one that does.
    pub rows: Vec<RankRow>,
}

impl RankReport {
    /// The fastest layout that fits.
    pub fn best(&self) -> Option<&LayoutRequest> {
        self.rows
            .iter()
            .find(|r| r.refusal.is_none() && r.prediction.is_some())
            .map(|r| &r.layout)
    }
}
