//! Predicted speed in the session, in this process on the tiny synthetic
//! model: `:plan` shows it, `:plan best` ranks, `:shard best` loads the
//! winner, and the workload flags reach the prediction.

use shardlab_engine::orchestrator::report::Objective;
use shardlab_engine::shard::plan::speed::Workload;
use shardlab_engine::shard::plan::LayoutRequest;

use super::tests::{report, run, session, tiny_model};
use super::Session;
use crate::output::{text, Report};

fn loaded(dir: &std::path::Path) -> Session {
    let path = tiny_model(dir);
    let mut s = session(dir);
    let out = run(&mut s, &format!(":load {}", path.display()));
    assert!(!out.is_error(), "{out:?}");
    assert!(!run(&mut s, ":set context 64").is_error());
    s
}

#[test]
fn plan_predicts_speed_for_the_workload_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = loaded(dir.path());
    let out = run(&mut s, ":plan single --prompt 100 --gen 7");
    let Some(Report::Plan(p)) = report(&out) else {
        panic!("{out:?}")
    };
    let speed = p.speed.as_ref().expect("a prediction in this process");
    assert_eq!(speed.workload.prompt_tokens, 100);
    assert_eq!(speed.workload.gen_tokens, 7);
    assert!(speed.decode_tok_s > 0.0 && speed.prefill_tok_s > 0.0);
    assert_eq!(speed.node_decode.len(), p.plan.nodes.len());
    let shown = text::render(&out, true);
    assert!(shown.contains("decode/token"), "{shown}");
    assert!(
        shown.contains("predicted speed (100-token prompt, 7 generated): prefill {rate}, decode {rate}, first token {time}"),
        "{shown}"
    );
    assert!(
        shown.contains("per decoded token: compute {time}"),
        "{shown}"
    );

    // Without flags the next plan is for the default workload again.
    let out = run(&mut s, ":plan single");
    let Some(Report::Plan(p)) = report(&out) else {
        panic!("{out:?}")
    };
    assert_eq!(
        p.speed.as_ref().map(|s| s.workload),
        Some(Workload::default())
    );
}

#[test]
fn plan_best_ranks_and_shard_best_loads_the_winner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = loaded(dir.path());
    let out = run(&mut s, ":plan best prefill --prompt 32");
    let Some(Report::Rank(r)) = report(&out) else {
        panic!("{}", text::render(&out, false))
    };
    assert_eq!(r.objective, Objective::Prefill);
    assert_eq!(r.workload.prompt_tokens, 32);
    let winner = r.best().cloned().expect("one node fits the tiny model");
    assert_eq!(winner, LayoutRequest::Single, "no nodes: this process");
    assert!(r.rows[0].refusal.is_none() && r.rows[0].prediction.is_some());
    let shown = text::render(&out, true);
    assert!(
        shown.contains("layouts by predicted prefill speed"),
        "{shown}"
    );
    assert!(shown.contains("* 1"), "the winner is marked: {shown}");
    assert!(shown.contains("`:shard best` loads single"), "{shown}");

    let out = run(&mut s, ":shard best");
    assert!(!out.is_error(), "{}", text::render(&out, false));
    let Some(Report::Plan(p)) = report(&out) else {
        panic!("{out:?}")
    };
    assert_eq!(
        p.plan.request, winner,
        ":shard best loaded the ranked winner"
    );
    let shown = text::render(&out, true);
    assert!(
        shown.starts_with(
            "best layout for decode (64-token prompt, 64 generated): single, predicted {rate} decode"
        ),
        "{shown}"
    );
    assert!(shown.contains("sharded single over 1 node"), "{shown}");
}

#[test]
fn best_before_a_model_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = session(dir.path());
    for line in [":plan best", ":shard best prefill"] {
        let out = run(&mut s, line);
        assert!(out.is_error(), "{line}: {out:?}");
        assert!(
            text::render(&out, false).contains("no model is open"),
            "{line}"
        );
    }
}
