//! `shardlab plan` and `--layout auto` as a user runs them, over two real
//! local node processes and SmolLM2 from the model cache: the plan's JSON
//! with its predicted rates, the ranking `--layout best` prints, the layout
//! `bench --layout auto` picks from it, bench's one-line JSON with the
//! predicted rates beside the measured ones, and a bad layout refused
//! before any node starts.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn shardlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardlab"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("runs shardlab")
}

/// The last line of stdout as JSON, the command having succeeded.
fn last_json(out: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout\n{stderr}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}\n{stderr}"))
}

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "{what} = {x}");
    x
}

/// A serialized `LayoutRequest` as `--layout` spells it.
fn layout_name(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_ascii_lowercase(),
        Value::Object(m) if m.contains_key("Pipeline") => "pipeline".into(),
        Value::Object(m) => match m.get("Hybrid") {
            Some(h) => format!("hybrid:{}x{}", h["tensor"], h["pipeline"]),
            None => panic!("unknown layout {v}"),
        },
        other => panic!("unknown layout {other}"),
    }
}

#[test]
fn plan_json_predicts_positive_rates_for_two_nodes() {
    let out = shardlab(&[
        "plan", "--model", "smollm2", "--nodes", "local:2", "--layout", "tensor", "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    let report = last_json(&out);
    assert_eq!(report["plan"]["nodes"].as_array().map(Vec::len), Some(2));
    assert!(report["refusal"].is_null(), "{}", report["refusal"]);
    let speed = &report["speed"];
    positive(&speed["prefill_tok_s"], "prefill_tok_s");
    positive(&speed["decode_tok_s"], "decode_tok_s");
    positive(&speed["ttft"], "ttft");
    assert_eq!(speed["workload"]["prompt_tokens"], 64);

    // The text form: the per-node table and the prediction.
    let out = shardlab(&[
        "plan", "--model", "smollm2", "--nodes", "local:2", "--layout", "tensor",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("plan: tensor over 2 nodes"), "{text}");
    assert!(text.contains("node1"), "{text}");
    assert!(text.contains("decode") && text.contains("tok/s"), "{text}");
}

/// `--layout best` ranks every layout, the ones that fit fastest first;
/// `bench --layout auto` for the same workload loads the first. Two
/// processes calibrate separately, so when the two fastest are predicted
/// within 15% of each other either is accepted.
#[test]
fn auto_picks_the_first_layout_best_ranks() {
    let workload = ["--prompt-tokens", "8", "--gen", "4"];
    let mut args = vec![
        "plan", "--model", "smollm2", "--nodes", "local:2", "--layout", "best", "--json",
    ];
    args.extend(workload);
    let ranking = last_json(&shardlab(&args));
    assert_eq!(ranking["objective"], "Decode", "8 tokens < 4 x 4 generated");
    let rows = ranking["rows"].as_array().expect("rows");
    let names: Vec<String> = rows.iter().map(|r| layout_name(&r["layout"])).collect();
    assert!(
        names.contains(&"tensor".to_string()) && names.contains(&"pipeline".to_string()),
        "{names:?}"
    );
    let fitting: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r["refusal"].is_null() && !r["prediction"].is_null())
        .map(|r| {
            (
                layout_name(&r["layout"]),
                positive(&r["prediction"]["decode_tok_s"], "decode_tok_s"),
            )
        })
        .collect();
    assert!(!fitting.is_empty(), "{ranking}");
    assert!(
        fitting.windows(2).all(|w| w[0].1 >= w[1].1),
        "fastest first: {fitting:?}"
    );

    let mut args = vec![
        "bench",
        "--model",
        "smollm2",
        "--nodes",
        "local:2",
        "--layout",
        "auto",
        "--json",
        "--no-probe",
    ];
    args.extend(workload);
    let out = shardlab(&args);
    let bench = last_json(&out);
    let chosen = bench["layout"].as_str().expect("layout").to_string();
    let close = fitting.len() > 1 && fitting[1].1 >= 0.85 * fitting[0].1;
    let accepted: Vec<&str> = fitting
        .iter()
        .take(if close { 2 } else { 1 })
        .map(|f| f.0.as_str())
        .collect();
    assert!(
        accepted.contains(&chosen.as_str()),
        "auto chose {chosen}, ranked {fitting:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("layout auto: "))
        .unwrap_or_else(|| panic!("no auto line on stderr:\n{stderr}"));
    assert!(
        line.starts_with(&format!("layout auto: {chosen} (predicted decode ")),
        "{line}"
    );
}

#[test]
fn bench_json_is_one_line_with_measured_and_predicted_rates() {
    let out = shardlab(&[
        "bench",
        "--model",
        "smollm2",
        "--nodes",
        "local:2",
        "--layout",
        "tensor",
        "--json",
        "--no-probe",
        "--prompt-tokens",
        "8",
        "--gen",
        "4",
    ]);
    let j = last_json(&out);
    assert_eq!(j["layout"], "tensor");
    assert_eq!(j["nodes"], 2);
    assert_eq!(
        (j["prompt_tokens"].as_u64(), j["gen_tokens"].as_u64()),
        (Some(8), Some(4))
    );
    assert_eq!(j["threads"], 1);
    assert!(j["link"].is_null());
    for key in [
        "prefill_tok_s",
        "decode_tok_s",
        "ttft_s",
        "predicted_prefill_tok_s",
        "predicted_decode_tok_s",
        "predicted_ttft_s",
    ] {
        positive(&j[key], key);
    }
    let error = j["decode_error"].as_f64().expect("decode_error");
    let (measured, predicted) = (
        j["decode_tok_s"].as_f64().unwrap(),
        j["predicted_decode_tok_s"].as_f64().unwrap(),
    );
    assert!((error - (measured - predicted) / predicted).abs() < 1e-9);
    assert_eq!(j["layouts"].as_array().map(Vec::len), Some(1));
    // The report's own fields stay, for the scripts that read them.
    assert!(j["rows"][0]["result"]["Ok"]["stats"]["decode_seconds"].is_number());
    assert!(j["rows"][0]["predicted"]["decode_tok_s"].is_number());
    // The all-reduce split: both nodes' samples pair up event by event
    // (two all-reduces per layer, 30 layers per step), and the last-ready
    // node's exchange is at most the slowest node's whole time.
    let figures = &j["rows"][0]["result"]["Ok"];
    let exchange = &figures["exchange"];
    let events = exchange["events"].as_u64().expect("exchange.events");
    assert!(events > 0 && events.is_multiple_of(60), "{exchange}");
    let (p50, skew) = (
        exchange["exchange_p50"].as_f64().unwrap(),
        exchange["skew_p50"].as_f64().unwrap(),
    );
    let slowest = figures["allreduce_p50"].as_f64().expect("allreduce_p50");
    assert!(p50 > 0.0 && p50 <= slowest && skew >= 0.0, "{figures}");
}

#[test]
fn a_bad_layout_is_one_line_before_any_node_starts() {
    let out = shardlab(&["plan", "--layout", "warp", "--nodes", "local:2"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: --layout warp: unknown layout 'warp' (expected single, tensor"),
        "{stderr}"
    );
    assert!(stderr.contains("or auto"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn run_with_layout_auto_names_its_choice_and_generates() {
    let out = shardlab(&[
        "run",
        "-p",
        "The capital of France is",
        "-n",
        "4",
        "--temperature",
        "0",
        "-t",
        "1",
        "--nodes",
        "local:2",
        "--layout",
        "auto",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("layout auto: "))
        .unwrap_or_else(|| panic!("no auto line on stderr:\n{stderr}"));
    let chosen = line["layout auto: ".len()..]
        .split_whitespace()
        .next()
        .expect("a layout");
    assert!(
        stderr.contains(&format!("loading smollm2 as {chosen} ")),
        "{stderr}"
    );
    assert!(!out.stdout.is_empty());
}
