//! Soak: 200 short greedy generations on 3 nodes while a node is killed
//! and restarted every 2 s, with recovery on. Every generation completes
//! with the reference tokens (a kill mid-generation is recovered from on
//! the survivors); a restarted node is admitted again at the next plan; the
//! coordinator's memory does not grow. The figures are printed (`cargo test
//! --test soak -- --nocapture`) and kept in RELIABILITY.md.

mod common;
mod netlab;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::PROMPT;
use netlab::shell::wait_until;
use netlab::{NodeProc, Nodes, EXE};
use shardlab_engine::metrics::memory::current_rss_bytes;
use shardlab_engine::metrics::quantile;
use shardlab_engine::model::generate::GenerateOptions;
use shardlab_engine::model::sampling::SamplingParams;
use shardlab_engine::model::store::ModelStore;
use shardlab_engine::orchestrator::{NodesSpec, Orchestrator, OrchestratorConfig};
use shardlab_engine::shard::plan::LayoutRequest;

const GENERATIONS: usize = 200;
const TOKENS: usize = 4;
/// A kill (and restart) this often.
const KILL_EVERY: Duration = Duration::from_secs(2);
/// Generations are paced to at least this long each, so that even a fast
/// machine spends long enough (12 s) for several kills to land.
const MIN_GENERATION: Duration = Duration::from_millis(60);
/// The whole soak must finish in this long.
const TIME_LIMIT: Duration = Duration::from_secs(240);
/// The coordinator may grow by at most this much after warming up.
const RSS_SLACK: u64 = 64 << 20;

fn greedy() -> GenerateOptions {
    GenerateOptions {
        max_tokens: TOKENS,
        sampling: SamplingParams::greedy(),
        stop_strings: Vec::new(),
        stop_at_eos: false,
    }
}

/// Plans tensor again over the live nodes and any lost node that answers
/// at its address again (retried while a node is restarting; bounded).
/// Returns how many nodes came back.
fn replan(o: &mut Orchestrator) -> usize {
    let mut back = 0;
    let done = wait_until(Duration::from_secs(30), || {
        let outcome = o.shard(&LayoutRequest::Tensor, &|_| {}, &mut |_| {}).ok()?;
        back += outcome.readmitted.len();
        Some(())
    });
    assert!(done.is_some(), "could not re-plan in 30 s");
    back
}

fn rss() -> u64 {
    current_rss_bytes().unwrap_or(0)
}

#[test]
fn generations_survive_nodes_killed_and_restarted_and_memory_stays_flat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = Nodes::start(dir.path(), 3, 2.0, None);
    let mut o = Orchestrator::new(OrchestratorConfig {
        store: ModelStore::from_env().expect("store"),
        node_exe: PathBuf::from(EXE),
        threads_per_node: 1,
        step_timeout: Duration::from_secs(5),
        client_name: "soak".into(),
    });
    o.context = Some(256);
    o.connect(NodesSpec::Remote {
        addrs: nodes.addrs(),
        token_file: Some(nodes.token_file.clone()),
    })
    .expect("connects");
    let model = o.open_model("smollm2", &mut |_| {}).expect("opens");
    o.set_model(model);
    replan(&mut o);
    let reference = o
        .generate(&PROMPT[..3], &greedy(), None, &mut |_| {})
        .expect("the reference generation")
        .ids;
    assert_eq!(reference.len(), TOKENS);
    let procs: Arc<Mutex<Vec<NodeProc>>> = Arc::new(Mutex::new(nodes.procs));

    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (procs, done, kills) = (procs.clone(), done.clone(), kills.clone());
        std::thread::spawn(move || {
            // Bounded: at most one kill per KILL_EVERY within TIME_LIMIT.
            for k in 0..(TIME_LIMIT.as_secs() / KILL_EVERY.as_secs()) as usize {
                let slept = wait_until(KILL_EVERY, || done.load(Ordering::SeqCst).then_some(()));
                if slept.is_some() {
                    return;
                }
                let Ok(mut p) = procs.lock() else { return };
                let i = k % p.len();
                p[i].kill();
                kills.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300));
                let spec = p[i].spec.clone();
                match NodeProc::try_start(&spec) {
                    Ok(fresh) => p[i] = fresh,
                    Err(e) => panic!("restarting {}: {e}", spec.name),
                }
            }
        })
    };

    let started = Instant::now();
    let (mut readmitted, mut replans) = (0usize, 0usize);
    let mut recovery_seconds: Vec<f64> = Vec::new();
    let mut rss_warm = 0;
    for g in 0..GENERATIONS {
        assert!(
            started.elapsed() < TIME_LIMIT,
            "the soak ran past {TIME_LIMIT:?} after {g} generations"
        );
        let this = Instant::now();
        // A node lost between generations is met by this one's first step,
        // and recovered from like any other.
        let ids = match o.generate(&PROMPT[..3], &greedy(), None, &mut |_| {}) {
            Ok(g) => g.ids,
            Err(e) => panic!("generation {g} failed: {e}"),
        };
        assert_eq!(ids, reference, "generation {g}");
        o.forget_cache();
        recovery_seconds.extend(o.take_recoveries().iter().map(|r| r.seconds));
        // Restarted nodes join again at the next plan.
        if !o.cluster().expect("nodes").lost().is_empty() {
            readmitted += replan(&mut o);
            replans += 1;
        }
        std::thread::sleep(MIN_GENERATION.saturating_sub(this.elapsed()));
        // Warm-up: the first 20 generations (and any recovery in them).
        if g == 19 {
            rss_warm = rss();
        }
    }
    let rss_end = rss();
    done.store(true, Ordering::SeqCst);
    killer.join().expect("the killer thread");
    let kills = kills.load(Ordering::SeqCst);
    let recoveries = recovery_seconds.len();
    eprintln!(
        "soak: {GENERATIONS} completed with the reference tokens, {kills} kills, {recoveries} \
         recoveries (p50 {:.2} s, max {:.2} s), {replans} re-plans admitting {readmitted} \
         restarted nodes, {:.0} s; coordinator RSS {:.1} MiB after warm-up, {:.1} MiB at the end",
        quantile(&recovery_seconds, 0.5).unwrap_or(0.0),
        recovery_seconds.iter().cloned().fold(0.0, f64::max),
        started.elapsed().as_secs_f64(),
        rss_warm as f64 / (1 << 20) as f64,
        rss_end as f64 / (1 << 20) as f64,
    );
    assert!(kills >= 3, "the soak saw kills: {kills}");
    assert!(recoveries >= 1, "some generation met a kill");
    assert!(readmitted >= 1, "restarted nodes came back");
    assert!(rss_warm > 0, "RSS is readable");
    assert!(
        rss_end < rss_warm + RSS_SLACK,
        "the coordinator grew from {rss_warm} to {rss_end} bytes"
    );
}
