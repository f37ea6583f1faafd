//! The serving loop on a tiny synthetic model in this process: sequences
//! served together give what each gives alone, a prompt over the context
//! is refused with its figures, a client that leaves is cancelled, and a
//! closed queue turns new jobs away.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::model::generate::GenerationStats;
use crate::model::generate::StopReason;
use crate::model::sampling::SamplingParams;
use crate::model::store::{ModelSource, ModelStore};
use crate::model::synth::{synth, SynthArch, SynthOptions};
use crate::orchestrator::{OpenModel, Orchestrator, OrchestratorConfig, OrchestratorError};

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
    assert_eq!(o.serve(queue, 4).expect("serves"), ServeEnd::Closed);
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
            o.generate(&ids, &greedy(12), None, &mut |_| {})
                .unwrap()
                .text
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

/// Runs turns until `n` jobs have ended (bounded: a stuck scheduler fails
/// the test instead of hanging it).
fn turns_until(o: &mut Orchestrator, serving: &mut Serving, n: u64) {
    for _ in 0..10_000 {
        let c = serving.queue().counts();
        if c.done + c.failed + c.cancelled >= n {
            return;
        }
        o.serve_turn(serving, Duration::from_millis(10))
            .expect("a turn runs");
    }
    panic!("jobs did not end: {:?}", serving.queue().counts());
}

fn done_stats(events: &Events) -> GenerationStats {
    match events.lock().unwrap().last() {
        Some(ServeEvent::Done(stats)) => stats.clone(),
        other => panic!("not done: {other:?}"),
    }
}

#[test]
fn a_continued_conversation_prefills_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = tiny_orchestrator(dir.path());
    let first = "The quick brown fox";
    let first_ids = o.require_model().unwrap().encode(first).unwrap();
    let answer = o
        .generate(&first_ids, &greedy(6), None, &mut |_| {})
        .unwrap()
        .text;
    let next = format!("{first}{answer} and then");
    let next_ids = o.require_model().unwrap().encode(&next).unwrap();
    let shared = first_ids
        .iter()
        .zip(&next_ids)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(shared >= 3, "the prompts share {shared} tokens");
    let alone = o
        .generate(&next_ids, &greedy(6), None, &mut |_| {})
        .unwrap()
        .text;

    let queue = Arc::new(ServeQueue::new(4));
    let mut serving = Serving::new(queue.clone(), 2);
    let (job1, events1) = job(first, 6, None);
    queue.push(job1).unwrap();
    turns_until(&mut o, &mut serving, 1);
    assert_eq!(text_of(&events1), answer);
    assert_eq!(done_stats(&events1).reused_tokens, 0);

    let (job2, events2) = job(&next, 6, None);
    queue.push(job2).unwrap();
    turns_until(&mut o, &mut serving, 2);
    // The same answer as a fresh prefill, with the shared prefix reused.
    assert_eq!(text_of(&events2), alone);
    let stats = done_stats(&events2);
    assert!(stats.reused_tokens >= shared, "{stats:?}");
    assert!(stats.reused_tokens < next_ids.len(), "{stats:?}");

    // An unrelated prompt shares at most the start-of-text token: it takes
    // the other slot, and still gives its own answer.
    let other = "Hello";
    let other_ids = o.require_model().unwrap().encode(other).unwrap();
    let other_alone = o
        .generate(&other_ids, &greedy(6), None, &mut |_| {})
        .unwrap()
        .text;
    let (job3, events3) = job(other, 6, None);
    queue.push(job3).unwrap();
    turns_until(&mut o, &mut serving, 3);
    assert_eq!(text_of(&events3), other_alone);
    assert_eq!(done_stats(&events3).reused_tokens, 0);
    // The conversation's cache is still there for its next turn.
    let (job4, events4) = job(&next, 6, None);
    queue.push(job4).unwrap();
    turns_until(&mut o, &mut serving, 4);
    assert_eq!(text_of(&events4), alone);
    assert_eq!(done_stats(&events4).reused_tokens, next_ids.len() - 1);
}

#[test]
fn a_re_plan_between_turns_fails_what_was_in_flight_and_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = tiny_orchestrator(dir.path());
    let queue = Arc::new(ServeQueue::new(4));
    let mut serving = Serving::new(queue.clone(), 2);
    let (long, long_events) = job("A long answer", 40, None);
    queue.push(long).unwrap();
    let turn = o
        .serve_turn(&mut serving, Duration::from_millis(10))
        .unwrap();
    assert_eq!(turn, Turn::Stepped);
    assert_eq!(serving.in_flight(), 1);

    // The workbench re-loads between turns.
    o.unload();
    o.ensure_runner(&mut |_| {}).expect("loads again");
    let (after, after_events) = job("Hello", 3, None);
    queue.push(after).unwrap();
    turns_until(&mut o, &mut serving, 2);
    assert!(
        matches!(
            long_events.lock().unwrap().last(),
            Some(ServeEvent::Failed(ServeFailure::Engine(m))) if m.contains("re-planned")
        ),
        "{long_events:?}"
    );
    assert_eq!(done_stats(&after_events).generated_tokens, 3);

    // With nothing loaded a turn says so, and the session can fail the jobs.
    o.unload();
    let (stranded, stranded_events) = job("Hello", 3, None);
    queue.push(stranded).unwrap();
    let err = o
        .serve_turn(&mut serving, Duration::from_millis(10))
        .unwrap_err();
    assert!(matches!(err, OrchestratorError::NothingLoaded), "{err}");
    serving.fail_all(ServeFailure::Engine(err.to_string()));
    assert!(matches!(
        stranded_events.lock().unwrap().as_slice(),
        [ServeEvent::Failed(ServeFailure::Engine(_))]
    ));
    assert_eq!(queue.counts().failed, 2);
}

#[test]
fn requests_wait_for_kv_room_and_one_that_can_never_fit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = tiny_orchestrator(dir.path());
    let queue = Arc::new(ServeQueue::new(4));
    let mut serving = Serving::new(queue.clone(), 4).cap_kv_positions(40);
    // Each may fill its prompt plus 20 positions: two do not fit in 40.
    let (a, a_events) = job("The quick brown fox", 20, None);
    let (b, b_events) = job("Once upon a time", 20, None);
    let (huge, huge_events) = job("Hello", 60, None);
    queue.push(a).unwrap();
    queue.push(b).unwrap();
    o.serve_turn(&mut serving, Duration::from_millis(10))
        .unwrap();
    assert_eq!(serving.in_flight(), 1, "the second waits for room");
    assert_eq!(queue.counts().queued, 1);
    assert!(serving.kv_reserved() <= 40);
    queue.push(huge).unwrap();
    turns_until(&mut o, &mut serving, 3);
    assert_eq!(done_stats(&a_events).generated_tokens, 20);
    assert_eq!(done_stats(&b_events).generated_tokens, 20);
    let huge_events = huge_events.lock().unwrap();
    assert!(
        matches!(
            huge_events.as_slice(),
            [ServeEvent::Failed(ServeFailure::KvBudget { room: 40, needed, .. })] if *needed > 40
        ),
        "{huge_events:?}"
    );
}
