//! `--layout`: a layout given by name, or `auto` (`best` is the same word
//! for `shardlab plan`): the fastest layout the cost model predicts on the
//! connected nodes for the command's workload, resolved after connecting.

use anyhow::{anyhow, bail, Result};
use shardlab_engine::orchestrator::report::Objective;
use shardlab_engine::orchestrator::Orchestrator;
use shardlab_engine::shard::plan::speed::Workload;
use shardlab_engine::shard::plan::{parse_layers, LayoutRequest, PlanError};

/// A prompt at least this many times the generated tokens is ranked by
/// prefill rate (the time to the first token dominates); shorter ones by
/// decode rate.
pub const PREFILL_RATIO: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutChoice {
    Given(LayoutRequest),
    /// The fastest predicted layout that fits.
    Auto,
}

impl LayoutChoice {
    /// `--layout` (with `--layers` applied to a pipeline).
    pub fn parse(layout: &str, layers: Option<&str>) -> Result<Self> {
        let word = layout.trim().to_ascii_lowercase();
        if word == "auto" || word == "best" {
            if layers.is_some() {
                bail!("--layers applies to --layout pipeline, not {word}");
            }
            return Ok(Self::Auto);
        }
        let request: LayoutRequest = layout.parse().map_err(|e| match e {
            PlanError::BadRequest { input, problem } => {
                anyhow!("--layout {input}: {problem}; or auto (the fastest predicted)")
            }
            other => anyhow!("--layout {layout}: {other}"),
        })?;
        let Some(layers) = layers else {
            return Ok(Self::Given(request));
        };
        match request {
            LayoutRequest::Pipeline { .. } => Ok(Self::Given(LayoutRequest::Pipeline {
                layers: Some(parse_layers(layers)?),
            })),
            other => bail!("--layers applies to --layout pipeline, not {other}"),
        }
    }

    /// The layout to load: the given one, or the best predicted on the
    /// connected nodes, named on stderr with its predicted rate.
    pub fn resolve(&self, core: &mut Orchestrator, workload: Workload) -> Result<LayoutRequest> {
        let Self::Given(request) = self else {
            return auto(core, workload);
        };
        Ok(request.clone())
    }
}

/// What `auto` ranks by for `workload`: prefill when the prompt is at
/// least [`PREFILL_RATIO`] times the generated tokens, decode otherwise.
pub fn objective(workload: Workload) -> Objective {
    if workload.prompt_tokens >= PREFILL_RATIO * workload.gen_tokens {
        Objective::Prefill
    } else {
        Objective::Decode
    }
}

fn auto(core: &mut Orchestrator, workload: Workload) -> Result<LayoutRequest> {
    let objective = objective(workload);
    let ranking = core.rank_layouts(objective, workload)?;
    let best = ranking
        .rows
        .iter()
        .find_map(|r| match (&r.refusal, &r.prediction) {
            (None, Some(p)) => Some((&r.layout, p)),
            _ => None,
        });
    let Some((layout, p)) = best else {
        // The orchestrator says why nothing fits, layout by layout.
        return Ok(core.best_layout(objective, workload)?);
    };
    eprintln!(
        "layout auto: {layout} (predicted decode {:.1} tok/s, prefill {:.1} tok/s; ranked by {objective} for a {}-token prompt, {} generated, {} in flight)",
        p.decode_tok_s, p.prefill_tok_s, workload.prompt_tokens, workload.gen_tokens, workload.in_flight
    );
    Ok(layout.clone())
}
