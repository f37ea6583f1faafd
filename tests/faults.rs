//! The fault matrix over real processes (RELIABILITY.md lists every row
//! and its test): nodes killed during load, prefill and decode, a host cut
//! off, a node made slow, the coordinator killed (its own local nodes
//! then ending with it), coordinators racing,
//! damaged model files and cached shards, and the security defaults
//! (loopback, replayed handshakes, secrets kept out of logs).

mod common;
mod netlab;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{argmax, load, smollm2, try_load, PROMPT};
use netlab::model::generate;
use netlab::shell::{wait_for_file, wait_until, ShellProc};
use netlab::{signal, Lab, Nodes};
use shardlab_engine::cluster::coordinator::{Cluster, LoadProgress, LocalNodeOptions};
use shardlab_engine::cluster::messages::Phase;
use shardlab_engine::cluster::node::shard_cache::ShardCache;
use shardlab_engine::shard::plan::LayoutRequest;

/// Detection bound for a killed node (a requirement, not a benchmark: the
/// closed connection is seen at once; 2 s is the issue's promise).
const NAMED_WITHIN: Duration = Duration::from_secs(2);

fn local(home: &std::path::Path, extra: &[&str]) -> LocalNodeOptions {
    LocalNodeOptions {
        exe: PathBuf::from(netlab::EXE),
        home: home.to_path_buf(),
        threads_per_node: 1,
        threads_each: Vec::new(),
        mem_limits: Vec::new(),
        pin_cores: false,
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
    }
}

/// Stops the process now and SIGKILLs it 300 ms later, so the kill lands
/// while the step sent in between is in flight. Returns when it was killed.
fn kill_in_flight(pid: u32) -> std::thread::JoinHandle<Instant> {
    signal(pid, "STOP");
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        signal(pid, "KILL");
        Instant::now()
    })
}

#[test]
fn a_node_killed_during_load_is_named_leaves_no_cache_entry_and_survivors_replan() {
    let m = smollm2();
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::spawn_local(3, &local(home.path(), &[]), "faults").expect("spawns");
    let victim = cluster.nodes()[1].label();
    let pid = cluster.local_nodes().expect("local").pids[1];
    let killed: Mutex<Option<Instant>> = Mutex::new(None);
    let fired = AtomicBool::new(false);
    let progress = |p: LoadProgress| {
        if let LoadProgress::Sending { node, sent, .. } = &p {
            if node.starts_with("node1 ") && *sent > 0 && !fired.swap(true, Ordering::SeqCst) {
                signal(pid, "KILL");
                if let Ok(mut k) = killed.lock() {
                    *k = Some(Instant::now());
                }
            }
        }
    };
    let err =
        try_load(&mut cluster, &m, &LayoutRequest::Tensor, &progress).expect_err("the load fails");
    let took = killed
        .lock()
        .expect("lock")
        .expect("node1 was killed mid-stream")
        .elapsed();
    assert!(took < NAMED_WITHIN, "named after {took:?}");
    assert_eq!(err.node, victim, "{err}");
    assert_eq!(err.phase, Phase::Load, "{err}");

    // Atomic cache writes: the killed node's half-received shard is not an
    // entry (only a dot-named temporary directory may remain).
    let cache = home.path().join("nodes").join("local-1");
    assert!(ShardCache::new(cache.clone()).list().is_empty());
    if let Ok(entries) = std::fs::read_dir(cache.join("shards")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            assert!(name.starts_with('.'), "a partial entry was left: {name}");
        }
    }

    assert_eq!(cluster.remove_failed(), vec![victim]);
    load(&mut cluster, &m, &LayoutRequest::Tensor);
    let got = generate(&mut cluster, &PROMPT, 8).expect("survivors generate");
    assert_eq!(got.len(), 8);
}

