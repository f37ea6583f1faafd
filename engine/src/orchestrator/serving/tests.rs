//! The serving loop on a tiny synthetic model in this process: sequences
//! served together give what each gives alone, a prompt over the context
//! is refused with its figures, a client that leaves is cancelled, and a
//! closed queue turns new jobs away.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::model::generate::StopReason;
use crate::model::sampling::SamplingParams;
use crate::model::store::{ModelSource, ModelStore};
use crate::model::synth::{synth, SynthArch, SynthOptions};
use crate::orchestrator::{OpenModel, Orchestrator, OrchestratorConfig};

fn tiny_orchestrator(dir: &std::path::Path) -> Orchestrator {
    let opts = SynthOptions::preset(SynthArch::Llama, "tiny").expect("tiny preset");
    let path = dir.join("tiny.gguf");
    synth(&opts, &path, &mut |_, _| {}).expect("synth");
    let mut o = Orchestrator::new(OrchestratorConfig {
        store: ModelStore::new(dir.to_path_buf()),
        node_exe: PathBuf::from("shardlab-not-used-here"),
        threads_per_node: 1,
        step_timeout: Duration::from_secs(10),
        client_name: "test".into(),
    });
    o.context = Some(64);
    o.set_model(OpenModel::open_source("tiny", ModelSource::Gguf(path)).expect("opens"));
    o.ensure_runner(&mut |_| {}).expect("loads");
    o
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens: n,
        sampling: SamplingParams::greedy(),
        stop_strings: Vec::new(),
        stop_at_eos: false,
    }
}

type Events = Arc<Mutex<Vec<ServeEvent>>>;

/// A job whose events land in the returned list; the sink reports the
/// client gone once it has seen `leave_after` text pieces.
fn job(text: &str, tokens: usize, leave_after: Option<usize>) -> (ServeJob, Events) {
    let events: Events = Arc::default();
    let log = events.clone();
    let mut pieces = 0;
    let sink: EventSink = Box::new(move |event| {
        pieces += usize::from(matches!(event, ServeEvent::Text(_)));
        log.lock().unwrap().push(event);
        leave_after.is_none_or(|n| pieces < n)
    });
    let job = ServeJob {
        prompt: ServePrompt::Text(text.into()),
        opts: greedy(tokens),
        sink,
    };
    (job, events)
}

fn text_of(events: &Events) -> String {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ServeEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// Serves on this thread until every one of `n` jobs has ended, then closes.
fn serve_until(o: &mut Orchestrator, queue: &Arc<ServeQueue>, n: u64) {
    let watcher = queue.clone();
    let closer = std::thread::spawn(move || loop {
        let c = watcher.counts();
        if c.done + c.failed + c.cancelled >= n {
            watcher.close();
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    });
    o.serve(queue, 4).expect("serves");
    closer.join().unwrap();
}

#[test]
fn sequences_served_together_give_what_each_gives_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = tiny_orchestrator(dir.path());
    let prompts = ["The quick brown fox", "Once upon a time there was", "Hello"];
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| {
            let ids = o.require_model().unwrap().encode(p).unwrap();
            o.generate(&ids, &greedy(12), None, &mut |_| {}).unwrap().text
        })
        .collect();

    let queue = Arc::new(ServeQueue::new(8));
    let mut logs = Vec::new();
    for p in prompts {
        let (job, events) = job(p, 12, None);
        queue.push(job).unwrap();
        logs.push(events);
    }
    let too_long = "word ".repeat(100);
    let (refused, refused_events) = job(&too_long, 4, None);
    queue.push(refused).unwrap();
    let (leaving, leaving_events) = job("A client that leaves", 40, Some(2));
    queue.push(leaving).unwrap();
    serve_until(&mut o, &queue, 5);

    for (events, want) in logs.iter().zip(&alone) {
        assert_eq!(&text_of(events), want);
        let events = events.lock().unwrap();
        assert!(matches!(events.first(), Some(ServeEvent::Started { .. })));
        let Some(ServeEvent::Done(stats)) = events.last() else {
            panic!("no Done: {events:?}");
        };
        assert_eq!(stats.generated_tokens, 12);
        assert_eq!(stats.stop, StopReason::MaxTokens);
    }
    let refused = refused_events.lock().unwrap();
    assert!(
        matches!(
            refused.as_slice(),
            [ServeEvent::Failed(ServeFailure::ContextLength { context: 64, prompt })] if *prompt > 64
        ),
        "{refused:?}"
    );
    let leaving = leaving_events.lock().unwrap();
    assert!(
        !leaving.iter().any(|e| matches!(e, ServeEvent::Done(_))),
        "{leaving:?}"
    );
    let counts = queue.counts();
    assert_eq!((counts.done, counts.failed, counts.cancelled), (3, 1, 1));
    assert_eq!(counts.in_flight, 0);

    // Closed: new jobs are turned away.
    let (late, _) = job("late", 2, None);
    assert_eq!(queue.push(late).err(), Some(PushError::Closed));
}

#[test]
fn a_full_queue_refuses_and_closing_fails_the_waiting_jobs() {
    let queue = ServeQueue::new(1);
    let (first, first_events) = job("first", 2, None);
    queue.push(first).unwrap();
    let (second, _) = job("second", 2, None);
    assert_eq!(
        queue.push(second).err(),
        Some(PushError::Full(QueueFull { capacity: 1 }))
    );
    assert_eq!(queue.counts().queued, 1);
    queue.close();
    assert!(matches!(
        first_events.lock().unwrap().as_slice(),
        [ServeEvent::Failed(ServeFailure::ShuttingDown)]
    ));
    assert_eq!(queue.counts().queued, 0);
}
