//! `shardlab probe`: the physical limit a cluster's speedup is judged
//! against. A memory-bound decode on N nodes can go at most as much faster
//! as N groups of cores can read memory at once, compared with one group
//! alone. On a laptop that is N x; on one shared server the groups contend
//! for the same memory controllers, and the ideal is lower.
//!
//! Each group is a separate process pinned like a node (`taskset` on
//! Linux; macOS cannot pin), so the figure is measured the same way the
//! nodes run. The processes allocate and touch their buffers first, then
//! all start reading at one signal.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use anyhow::{bail, Context, Result};
use clap::Args;
use shardlab_engine::metrics::bandwidth::BandwidthProbe;
use shardlab_engine::platform::pinned_command;

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// How many groups read at once (the node count).
    #[arg(long, default_value_t = 2)]
    pub groups: usize,
    /// Cores per group; group i is pinned to cores [i*C, (i+1)*C).
    #[arg(long = "cores-per-group", default_value_t = 1)]
    pub cores_per_group: usize,
    /// Buffer size per group, MiB.
    #[arg(long = "mib", default_value_t = 1024)]
    pub mib: usize,
    /// Passes over the buffer.
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
    /// Internal: be one group (wait for "go" on stdin, print bytes/s).
    #[arg(long, hide = true)]
    pub worker: bool,
}

pub fn run(args: ProbeArgs) -> Result<()> {
    if args.groups == 0 || args.cores_per_group == 0 || args.mib == 0 || args.passes == 0 {
        bail!("--groups, --cores-per-group, --mib and --passes must be at least 1");
    }
    if args.worker {
        return worker(&args);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let needed = args.groups * args.cores_per_group;
    if needed > cores {
        bail!(
            "{} groups of {} cores need {needed} cores; this machine has {cores}",
            args.groups,
            args.cores_per_group
        );
    }
    let alone = run_groups(&args, 1)?;
    let together = run_groups(&args, args.groups)?;
    let one = alone[0];
    let total: f64 = together.iter().sum();
    println!(
        "one group of {} core(s) alone: {:.1} GB/s",
        args.cores_per_group,
        one / 1e9
    );
    let each: Vec<String> = together.iter().map(|b| format!("{:.1}", b / 1e9)).collect();
    println!(
        "{} groups at once: {:.1} GB/s in total ({} GB/s each)",
        args.groups,
        total / 1e9,
        each.join(" + ")
    );
    println!(
        "ideal speedup for a memory-bound decode on {} nodes: {:.2}x",
        args.groups,
        total / one
    );
    Ok(())
}

/// One group: allocate, say "ready", wait for a line, measure, print.
fn worker(args: &ProbeArgs) -> Result<()> {
    let probe = BandwidthProbe::new(args.mib << 20, args.cores_per_group);
    probe.measure(1);
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("waiting for the start signal")?;
    let bw = probe.measure(args.passes);
    writeln!(out, "{bw}")?;
    Ok(())
}

struct Group {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Starts `n` pinned workers, waits until all are ready, starts them
/// together and returns each one's bytes/s.
fn run_groups(args: &ProbeArgs, n: usize) -> Result<Vec<f64>> {
    let exe = std::env::current_exe().context("locating the shardlab binary")?;
    let mut groups = Vec::with_capacity(n);
    for i in 0..n {
        let first = i * args.cores_per_group;
        let last = first + args.cores_per_group - 1;
        let mut child = pinned_command(exe.as_os_str(), first, last)
            .map_err(anyhow::Error::msg)?
            .args(["probe", "--worker"])
            .arg(format!("--cores-per-group={}", args.cores_per_group))
            .arg(format!("--mib={}", args.mib))
            .arg(format!("--passes={}", args.passes))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context(
                "starting a pinned probe process (on Linux: is util-linux's taskset installed?)",
            )?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("probe process {i} has no pipes");
        };
        groups.push(Group {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        });
    }
    for (i, g) in groups.iter_mut().enumerate() {
        let line = read_line(g, i)?;
        if line != "ready" {
            bail!("probe process {i} said {line:?} instead of ready");
        }
    }
    for g in groups.iter_mut() {
        writeln!(g.stdin, "go")?;
        g.stdin.flush()?;
    }
    let mut figures = Vec::with_capacity(n);
    for (i, g) in groups.iter_mut().enumerate() {
        let line = read_line(g, i)?;
        let bw: f64 = line
            .parse()
            .with_context(|| format!("probe process {i} printed {line:?}, not a number"))?;
        figures.push(bw);
        g.child.wait()?;
    }
    Ok(figures)
}

fn read_line(g: &mut Group, i: usize) -> Result<String> {
    let mut line = String::new();
    let n = g.stdout.read_line(&mut line)?;
    if n == 0 {
        let status = g.child.wait()?;
        bail!("probe process {i} exited ({status}) before answering");
    }
    Ok(line.trim().to_string())
}