#[test]
fn nodes_killed_during_prefill_and_decode_are_named_and_survivors_replan_twice() {
    let m = smollm2();
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::spawn_local(3, &local(home.path(), &[]), "faults").expect("spawns");
    load(&mut cluster, &m, &LayoutRequest::Tensor);
    let expected = generate(&mut cluster, &PROMPT, 8).expect("three nodes generate");

    // Prefill, with node1 killed while the step is in flight.
    let victim = cluster.nodes()[1].label();
    let pid = cluster.local_nodes().expect("local").pids[1];
    let killer = kill_in_flight(pid);
    let err = cluster.step(&PROMPT, 0).expect_err("the prefill fails");
    let failed_at = Instant::now();
    let killed_at = killer.join().expect("killer");
    let took = failed_at.saturating_duration_since(killed_at);
    assert!(took < NAMED_WITHIN, "named {took:?} after the kill");
    assert_eq!(err.node, victim, "{err}");
    assert_eq!(err.phase, Phase::Prefill, "{err}");
    assert_eq!(cluster.remove_failed(), vec![victim]);

    // Re-planned on two; then node2 killed mid-decode.
    load(&mut cluster, &m, &LayoutRequest::Tensor);
    let mut logits = cluster.step(&PROMPT, 0).expect("prefill on two");
    for pos in PROMPT.len()..PROMPT.len() + 3 {
        logits = cluster
            .step(&[argmax(&logits)], pos)
            .expect("decode on two");
    }
    let victim = cluster.nodes()[1].label();
    assert!(victim.starts_with("node2 "), "{victim}");
    let pid = cluster.local_nodes().expect("local").pids[2];
    let killer = kill_in_flight(pid);
    let err = cluster
        .step(&[argmax(&logits)], PROMPT.len() + 3)
        .expect_err("the decode step fails");
    let failed_at = Instant::now();
    let killed_at = killer.join().expect("killer");
    let took = failed_at.saturating_duration_since(killed_at);
    assert!(took < NAMED_WITHIN, "named {took:?} after the kill");
    assert_eq!(err.node, victim, "{err}");
    assert_eq!(err.phase, Phase::Decode, "{err}");
    assert!(err.to_string().contains("decode"), "{err}");

    // The last survivor runs the whole model, and gives the same tokens.
    assert_eq!(cluster.remove_failed(), vec![victim]);
    load(&mut cluster, &m, &LayoutRequest::Single);
    assert_eq!(
        generate(&mut cluster, &PROMPT, 8).expect("one node"),
        expected
    );
}

#[test]
fn a_host_cut_off_is_named_by_its_heartbeat_and_rate_limits_hold() {
    let m = smollm2();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::new(3);
    // Step deadlines far longer than the heartbeat's silence (1.5 s): only
    // the heartbeat can name the host in time.
    let nodes = Nodes::start(dir.path(), 3, 60.0, Some(&lab));
    let mut cluster = Cluster::connect(&nodes.addrs(), nodes.token(), "faults").expect("connects");
    cluster.step_deadline = Duration::from_secs(120);
    for (h, host) in cluster.nodes().iter().zip(&lab.hosts) {
        assert!(
            h.addr.starts_with(&host.ip),
            "{} is its own host",
            h.label()
        );
    }

    // The lab's rate limit is real: 8 Mbit/s is 1 MB/s each way.
    let (_, fast) = cluster.measure_bandwidth(2, 1 << 20).expect("measures");
    lab.limit_rate(0, "8mbit");
    let (up, down) = cluster.measure_bandwidth(0, 1 << 20).expect("measures");
    lab.unlimit(0);
    assert!(up < 3e6 && down < 3e6, "limited to {up:.0}/{down:.0} B/s");
    assert!(fast > 3e6, "unlimited is faster: {fast:.0} B/s");

    load(&mut cluster, &m, &LayoutRequest::Tensor);
    let mut logits = cluster.step(&PROMPT, 0).expect("prefill");
    let pos = PROMPT.len();
    logits = cluster.step(&[argmax(&logits)], pos).expect("decode");
    let victim = cluster.nodes()[1].label();
    lab.cut(1);
    let err = cluster
        .step(&[argmax(&logits)], pos + 1)
        .expect_err("the step fails");
    let msg = err.to_string();
    assert_eq!(err.node, victim, "{msg}");
    assert!(msg.contains("during decode"), "{msg}");
    assert!(msg.contains("stopped answering heartbeats"), "{msg}");

    assert_eq!(cluster.remove_failed(), vec![victim]);
    load(&mut cluster, &m, &LayoutRequest::Tensor);
    assert_eq!(
        generate(&mut cluster, &PROMPT, 6).expect("survivors").len(),
        6
    );
    lab.restore(1);
}

