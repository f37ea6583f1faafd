//! The orchestrator on a tiny synthetic model in this process: opening,
//! planning, sharding `single`, generation against the transformer driven
//! directly, live metrics, and the errors each misuse gets. The cluster
//! side runs in `cluster/tests` and the process tests under `tests/`.

use crate::model::kv_type::KvType;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::model::generate::{generate, GenerateOptions};
use crate::model::loader;
use crate::model::sampling::SamplingParams;
use crate::model::store::ModelSource;
use crate::model::synth::{synth, SynthArch, SynthOptions};

fn tiny_model(dir: &std::path::Path) -> PathBuf {
    let opts = SynthOptions::preset(SynthArch::Llama, "tiny").expect("tiny preset");
    let path = dir.join("tiny.gguf");
    synth(&opts, &path, &mut |_, _| {}).expect("synth");
    path
}

pub(super) fn orchestrator(home: &std::path::Path) -> Orchestrator {
    Orchestrator::new(OrchestratorConfig {
        store: ModelStore::new(home.to_path_buf()),
        node_exe: PathBuf::from("shardlab-not-used-here"),
        threads_per_node: 1,
        step_timeout: Duration::from_secs(10),
        client_name: "test".into(),
    })
}

pub(super) fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: n,
        sampling: SamplingParams::greedy(),
        stop_strings: Vec::new(),
        stop_at_eos: false,
    }
}

#[test]
fn every_step_needs_what_comes_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = orchestrator(dir.path());
    assert!(matches!(
        o.plan(&LayoutRequest::Single),
        Err(OrchestratorError::NoModel)
    ));
    assert!(matches!(
        o.stats(),
        Err(OrchestratorError::NothingToMeasure)
    ));
    assert!(matches!(o.disconnect(), Err(OrchestratorError::NoNodes)));
    assert!(matches!(o.nodes_report(), Err(OrchestratorError::NoNodes)));
    assert!(matches!(o.kill("1"), Err(OrchestratorError::NoNodes)));
    let model =
        OpenModel::open_source("tiny", ModelSource::Gguf(tiny_model(dir.path()))).expect("opens");
    assert!(!o.set_model(model));
    assert!(matches!(
        o.plan(&LayoutRequest::Tensor),
        Err(OrchestratorError::LayoutNeedsNodes { .. })
    ));
    assert!(matches!(
        o.trace(),
        Err(OrchestratorError::TraceNothingSharded)
    ));
    assert!(matches!(
        o.generate(&[1, 2], &greedy(2), None, &mut |_| {}),
        Err(OrchestratorError::NothingLoaded)
    ));
}

#[test]
fn single_in_process_generates_what_the_transformer_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path());
    let mut o = orchestrator(dir.path());
    o.context = Some(64);
    let model = OpenModel::open_source("tiny", ModelSource::Gguf(path.clone())).expect("opens");
    let prompt = model.filler(9).expect("filler");
    assert_eq!(prompt.len(), 9);
    o.set_model(model);

    let plan = o.plan(&LayoutRequest::Single).expect("plan");
    assert_eq!(plan.plan.nodes.len(), 1);
    assert_eq!(plan.plan.context, 64);
    assert!(
        plan.refusal.is_none(),
        "a tiny model fits: {:?}",
        plan.refusal
    );

    let mut loaded_here = Vec::new();
    o.ensure_runner(&mut |name| loaded_here.push(name.to_string()))
        .expect("loads in this process");
    assert_eq!(loaded_here, vec!["tiny".to_string()]);
    assert_eq!(o.layout(), Some(LayoutRequest::Single));

    let mut streamed = String::new();
    let g = o
        .generate(&prompt, &greedy(6), None, &mut |t| streamed.push_str(t))
        .expect("generates");
    assert_eq!(g.text, streamed);

    let mut direct = loader::load(&ModelSource::Gguf(path), 64, KvType::F32).expect("loads");
    let expected = generate(
        &mut direct.transformer,
        &direct.tokenizer,
        &mut Vec::new(),
        &prompt,
        &greedy(6),
        None,
        &mut |_| {},
    )
    .expect("generates");
    assert_eq!(g.ids, expected.ids, "same greedy tokens as the transformer");

    let stats = o.stats().expect("stats");
    assert!(stats.in_process);
    assert_eq!(stats.rows.len(), 1);
    assert_eq!(stats.last.as_ref().map(|s| s.generated_tokens), Some(6));
    assert!(matches!(o.trace(), Err(OrchestratorError::TraceInProcess)));

    // The same prompt again reuses the cached prefix.
    let again = o
        .generate(&prompt, &greedy(6), None, &mut |_| {})
        .expect("again");
    assert_eq!(again.ids, expected.ids);
    assert!(again.stats.reused_tokens > 0);

    let (closed, had_weights) = o.close_model();
    assert_eq!(closed.map(|m| m.name), Some("tiny".to_string()));
    assert!(had_weights);
    assert_eq!(o.layout(), None);
}

