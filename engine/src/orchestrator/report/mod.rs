//! Typed results of the orchestration core. Front ends render these into
//! text tables, HTML, SVG charts or JSON; nothing here is pre-formatted
//! text, and no renderer reads another renderer's output.
//!
//! Times are seconds, sizes bytes, rates per second.

mod bench;
mod discovery;
mod links;
mod nodes;
mod plan;
mod speed;
mod stats;
mod trace;

pub use bench::{AggregateRates, BenchFigures, BenchLimits, BenchReport, BenchRow, Restored};
pub use discovery::{DiscoveryOutcome, DiscoveryReport, DiscoveryRow};
pub use links::{CoordinatorLink, LinkSetting, LinksReport, PeerLink};
pub use nodes::{NodeOrigin, NodeRow, NodeState, NodesReport};
pub use plan::{PlanReport, PlanRow};
pub use speed::{Objective, RankReport, RankRow};
pub use stats::{NodeStats, Percentiles, ServingFigures, StatsReport, StatsRow, Straggler};
pub use trace::{TraceNode, TraceReport};