fn exec(session: &mut shardlab_repl::Session, line: &str) -> String {
    let out = session.exec_line(line, &mut shardlab_repl::session::NullSink);
    shardlab_repl::output::text::render(&out, false)
}

/// What a session streams: generated text, and notes on lines of their own.
#[derive(Default)]
struct Streamed(String);

impl shardlab_repl::session::Sink for Streamed {
    fn text(&mut self, piece: &str) {
        self.0.push_str(piece);
    }
    fn note(&mut self, line: &shardlab_repl::output::Rich) {
        self.0.push_str(&format!("\n{}\n", line.render(false)));
    }
}

/// A session in this process (step deadline 3 s) with SmolLM2 sharded
/// tensor over `nodes`, then `settings` applied.
fn sharded_session(nodes: &Nodes, settings: &[&str]) -> shardlab_repl::Session {
    sharded_session_with(nodes, settings, Duration::from_secs(3))
}

/// The same with its own step deadline.
fn sharded_session_with(
    nodes: &Nodes,
    settings: &[&str],
    step_timeout: Duration,
) -> shardlab_repl::Session {
    let mut session = shardlab_repl::Session::new(shardlab_repl::SessionConfig {
        store: shardlab_engine::model::store::ModelStore::from_env().expect("store"),
        node_exe: PathBuf::from(netlab::EXE),
        threads_per_node: 1,
        step_timeout,
        link: None,
    });
    let connect = format!(
        ":connect {} --token-file {}",
        nodes.addrs().join(","),
        nodes.token_file.display()
    );
    let setup = [connect.as_str(), ":load smollm2", ":shard tensor"];
    for line in setup.iter().chain(settings) {
        let out = exec(&mut session, line);
        assert!(!out.contains("error"), "{line}: {out}");
    }
    session
}

/// A prompt's streamed text and notes.
fn ask(session: &mut shardlab_repl::Session, prompt: &str) -> String {
    let mut streamed = Streamed::default();
    let out = session.exec_line(prompt, &mut streamed);
    let rendered = shardlab_repl::output::text::render(&out, false);
    assert!(!rendered.contains("error"), "{rendered}");
    streamed.0
}

#[test]
fn a_slow_node_is_the_straggler_in_stats_and_a_stopped_one_is_named_by_its_heartbeat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = Nodes::start(dir.path(), 3, 1.5, None);
    // Recovery off: this row is about naming the silent node
    // (recovery itself: tests/recovery.rs and the transcripts).
    let mut session = sharded_session(&nodes, &[":set max_tokens 6", ":set recover off"]);
    // node1 on a slowed core: stopped 3/4 of the time while it generates.
    let node1 = nodes.procs[1].pid();
    let stop = Arc::new(AtomicBool::new(false));
    let slower = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for _ in 0..3000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                signal(node1, "STOP");
                std::thread::sleep(Duration::from_millis(60));
                signal(node1, "CONT");
                std::thread::sleep(Duration::from_millis(20));
            }
            signal(node1, "CONT");
        })
    };
    let out = exec(&mut session, "The capital of France is");
    stop.store(true, Ordering::SeqCst);
    slower.join().expect("slower");
    assert!(!out.contains("failed"), "a slow node only slows: {out}");
    let stats = exec(&mut session, ":stats");
    let label = format!("node1 ({})", nodes.procs[1].addr);
    assert!(
        stats.contains(&format!("straggler: {label}")),
        "{label} is the straggler:\n{stats}"
    );

    // Stopped outright: named by its heartbeat, and the session goes on.
    signal(node1, "STOP");
    let out = exec(&mut session, "The capital of France is");
    signal(node1, "CONT");
    assert!(out.contains(&label), "{out}");
    assert!(out.contains("stopped answering heartbeats"), "{out}");
    let out = exec(&mut session, ":shard tensor");
    assert!(!out.contains("error"), "re-plans on the survivors: {out}");
    let out = exec(&mut session, "The capital of France is");
    assert!(out.contains("Paris") || out.len() > 10, "{out}");
    assert!(!out.contains("failed"), "{out}");
}

/// Stops `pid` 300 ms from now: into a long prompt's prefill (or, on a
/// fast host, early in its decode; a step is under way either way).
fn stop_soon(pid: u32) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        signal(pid, "STOP");
    })
}

