//! `shardlab bench`: prefill and decode speed of one layout, with the
//! figures it is judged against measured in the same run (memory bandwidth,
//! raw loopback round trip) and the cost model's prediction for the same
//! plan and workload. The orchestrator measures (the same code as the
//! shell's `:bench`); this file prints its report as lines that
//! `bench/goals.py` reads, or as one JSON line with `--json`
//! (`bench_json.rs`).

use anyhow::{bail, Context, Result};
use clap::Args;
use shardlab_engine::metrics::memory::peak_rss_bytes;
use shardlab_engine::orchestrator::report::{BenchFigures, BenchReport, BenchRow};
use shardlab_engine::orchestrator::BenchRequest;
use shardlab_engine::shard::plan::speed::Workload;

use super::bench_json::BenchJson;
use super::cluster::{self, ClusterArgs};
use super::progress::print_pull_event;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, short = 'm', default_value = "smollm2")]
    pub model: String,
    /// Prompt length for the prefill measurement.
    #[arg(long = "prompt-tokens", default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens to decode.
    #[arg(long, default_value_t = 64)]
    pub gen: usize,
    /// Threads (per node, with --nodes).
    #[arg(long, short = 't', default_value_t = 1)]
    pub threads: usize,
    /// Pin local node i to cores [i*threads, (i+1)*threads).
    #[arg(long)]
    pub pin: bool,
    /// Skip the memory-bandwidth probe.
    #[arg(long = "no-probe")]
    pub no_probe: bool,
    /// Sequences in flight at once (with --nodes); decode is then reported
    /// as the aggregate rate of all of them.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Print the report as one JSON object on one line, the last of
    /// stdout: the measured layout's `layout`, `nodes`, `threads`, `link`,
    /// `wire`, `prompt_tokens`, `gen_tokens`, `parallel`, `prefill_tok_s`,
    /// `decode_tok_s`, `ttft_s`, `predicted_prefill_tok_s`,
    /// `predicted_decode_tok_s`, `predicted_ttft_s`, `prefill_error` and
    /// `decode_error` ((measured - predicted) / predicted) at the top level
    /// (the first row measured: the layout with --nodes, else this
    /// process); `layouts`, the same fields for every row measured; and the
    /// whole report's fields (`rows`, `limits`, ...) beside them.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.threads == 0 || args.prompt_tokens == 0 || args.gen == 0 || args.parallel == 0 {
        bail!("--threads, --prompt-tokens, --gen and --parallel must be at least 1");
    }
    if args.parallel > 1 && args.cluster.nodes.is_none() {
        bail!("--parallel runs sequences across nodes: add --nodes (one process runs them one after another at its single-sequence rate)");
    }
    args.cluster.check_one_process()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("starting the worker threads")?;
    pool.install(|| bench(&args))
}

fn bench(args: &BenchArgs) -> Result<()> {
    let mut core = cluster::orchestrator("bench", args.threads)?;
    core.context = Some((args.prompt_tokens + args.gen + 8).max(256));
    core.kv = args.cluster.kv;
    let model = core.open_model(&args.model, &mut print_pull_event)?;
    core.set_model(model);
    let workload = Workload {
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen,
        in_flight: args.parallel,
    };
    let layouts = match &args.cluster.nodes {
        Some(nodes) => vec![cluster::start(
            &mut core,
            &args.cluster,
            nodes,
            args.threads,
            args.pin,
            workload,
        )?],
        None => Vec::new(),
    };
    let request = BenchRequest {
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen,
        baseline_threads: layouts.is_empty().then_some(args.threads),
        layouts,
        parallel: args.parallel,
        probe_threads: (!args.no_probe).then_some(args.threads),
    };
    let report = core.bench(&request, &mut |_| {})?;
    if args.json {
        println!("{}", serde_json::to_string(&BenchJson::new(&report))?);
        return match report
            .rows
            .iter()
            .find_map(|r| r.result.as_ref().err().map(|e| (r, e)))
        {
            Some((row, e)) => bail!("{}: {e}", row.layout),
            None => Ok(()),
        };
    }
    print_report(&report)
}

/// The report as the lines `bench/goals.py` reads.
fn print_report(report: &BenchReport) -> Result<()> {
    let l = &report.limits;
    println!(
        "model {} ({:.1} MiB of weights) | prompt {} tokens | decode {} tokens | threads {}",
        report.model,
        l.weight_bytes as f64 / 1048576.0,
        report.prompt_tokens,
        report.gen_tokens,
        report.threads
    );
    for row in &report.rows {
        let f = match &row.result {
            Ok(f) => f,
            Err(e) => bail!("{}: {e}", row.layout),
        };
        print_row(report, row, f);
    }
    if let Some(peak) = peak_rss_bytes() {
        println!(
            "peak memory of this process {:.1} MiB",
            peak as f64 / 1048576.0
        );
    }
    Ok(())
}

