//! Link emulation over real node processes on loopback: an emulated
//! latency shows up as a lower bound on the all-reduce the nodes measure,
//! an emulated bandwidth as a lower bound on a transfer's time, jitter
//! changes no token, and the shell's `:links emulate` reaches every link.
//! Only lower bounds are asserted: sleeping makes them deterministic.

use shardlab_engine::model::kv_type::KvType;
use shardlab_engine::shard::plan::KvSpec;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use shardlab_engine::cluster::coordinator::{Cluster, LocalNodeOptions, ModelToLoad};
use shardlab_engine::metrics::quantile;
use shardlab_engine::model::config::ModelConfig;
use shardlab_engine::model::generate::Backend;
use shardlab_engine::model::gguf::GgufModel;
use shardlab_engine::model::layout::LocalLayout;
use shardlab_engine::model::store::default_model_path;
use shardlab_engine::model::transformer::Transformer;
use shardlab_engine::model::weights::ModelWeights;
use shardlab_engine::net::LinkProfile;
use shardlab_engine::shard::plan::{check_fits, plan, LayoutRequest, ModelSummary};

const CONTEXT: usize = 128;
const TOKENS: usize = 12;
/// "The capital of France is" in SmolLM2's vocabulary.
const PROMPT: [u32; 5] = [504, 3575, 282, 4649, 314];

fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

fn greedy(mut step: impl FnMut(&[u32], usize) -> Vec<f32>) -> Vec<u32> {
    let mut logits = step(&PROMPT, 0);
    let mut out = Vec::new();
    for pos in PROMPT.len()..PROMPT.len() + TOKENS {
        let next = argmax(&logits);
        out.push(next);
        logits = step(&[next], pos);
    }
    out
}

fn local(home: &std::path::Path) -> LocalNodeOptions {
    LocalNodeOptions {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_shardlab")),
        home: home.to_path_buf(),
        threads_per_node: 1,
        threads_each: Vec::new(),
        mem_limits: Vec::new(),
        pin_cores: false,
        extra_args: Vec::new(),
    }
}

fn link(spec: &str) -> Option<LinkProfile> {
    Some(spec.parse().expect("a valid link spec"))
}

/// All-reduce p50 over every node, in seconds.
fn allreduce_p50(cluster: &mut Cluster) -> f64 {
    let mut samples = Vec::new();
    for (label, m) in cluster.metrics() {
        let m = m.unwrap_or_else(|e| panic!("{label}: {e}"));
        samples.extend(m.allreduce_seconds);
    }
    assert!(!samples.is_empty(), "the nodes measured no all-reduce");
    quantile(&samples, 0.5).expect("samples")
}

#[test]
fn emulated_latency_and_jitter_slow_the_all_reduce_but_change_no_token() {
    let path = default_model_path().expect("SmolLM2 installs into the model cache");
    let gguf = GgufModel::open(path).expect("opens");
    let summary = ModelSummary::from_gguf(&gguf).expect("summary");
    let config = ModelConfig::from_gguf(&gguf).expect("config");
    let layout = LocalLayout::whole(&config);
    let weights = ModelWeights::load(&config, &layout, &gguf).expect("weights");
    let mut one = Transformer::new(config, layout, weights, CONTEXT, KvType::F16);
    let expected = greedy(|ids, pos| one.forward(ids, pos).expect("forward"));

    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::spawn_local(2, &local(home.path()), "test").expect("spawns");
    cluster
        .emulate_links(link("latency=2ms"))
        .expect("nodes accept");
    let budgets = cluster.budgets();
    let request: LayoutRequest = "tensor".parse().expect("layout");
    let p = plan(
        &summary,
        &budgets,
        &request,
        KvSpec::new(CONTEXT, KvType::F16),
    )
    .expect("plan");
    check_fits(&summary, &p, &budgets).expect("fits");
    let model = ModelToLoad {
        name: "smollm2".into(),
        config: &summary.config,
        source: &gguf,
        file: None,
    };
    cluster.load(&model, &p, &|_| {}).expect("loads");
    for h in cluster.nodes() {
        assert_eq!(
            h.info.link, None,
            "{}: info from before the emulation",
            h.name
        );
    }
    cluster.refresh().expect("nodes answer");
    for h in cluster.nodes() {
        let name = h.info.link.as_ref().map(|l| l.name.as_str());
        assert_eq!(name, Some("custom"), "{} reports its emulation", h.name);
    }

    let got = greedy(|ids, pos| cluster.step(ids, pos).expect("step"));
    assert_eq!(got, expected, "tokens under latency=2ms");
    // Each exchange waits for the peer's partial sums, which arrive no
    // sooner than 2 ms after they were sent.
    let p50 = allreduce_p50(&mut cluster);
    assert!(p50 >= 0.002, "all-reduce p50 {p50:.6} s under latency=2ms");

    // Jitter as large as the latency: frames may not overtake each other.
    cluster
        .emulate_links(link("latency=500us,jitter=500us,bandwidth=1gbit"))
        .expect("nodes accept");
    cluster.truncate(0).expect("truncates");
    let got = greedy(|ids, pos| cluster.step(ids, pos).expect("step"));
    assert_eq!(got, expected, "tokens under jitter");

    // Off again: the nodes say so.
    cluster.emulate_links(None).expect("nodes accept");
    cluster.refresh().expect("nodes answer");
    assert!(cluster.nodes().iter().all(|h| h.info.link.is_none()));
}

#[test]
fn an_emulated_bandwidth_bounds_a_transfer_from_below() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::spawn_local(1, &local(home.path()), "test").expect("spawns");
    cluster
        .emulate_links(link("bandwidth=80mbit"))
        .expect("node accepts");
    // 2 MiB at 80 Mbit/s takes at least 0.21 s each way, so neither
    // direction can measure more than 10 MB/s.
    let (up, down) = cluster.measure_bandwidth(0, 2 << 20).expect("measures");
    assert!(up <= 10e6, "up {up:.0} B/s over an 80 Mbit/s link");
    assert!(down <= 10e6, "down {down:.0} B/s over an 80 Mbit/s link");
}

#[test]
fn a_node_refuses_a_bad_link_spec_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_shardlab"))
        .args([
            "node",
            "--listen",
            "127.0.0.1:0",
            "--link",
            "bandwidth=10gbt",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bandwidth=10gbt: unknown unit 'gbt', expected bit/kbit/mbit/gbit"),
        "{stderr}"
    );
}

#[test]
fn the_shell_emulates_wifi_and_links_shows_it() {
    let script = "\
:set temperature 0
:set max_tokens 4
:connect local 2
:load smollm2
:shard tensor
:links emulate wifi
The capital of France is
:links
:links emulate off
:links
";
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardlab"))
        .args(["shell", "--script", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("writes the script");
    let out = child.wait_with_output().expect("finishes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("emulating wifi (latency 2 ms ± 1 ms, 400 Mbit/s) on every link"),
        "{stdout}"
    );
    let (emulated, after) = stdout
        .split_once("> :links emulate off")
        .expect("the script ran to its end");
    let (_, shown) = emulated.rsplit_once("> :links\n").expect(":links ran");
    // The coordinator's table: every node's link both ways, and the note.
    assert_eq!(shown.matches("┆ wifi ").count(), 4, "{shown}");
    assert!(shown.contains("Emulating wifi"), "{shown}");
    assert!(after.contains("link emulation off"), "{after}");
    assert!(!after.contains("┆ wifi "), "{after}");
    assert!(after.contains("┆ real "), "{after}");
}