#[test]
fn a_node_stopped_during_a_long_prefill_is_named_by_its_heartbeat_and_recovered_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Deadlines of a minute and more: the heartbeat (1.5 s of silence) is
    // what names the node, mid-step.
    let nodes = Nodes::start(dir.path(), 3, 60.0, None);
    let mut session = sharded_session_with(
        &nodes,
        &[
            ":set max_tokens 16",
            ":set temperature 0",
            ":set recover off",
        ],
        Duration::from_secs(120),
    );
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(150);
    let node1 = nodes.procs[1].pid();
    let label = format!("node1 ({})", nodes.procs[1].addr);
    let stopper = stop_soon(node1);
    let out = exec(&mut session, &prompt);
    stopper.join().expect("stopper");
    signal(node1, "CONT");
    assert!(out.contains(&label), "names node1: {out}");
    assert!(out.contains("stopped answering heartbeats"), "{out}");
    assert!(!out.contains("did not answer within"), "{out}");

    // Recovery on, on three fresh nodes: the same stop, and the answer is
    // the uninterrupted one.
    drop(session);
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = Nodes::start(dir.path(), 3, 60.0, None);
    let node1 = nodes.procs[1].pid();
    let label = format!("node1 ({})", nodes.procs[1].addr);
    let mut session = sharded_session_with(
        &nodes,
        &[":set max_tokens 16", ":set temperature 0"],
        Duration::from_secs(120),
    );
    let stopper = stop_soon(node1);
    let stopped = ask(&mut session, &prompt);
    stopper.join().expect("stopper");
    signal(node1, "CONT");
    // Asked again on the two left, from a fresh conversation (the same
    // tokens as an uninterrupted run: every layout gives one node's tokens).
    exec(&mut session, ":reset");
    let reference = ask(&mut session, &prompt);
    assert!(
        stopped.contains(&format!("recovered: {label} left during")),
        "{stopped}"
    );
    let answer = |out: &str| {
        out.lines()
            .filter(|l| !l.starts_with("recovered: "))
            .collect::<String>()
    };
    assert_eq!(answer(&stopped), answer(&reference), "{stopped}");
}

#[test]
fn a_stopped_node_is_recovered_from_shut_out_when_it_wakes_and_joins_again_by_connect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = Nodes::start(dir.path(), 3, 1.5, None);
    let mut session = sharded_session(&nodes, &[":set max_tokens 8", ":set temperature 0"]);
    let prompt = "The capital of France is";
    let reference = ask(&mut session, prompt);
    // The text without the recovery note.
    let answer = |out: &str| {
        out.lines()
            .filter(|l| !l.starts_with("recovered: "))
            .collect::<String>()
    };

    // Stopped: named when the step deadline passes, dropped, recovered
    // from on the two others; the same text.
    let node1 = nodes.procs[1].pid();
    signal(node1, "STOP");
    let out = exec(&mut session, ":reset");
    assert!(!out.contains("error"), "{out}");
    let stopped = ask(&mut session, prompt);
    assert_eq!(answer(&stopped), answer(&reference), "{stopped}");
    let label = format!("node1 ({})", nodes.procs[1].addr);
    assert!(
        stopped.contains(&format!("recovered: {label} left during")),
        "{stopped}"
    );
    let table = exec(&mut session, ":nodes");
    assert!(!table.contains("node1"), "node1 is out: {table}");

    // Woken up: its connections were closed when it was declared dead, so
    // nothing it sends reaches the session it left, which goes on.
    signal(node1, "CONT");
    std::thread::sleep(Duration::from_millis(300));
    let after = ask(&mut session, prompt);
    assert_eq!(answer(&after), answer(&reference), "{after}");
    let log = nodes.procs[1].log();
    assert!(log.contains("left"), "node1 saw its session end:\n{log}");

    // It answers at its address: `:connect` takes it back under its name,
    // and the next plan spreads the model over all three again.
    let joined = exec(
        &mut session,
        &format!(
            ":connect {} --token-file {}",
            nodes.procs[1].addr,
            nodes.token_file.display()
        ),
    );
    assert!(
        joined.contains(&format!("joined {label}; 3 nodes")),
        "{joined}"
    );
    let twice = exec(&mut session, &format!(":connect {}", nodes.procs[0].addr));
    assert!(twice.contains("is connected already"), "{twice}");
    let replanned = exec(&mut session, ":shard tensor");
    assert!(
        replanned.contains("sharded tensor over 3 nodes"),
        "{replanned}"
    );
    let again = ask(&mut session, prompt);
    assert_eq!(answer(&again), answer(&reference), "{again}");
}

