//! Soak: 200 short generations on 3 nodes while a node is killed and
//! restarted every few seconds. Every generation completes or fails naming
//! a node; the coordinator's memory does not grow. The figures are printed
//! (`cargo test --test soak -- --nocapture`) and kept in RELIABILITY.md.

mod common;
mod netlab;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{smollm2, try_load, Model, PROMPT};
use netlab::model::generate;
use netlab::shell::wait_until;
use netlab::{NodeProc, Nodes};
use shardlab_engine::cluster::coordinator::Cluster;
use shardlab_engine::metrics::memory::current_rss_bytes;
use shardlab_engine::net::Token;
use shardlab_engine::shard::plan::LayoutRequest;

const GENERATIONS: usize = 200;
const TOKENS: usize = 4;
/// A kill (and restart) this often.
const KILL_EVERY: Duration = Duration::from_secs(2);
/// Generations are paced to at least this long each, so that even a fast
/// machine spends long enough (12 s) for several kills to land.
const MIN_GENERATION: Duration = Duration::from_millis(60);
/// The whole soak must finish in this long.
const TIME_LIMIT: Duration = Duration::from_secs(150);
/// The coordinator may grow by at most this much after warming up.
const RSS_SLACK: u64 = 64 << 20;

/// Connects to every node and loads; retried while a node is restarting
/// (bounded). Returns the cluster and how many tries it took.
fn rebuild(addrs: &[String], token: &Token, m: &Model) -> (Cluster, usize) {
    let mut tries = 0;
    let built = wait_until(Duration::from_secs(30), || {
        tries += 1;
        let mut c = Cluster::connect(addrs, token.clone(), "soak").ok()?;
        c.step_deadline = Duration::from_secs(5);
        try_load(&mut c, m, &LayoutRequest::Tensor, &|_| {}).ok()?;
        Some(c)
    });
    match built {
        Some(c) => (c, tries),
        None => panic!("could not rebuild the cluster in 30 s ({tries} tries)"),
    }
}

fn rss() -> u64 {
    current_rss_bytes().unwrap_or(0)
}

#[test]
fn generations_survive_nodes_killed_and_restarted_and_memory_stays_flat() {
    let m = smollm2();
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = Nodes::start(dir.path(), 3, 2.0, None);
    let (addrs, token) = (nodes.addrs(), nodes.token());
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
    let (mut cluster, _) = rebuild(&addrs, &token, &m);
    let (mut completed, mut failed, mut rebuilds) = (0usize, 0usize, 0usize);
    let mut failures: Vec<String> = Vec::new();
    let mut rss_warm = 0;
    for g in 0..GENERATIONS {
        assert!(
            started.elapsed() < TIME_LIMIT,
            "the soak ran past {TIME_LIMIT:?} after {g} generations"
        );
        let this = Instant::now();
        match generate(&mut cluster, &PROMPT[..3], TOKENS) {
            Ok(tokens) => {
                assert_eq!(tokens.len(), TOKENS);
                completed += 1;
            }
            Err(e) => {
                assert!(e.node.starts_with("node"), "the failure names a node: {e}");
                failed += 1;
                if failures.len() < 5 {
                    failures.push(e.to_string());
                }
                drop(cluster);
                let (c, _) = rebuild(&addrs, &token, &m);
                cluster = c;
                rebuilds += 1;
            }
        }
        std::thread::sleep(MIN_GENERATION.saturating_sub(this.elapsed()));
        // Warm-up: the first 20 generations (and any rebuild in them).
        if g == 19 {
            rss_warm = rss();
        }
    }
    let rss_end = rss();
    done.store(true, Ordering::SeqCst);
    killer.join().expect("the killer thread");
    let kills = kills.load(Ordering::SeqCst);
    eprintln!(
        "soak: {completed} completed, {failed} failed (each naming a node), {kills} kills, \
         {rebuilds} rebuilds, {:.0} s; coordinator RSS {:.1} MiB after warm-up, {:.1} MiB at the end",
        started.elapsed().as_secs_f64(),
        rss_warm as f64 / (1 << 20) as f64,
        rss_end as f64 / (1 << 20) as f64,
    );
    for f in &failures {
        eprintln!("  e.g. {f}");
    }
    assert_eq!(completed + failed, GENERATIONS);
    assert!(kills >= 3, "the soak saw kills: {kills}");
    assert!(failed >= 1, "some generation met a kill");
    assert!(rss_warm > 0, "RSS is readable");
    assert!(
        rss_end < rss_warm + RSS_SLACK,
        "the coordinator grew from {rss_warm} to {rss_end} bytes"
    );
}