fn print_row(report: &BenchReport, row: &BenchRow, f: &BenchFigures) {
    let s = &f.stats;
    let on_nodes = !f.nodes.is_empty();
    if on_nodes {
        println!(
            "layout {} over {} nodes{}, wire {}",
            row.layout,
            row.nodes,
            f.aggregate.map_or(String::new(), |a| format!(
                ", {} sequences in flight",
                a.sequences
            )),
            report.wire
        );
    } else {
        println!("layout {}", row.layout);
    }
    if let (Some(link), true) = (&report.link, on_nodes) {
        println!("link emulated {link}");
    }
    match f.aggregate {
        Some(a) => {
            println!(
                "prefill {:.1} tok/s aggregate  ({} prompts of {} tokens in {:.3} s)",
                a.prefill_tokens_per_second, a.sequences, report.prompt_tokens, a.prefill_seconds
            );
            println!(
                "decode  {:.2} tok/s aggregate  ({} tokens in {:.3} s once all were decoding)",
                a.decode_tokens_per_second, a.decode_tokens, a.decode_seconds
            );
        }
        None => {
            println!(
                "prefill {:.1} tok/s  ({} tokens in {:.3} s)",
                s.prefill_tokens_per_second(),
                s.prompt_tokens,
                s.prefill_seconds
            );
            println!(
                "decode  {:.2} tok/s  ({} tokens in {:.3} s)",
                s.decode_tokens_per_second(),
                s.generated_tokens,
                s.decode_seconds
            );
        }
    }
    // Rate before name, so the "prefill N tok/s" that goals.py reads stays
    // the measured one.
    if let Some(p) = &row.predicted {
        println!(
            "predicted {:.1} tok/s prefill ({}), {:.2} tok/s decode ({}), time to first token {:.0} ms (measured {:.0} ms)",
            p.prefill_tok_s,
            error(row.prefill_error),
            p.decode_tok_s,
            error(row.decode_error),
            p.ttft * 1e3,
            s.time_to_first_token * 1e3
        );
    }
    let l = &report.limits;
    if let (Some(bw), Some(roofline)) = (l.bandwidth, report.roofline(f, row.nodes)) {
        let cores = if report.threads == 1 {
            "one core's".to_string()
        } else {
            format!("{} threads'", report.threads)
        };
        println!(
            "memory bandwidth ({} thread{}) {:.1} GB/s; decode reads {:.1} GB/s of weights = {:.0}% of {cores} bandwidth",
            report.threads,
            if report.threads == 1 { "" } else { "s" },
            bw / 1e9,
            l.weight_bytes as f64 * f.decode_rate() / 1e9,
            100.0 * roofline
        );
    }
    if !on_nodes {
        return;
    }
    let raw = l.raw_rtt.unwrap_or(0.0);
    println!(
        "raw loopback TCP round trip of {} bytes (one f64 all-reduce payload): p50 {:.1} µs",
        l.payload,
        raw * 1e6
    );
    if let Some(streamed) = l.raw_rtt_streamed {
        println!(
            "the same round trip after each end reads {:.1} MiB (the weights a node reads between two all-reduces): p50 {:.1} µs",
            l.streamed_between_allreduces as f64 / (1 << 20) as f64,
            streamed * 1e6
        );
    }
    if let Some(x) = &f.exchange {
        println!(
            "all-reduce exchange (last-ready node) p50 {:.1} µs = {:.2}x raw RTT; skew between peers p50 {:.1} µs; p99 exchange {:.1} µs, skew {:.1} µs ({} all-reduces paired across nodes)",
            x.exchange_p50 * 1e6,
            x.exchange_p50 / raw.max(1e-9),
            x.skew_p50 * 1e6,
            x.exchange_p99 * 1e6,
            x.skew_p99 * 1e6,
            x.events
        );
        if let Some(streamed) = l.raw_rtt_streamed.filter(|&s| s > 0.0) {
            println!(
                "all-reduce exchange (last-ready node) p50 = {:.2}x the round trip after reading",
                x.exchange_p50 / streamed
            );
        }
    }
    for node in &f.nodes {
        let Some(m) = &node.stats else {
            println!("{}: lost", node.label);
            continue;
        };
        let ar = m.allreduce.map_or((0.0, 0.0), |p| (p.p50, p.p99));
        println!(
            "{}: compute {:.3} s, waiting on peers {:.3} s ({:.0}% of step time), sent {:.1} KiB/step, all-reduce p50 {:.1} µs p99 {:.1} µs ({:.2}x raw RTT), hop p50 {:.1} µs",
            node.label,
            m.compute_seconds,
            m.wait_seconds,
            100.0 * m.wait_share().unwrap_or(0.0),
            m.bytes_sent as f64 / m.steps.max(1) as f64 / 1024.0,
            ar.0 * 1e6,
            ar.1 * 1e6,
            ar.0 / raw.max(1e-9),
            m.hop.map_or(0.0, |p| p.p50) * 1e6,
        );
    }
}

/// "measured +12%": the measured rate's error against the predicted one.
fn error(e: Option<f64>) -> String {
    e.map_or("no measured figure".into(), |e| {
        format!("measured {:+.0}%", 100.0 * e)
    })
}