#[test]
fn a_killed_coordinator_frees_its_nodes_and_secrets_stay_out_of_logs() {
    let m = smollm2();
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = Nodes::start(dir.path(), 2, 10.0, None);
    let mut shell = ShellProc::start(&[]);
    shell.send(&format!(
        ":connect {} --token-file {}",
        nodes.addrs().join(","),
        nodes.token_file.display()
    ));
    for line in [
        ":nodes",
        ":load smollm2",
        ":shard tensor",
        ":set ignore_eos on",
        ":set max_tokens 4000",
        "Tell me a long story",
    ] {
        shell.send(line);
    }
    let limit = Duration::from_secs(120);
    shell.wait_for(limit, |o| o.contains("Tell me a long story"));
    // An intruder with the wrong token, for the logs to mention.
    let wrong = Cluster::connect(
        &nodes.addrs(),
        shardlab_engine::net::Token::generate(),
        "intruder",
    );
    assert!(wrong.is_err());
    std::thread::sleep(Duration::from_millis(500));
    shell.kill();

    // The next coordinator gets in once the nodes notice (bounded wait).
    let mut next = wait_until(Duration::from_secs(10), || {
        Cluster::connect(&nodes.addrs(), nodes.token(), "next").ok()
    })
    .expect("the nodes accept the next coordinator");
    load(&mut next, &m, &LayoutRequest::Tensor);
    assert_eq!(generate(&mut next, &PROMPT, 4).expect("generates").len(), 4);
    for p in &nodes.procs {
        assert!(p.log().contains("left; shard released"), "{}", p.log());
    }

    let token = nodes.token_text();
    assert!(token.len() >= 32, "a real token");
    let out = shell.output();
    assert!(out.contains("node1"), "`:nodes` ran: {out}");
    assert!(!out.contains(&token), "the shell printed the token:\n{out}");
    for p in &nodes.procs {
        assert!(
            !p.log().contains(&token),
            "{} logged the token",
            p.spec.name
        );
    }
}

