//! The session in this process on a tiny synthetic model: commands give
//! typed reports, errors are errors and the session goes on. Sessions
//! with real node processes are covered by the transcripts under
//! `transcripts/` and the tests in `tests/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shardlab_engine::model::generate::StopReason;
use shardlab_engine::model::store::ModelStore;
use shardlab_engine::model::synth::{synth, SynthArch, SynthOptions};

use super::*;
use crate::output::{text, Report};

pub(super) fn tiny_model(dir: &Path) -> PathBuf {
    let opts = SynthOptions::preset(SynthArch::Llama, "tiny").expect("tiny preset");
    let path = dir.join("tiny.gguf");
    synth(&opts, &path, &mut |_, _| {}).expect("synth");
    path
}

pub(super) fn session(home: &Path) -> Session {
    Session::new(SessionConfig {
        store: ModelStore::new(home.to_path_buf()),
        node_exe: PathBuf::from("shardlab-not-started-here"),
        threads_per_node: 1,
        step_timeout: Duration::from_secs(10),
        link: None,
    })
}

pub(super) fn run(s: &mut Session, line: &str) -> Output {
    s.exec_line(line, &mut NullSink)
}

/// The report inside `out`, wherever it sits among the parts.
pub(super) fn report(out: &Output) -> Option<&Report> {
    match out {
        Output::Report(r) => Some(&r.report),
        Output::Many(parts) => parts.iter().find_map(report),
        _ => None,
    }
}

#[test]
fn commands_before_a_model_say_what_to_do_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = session(dir.path());
    for (line, expected) in [
        (":plan single", "no model is open"),
        (":stats", "nothing is loaded"),
        (":nodes", "no nodes are connected"),
        (":trace", "nothing is sharded yet"),
        ("hello", "no model is open"),
    ] {
        let out = run(&mut s, line);
        assert!(out.is_error(), "{line}: {out:?}");
        let shown = text::render(&out, false);
        assert!(shown.contains(expected), "{line}: {shown}");
    }
}

#[test]
fn a_model_in_this_process_plans_generates_and_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path());
    let mut s = session(dir.path());
    let out = run(&mut s, &format!(":load {}", path.display()));
    assert!(!out.is_error(), "{out:?}");
    assert!(text::render(&out, false).contains("opened"));

    let out = run(&mut s, ":set context 64");
    assert!(!out.is_error(), "{out:?}");
    let plan = run(&mut s, ":plan single");
    match report(&plan) {
        Some(Report::Plan(p)) => {
            assert_eq!(p.plan.context, 64);
            assert!(p.refusal.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert!(text::render(&plan, false).contains("fits"));

    assert!(!run(&mut s, ":set temperature 0").is_error());
    assert!(!run(&mut s, ":set max_tokens 5").is_error());
    let mut sink = Collect::default();
    let out = s.exec_line("Once upon a time", &mut sink);
    let Output::Generation(g) = &out else {
        panic!("{out:?}")
    };
    assert_eq!(g.text, sink.text, "the streamed text is the result");
    assert_eq!(g.stats.generated_tokens, 5);
    assert!(g.layout.is_none(), "this process, not a cluster");
    assert!(sink.notes.iter().any(|n| n.contains("into this process")));

    let stats = run(&mut s, ":stats");
    match report(&stats) {
        Some(Report::Stats(r)) => {
            assert!(r.in_process);
            assert_eq!(r.last.as_ref().map(|l| l.generated_tokens), Some(5));
        }
        other => panic!("{other:?}"),
    }
    let shown = text::render(&stats, true);
    assert!(shown.contains("stats: single, this process"), "{shown}");
    assert!(
        shown.contains("{rate}"),
        "measured rates are masked: {shown}"
    );

    let trace = run(&mut s, ":trace");
    assert!(text::render(&trace, false).contains("runs in this process"));

    let bench = run(&mut s, ":bench --prompt 8 --gen 3");
    match report(&bench) {
        Some(Report::Bench(b)) => {
            assert_eq!(b.rows.len(), 1, "the baseline only, with no nodes");
            assert!(b.rows[0].result.is_ok());
        }
        other => panic!("{}", text::render(&bench, false) + &format!("{other:?}")),
    }

    let out = run(&mut s, ":unload");
    assert!(text::render(&out, false).contains("freed its weights"));
}

/// Sets `cancel` at the first note, as a Ctrl-C pressed while the model is
/// still loading into this process would.
struct CancelAtFirstNote {
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
    text: String,
}

impl Sink for CancelAtFirstNote {
    fn text(&mut self, piece: &str) {
        self.text.push_str(piece);
    }
    fn note(&mut self, _line: &Rich) {
        self.cancel
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn a_ctrl_c_while_the_model_loads_stops_the_generation_that_follows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path());
    let mut s = session(dir.path());
    assert!(!run(&mut s, &format!(":load {}", path.display())).is_error());
    assert!(!run(&mut s, ":set ignore_eos on").is_error());
    assert!(!run(&mut s, ":set max_tokens 20").is_error());
    let mut sink = CancelAtFirstNote {
        cancel: s.cancel_flag(),
        text: String::new(),
    };
    let out = s.exec_line("Once upon a time", &mut sink);
    let Output::Generation(g) = &out else {
        panic!("{out:?}")
    };
    assert_eq!(g.stats.stop, StopReason::Cancelled, "{:?}", g.stats);
    assert!(g.stats.generated_tokens < 20, "{:?}", g.stats);
}

#[derive(Default)]
struct Collect {
    text: String,
    notes: Vec<String>,
}

impl Sink for Collect {
    fn text(&mut self, piece: &str) {
        self.text.push_str(piece);
    }
    fn note(&mut self, line: &Rich) {
        self.notes.push(line.render(false));
    }
}