#[test]
fn bench_measures_the_baseline_and_refuses_what_does_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = orchestrator(dir.path());
    o.context = Some(64);
    o.set_model(
        OpenModel::open_source("tiny", ModelSource::Gguf(tiny_model(dir.path()))).expect("opens"),
    );
    let too_long = BenchRequest {
        prompt_tokens: 60,
        gen_tokens: 10,
        baseline_threads: Some(1),
        layouts: Vec::new(),
        parallel: 1,
        probe_threads: None,
    };
    assert!(matches!(
        o.bench(&too_long, &mut |_| {}),
        Err(OrchestratorError::BenchTooLong { context: 64, .. })
    ));
    let one_over = BenchRequest {
        prompt_tokens: 57,
        gen_tokens: 8,
        layouts: Vec::new(),
        ..too_long
    };
    assert!(matches!(
        o.bench(&one_over, &mut |_| {}),
        Err(OrchestratorError::BenchTooLong { context: 64, .. })
    ));
    // A prompt and answer that fill the context exactly are measured.
    let exactly = BenchRequest {
        prompt_tokens: 56,
        layouts: Vec::new(),
        ..one_over
    };
    let full = o.bench(&exactly, &mut |_| {}).expect("fills the context");
    let figures = full.rows[0].result.as_ref().expect("baseline ran");
    assert_eq!(figures.stats.generated_tokens, 8);
    let request = BenchRequest {
        prompt_tokens: 8,
        gen_tokens: 4,
        ..too_long
    };
    let mut events = 0;
    let report = o.bench(&request, &mut |_| events += 1).expect("bench");
    assert_eq!(report.rows.len(), 1);
    assert_eq!(report.prompt_tokens, 8);
    let figures = report.rows[0].result.as_ref().expect("baseline ran");
    assert_eq!(figures.stats.generated_tokens, 4);
    assert!(report.baseline_decode().is_some_and(|r| r > 0.0));
    assert!(report.limits.bandwidth.is_none(), "no probe asked for");
    assert!(report.roofline(figures, 1).is_none());
    assert_eq!(events, 1);
    assert!(report.restored.is_none());
    // The prediction for the same plan and workload, and its errors.
    let row = &report.rows[0];
    let predicted = row.predicted.as_ref().expect("this process is predicted");
    assert_eq!(predicted.workload.prompt_tokens, 8);
    assert_eq!(predicted.workload.gen_tokens, 4);
    assert!(predicted.decode_tok_s > 0.0 && predicted.decode_tok_s.is_finite());
    let error = row.decode_error.expect("decode error");
    let expected = (figures.decode_rate() - predicted.decode_tok_s) / predicted.decode_tok_s;
    assert!((error - expected).abs() < 1e-12, "{error} vs {expected}");
    assert!(row.prefill_error.is_some());
}