/// Pids of the running processes whose command line holds `text`.
#[cfg(target_os = "linux")]
fn processes_with(text: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(text)
                .then_some(pid)
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn a_coordinator_killed_outright_takes_the_local_nodes_it_started_with_it() {
    // SIGKILL: no destructor of the coordinator's runs, so only the nodes
    // themselves can notice (their stdin pipe closes).
    let mut shell = ShellProc::start(&[]);
    shell.send(":connect local 2");
    shell.send(":nodes");
    shell.wait_for(Duration::from_secs(60), |o| o.contains("node1"));
    // Local nodes keep their token under run/local-<coordinator pid>-*/.
    let marker = format!("local-{}-", shell.pid());
    let nodes = wait_until(Duration::from_secs(10), || {
        let pids = processes_with(&marker);
        (pids.len() == 2).then_some(pids)
    })
    .unwrap_or_else(|| panic!("two node processes: {:?}", processes_with(&marker)));
    shell.kill();
    let gone = wait_until(Duration::from_secs(10), || {
        processes_with(&marker).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "nodes {nodes:?} outlived their killed coordinator: {:?} still run",
        processes_with(&marker)
    );
}

#[test]
fn two_coordinators_racing_for_one_node_one_wins_the_other_is_told_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = Nodes::start(dir.path(), 1, 10.0, None);
    for round in 0..3 {
        // A race right after the last coordinator left may find the node
        // still releasing it (both told busy): run it again, a bounded
        // number of times.
        let mut results = Vec::new();
        for _ in 0..50 {
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let racers: Vec<_> = ["red", "blue"]
                .into_iter()
                .map(|name| {
                    let (addrs, token, barrier) = (nodes.addrs(), nodes.token(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Cluster::connect(&addrs, token, name)
                    })
                })
                .collect();
            results = racers
                .into_iter()
                .map(|r| r.join().expect("racer"))
                .collect();
            if results.iter().any(|r| r.is_ok()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: exactly one wins");
        let loser = results
            .iter()
            .find_map(|r| r.as_ref().err())
            .expect("one loses");
        assert!(loser.to_string().contains("busy"), "{loser}");
    }
}

#[test]
fn a_corrupted_cached_shard_is_caught_by_its_hash_and_fetched_again() {
    let m = smollm2();
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::spawn_local(1, &local(home.path(), &[]), "faults").expect("spawns");
    load(&mut cluster, &m, &LayoutRequest::Single);
    let expected = generate(&mut cluster, &PROMPT, 6).expect("generates");
    cluster.unload();

    // Flip a byte in the middle of the cached tensor data.
    let shards = home.path().join("nodes").join("local-0").join("shards");
    let entry = std::fs::read_dir(&shards)
        .expect("the shard was cached")
        .flatten()
        .find(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .expect("one entry");
    let data = entry.path().join("tensors.bin");
    let mut bytes = std::fs::read(&data).expect("reads");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&data, &bytes).expect("writes");

    let second = load(&mut cluster, &m, &LayoutRequest::Single);
    let (_, report) = &second.nodes[0];
    assert!(!report.from_cache, "the corrupt copy is not used");
    assert!(report.received_bytes > 10 << 20, "fetched again");
    assert_eq!(
        generate(&mut cluster, &PROMPT, 6).expect("generates"),
        expected
    );
    let log =
        std::fs::read_to_string(cluster.local_nodes().expect("local").log_path(0)).expect("log");
    assert!(log.contains("was corrupt"), "{log}");
}

#[test]
fn a_truncated_gguf_or_safetensors_error_names_the_file_and_the_tensor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = shardlab_engine::model::store::default_model_path().expect("model");
    let whole = std::fs::read(&source).expect("reads the model");
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &whole[..whole.len() - (1 << 20)]).expect("writes");
    let Err(err) = shardlab_engine::model::gguf::GgufFile::open(&cut) else {
        panic!("a truncated file is refused");
    };
    let msg = err.to_string();
    assert!(msg.contains("cut.gguf"), "names the file: {msg}");
    let names_tensor = ["token_embd", "output", "blk."]
        .iter()
        .any(|t| msg.contains(t));
    assert!(names_tensor, "names the tensor: {msg}");

    // safetensors: a tensor whose data runs past the end of the file.
    let header =
        br#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header);
    st.extend_from_slice(&[0u8; 40]);
    let path = dir.path().join("model.safetensors");
    let Err(err) = shardlab_engine::model::hf::safetensors::parse_header(&path, &st) else {
        panic!("a truncated tensor is refused");
    };
    let msg = err.to_string();
    assert!(msg.contains("model.safetensors"), "{msg}");
    assert!(msg.contains("model.embed_tokens.weight"), "{msg}");
}

#[test]
fn nodes_bind_loopback_unless_told_otherwise() {
    let help = std::process::Command::new(netlab::EXE)
        .args(["node", "--help"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("[default: 127.0.0.1:7070]"), "{text}");
    let home = tempfile::tempdir().expect("tempdir");
    let nodes =
        shardlab_engine::cluster::coordinator::LocalNodes::spawn(2, &local(home.path(), &[]))
            .expect("spawns");
    for a in &nodes.addrs {
        assert!(a.starts_with("127.0.0.1:"), "{a}");
    }
}

/// Forwards connections to `to`, keeping what the client sent on the
/// first (the coordinator's; its heartbeat connection follows it and is
/// only forwarded).
fn recording_proxy(to: String) -> (String, std::thread::JoinHandle<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("addr").to_string();
    let handle = std::thread::spawn(move || {
        let (mut client, _) = listener.accept().expect("accepts");
        let also = to.clone();
        std::thread::spawn(move || {
            for other in listener.incoming().take(4) {
                let (Ok(mut other), Ok(mut server)) = (other, TcpStream::connect(&also)) else {
                    return;
                };
                let (Ok(mut other_back), Ok(mut server_back)) =
                    (other.try_clone(), server.try_clone())
                else {
                    return;
                };
                std::thread::spawn(move || std::io::copy(&mut server_back, &mut other_back));
                std::thread::spawn(move || std::io::copy(&mut other, &mut server));
            }
        });
        let mut server = TcpStream::connect(&to).expect("connects to the node");
        let mut back = server.try_clone().expect("clone");
        let mut client_back = client.try_clone().expect("clone");
        let pump = std::thread::spawn(move || {
            let _ = std::io::copy(&mut back, &mut client_back);
        });
        let mut recorded = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    recorded.extend_from_slice(&buf[..n]);
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server.shutdown(std::net::Shutdown::Both);
        let _ = pump.join();
        recorded
    });
    (addr, handle)
}

#[test]
fn a_recorded_handshake_replayed_to_a_node_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = Nodes::start(dir.path(), 1, 10.0, None);
    let (proxy, recorder) = recording_proxy(nodes.addrs()[0].clone());
    let mut c = Cluster::connect(&[proxy], nodes.token(), "honest").expect("gets in");
    c.refresh().expect("talks");
    drop(c);
    let recorded = recorder.join().expect("recorder");
    assert!(recorded.len() > 64, "the handshake was recorded");
    let _ = wait_until(Duration::from_secs(5), || {
        Cluster::connect(&nodes.addrs(), nodes.token(), "probe").ok()
    })
    .expect("the node frees up");

    // Replay every byte the honest coordinator sent.
    let mut s = TcpStream::connect(&nodes.addrs()[0]).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(9)))
        .expect("timeout");
    let _ = s.write_all(&recorded);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("wrong token"), "{text}");
    assert!(!text.contains("welcome"), "the replay got in: {text}");
    assert!(reply.len() < 4096, "nothing but a challenge and a refusal");
}

