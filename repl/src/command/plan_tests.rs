//! `:plan` and `:shard` beyond a layout: `best [decode|prefill]` and the
//! workload flags, and what a person sees when they are wrong.

use shardlab_engine::orchestrator::report::Objective;
use shardlab_engine::shard::plan::speed::Workload;
use shardlab_engine::shard::plan::LayoutRequest;

use super::*;

fn ok(line: &str) -> Command {
    parse(line).unwrap_or_else(|e| panic!("{line:?} did not parse: {e}"))
}

fn error(line: &str) -> ParseError {
    match parse(line) {
        Ok(c) => panic!("{line:?} parsed as {c:?}"),
        Err(e) => e,
    }
}

fn best(objective: Objective, workload: Workload) -> PlanArgs {
    PlanArgs {
        choice: LayoutChoice::Best(objective),
        workload,
    }
}

#[test]
fn best_ranks_by_decode_unless_told_prefill() {
    let d = Workload::default();
    assert_eq!(ok(":plan best"), Command::Plan(best(Objective::Decode, d)));
    assert_eq!(
        ok(":plan BEST decode"),
        Command::Plan(best(Objective::Decode, d))
    );
    assert_eq!(
        ok(":plan best prefill"),
        Command::Plan(best(Objective::Prefill, d))
    );
    assert_eq!(
        ok(":shard best"),
        Command::Shard(best(Objective::Decode, d))
    );
    assert_eq!(
        ok(":shard best prefill"),
        Command::Shard(best(Objective::Prefill, d))
    );
}

#[test]
fn workload_flags_set_the_prediction_for_this_command() {
    let w = Workload {
        prompt_tokens: 512,
        gen_tokens: 16,
        in_flight: 4,
    };
    assert_eq!(
        ok(":plan best prefill --prompt 512 --gen 16 --parallel 4"),
        Command::Plan(best(Objective::Prefill, w))
    );
    let only_prompt = Workload {
        prompt_tokens: 300,
        ..Workload::default()
    };
    assert_eq!(
        ok(":plan tensor --prompt=300"),
        Command::Plan(PlanArgs {
            choice: LayoutChoice::Given(LayoutRequest::Tensor),
            workload: only_prompt,
        })
    );
    assert_eq!(
        ok(":shard best --parallel 2"),
        Command::Shard(best(
            Objective::Decode,
            Workload {
                in_flight: 2,
                ..Workload::default()
            }
        ))
    );
}

#[test]
fn bad_best_and_workload_input_is_named() {
    let e = error(":plan best fastest");
    assert!(e.message.contains("decode"), "{e}");
    assert!(e.message.contains("prefill"), "{e}");
    assert!(e.message.contains("'fastest'"), "{e}");
    assert_eq!(
        error(":plan best prefil").suggestion.as_deref(),
        Some("prefill")
    );
    assert!(error(":plan best decode extra")
        .message
        .contains("unexpected 'extra'"));
    assert!(error(":shard best --layers 0..2,2..4")
        .message
        .contains("`best` picks the layout itself"));
    assert!(error(":plan tensor --gen 0").message.contains("at least 1"));
    assert!(error(":plan best --parallel 0")
        .message
        .contains("at least 1"));
    assert!(error(":plan best --prompt lots")
        .message
        .contains("--prompt must be a whole number, got 'lots'"));
    assert_eq!(error(":plan bset").suggestion.as_deref(), Some("best"));
    let e = error(":plan best --parralel 2");
    assert_eq!(e.suggestion.as_deref(), Some("--parallel"), "{e}");
}