#[test]
fn a_node_failure_loses_no_chat_and_no_transcript_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = Nodes::start(dir.path(), 3, 10.0, None);
    let transcript = dir.path().join("session.txt");
    let mut shell = ShellProc::start(&[]);
    let limit = Duration::from_secs(120);
    let steps = [
        format!(":record {}", transcript.display()),
        format!(
            ":connect {} --token-file {}",
            nodes.addrs().join(","),
            nodes.token_file.display()
        ),
        ":load smollm2".into(),
        ":shard tensor".into(),
        ":set chat on".into(),
        ":set max_tokens 8".into(),
        "What is the capital of France?".into(),
    ];
    for (i, line) in steps.iter().enumerate() {
        shell.send(line);
        if i > 0 {
            // Written and flushed as soon as the command is done.
            wait_for_file(&transcript, limit, |t| t.contains(&format!("> {line}")));
        }
    }
    let victim = format!("node1 ({})", nodes.procs[1].addr);
    nodes.procs[1].kill();
    shell.send("And of Germany?");
    let t = wait_for_file(&transcript, limit, |t| t.contains("> And of Germany?"));
    // Recovered from (the default): the turn is answered on the survivors
    // and the line naming the node is recorded. Transcripts mask
    // addresses; the shell's own output shows them.
    assert!(t.contains("recovered: node1 ({addr}) left during"), "{t}");
    let named = format!("recovered: {victim} left during");
    shell.wait_for(limit, |o| o.contains(&named));
    for line in &steps[1..] {
        assert!(t.contains(&format!("> {line}")), "{line} is on disk:\n{t}");
    }
    // With recovery off, the next failure is an error naming the node,
    // recorded too, and `:shard` re-plans by hand.
    shell.send(":set recover off");
    let victim = format!("node2 ({})", nodes.procs[2].addr);
    nodes.procs[2].kill();
    shell.send("And of Spain?");
    let t = wait_for_file(&transcript, limit, |t| t.contains("> And of Spain?"));
    let after = &t[t.find("> And of Spain?").expect("recorded")..];
    assert!(after.contains("error: node2 ({addr}) failed"), "{t}");
    shell.wait_for(limit, |o| o.contains(&format!("{victim} failed")));
    shell.send(":shard tensor");
    shell.send("And of Italy?");
    shell.send(":reset");
    let t = wait_for_file(&transcript, limit, |t| t.contains("> :reset"));
    let after = &t[t.find("> And of Italy?").expect("recorded")..];
    assert!(
        !after.contains("failed during"),
        "the chat continues:\n{after}"
    );
    let forgot: usize = after
        .split("forgot ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("`:reset` says how many messages it forgot");
    assert!(
        forgot >= 6,
        "the three answered turns survived: {forgot}\n{t}"
    );
    shell.send(":quit");
    assert!(shell.finish().is_some(), "the shell ran to the end");
}
