//! The `shardlab` binary: a thin clap dispatch onto the commands in
//! `commands/`. Configuration from the environment and flags is read here,
//! at the edge, and passed down.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shardlab",
    version,
    about = "Run one language model split across several machines, and look inside while it runs"
)]
struct Cli {
    /// Left out: the interactive shell.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The interactive workbench shell (the default), or a script of its commands.
    Shell(commands::shell::ShellArgs),
    /// Replay recorded shell transcripts and diff their output.
    Replay(commands::replay::ReplayArgs),
    /// Generate text from a prompt.
    Run(commands::run::RunArgs),
    /// Serve the model (one process or a cluster) over an OpenAI-compatible HTTP API.
    Serve(commands::serve::ServeArgs),
    /// Write a GGUF file with random weights in a given Llama/Qwen shape, dense or mixture-of-experts.
    Synth(commands::synth::SynthArgs),
    /// Measure prefill and decode speed of one layout, beside the speed predicted for it.
    Bench(commands::bench::BenchArgs),
    /// Plan a layout on the nodes (nothing loads): each node's memory and the predicted speed; or rank every layout.
    Plan(commands::plan::PlanArgs),
    /// Perplexity and KL divergence of a KV or wire precision against an exact reference, on a text.
    Perplexity(commands::perplexity::PerplexityArgs),
    /// Measure the memory bandwidth N pinned core groups get at once: the ideal cluster speedup.
    Probe(commands::probe::ProbeArgs),
    /// Serve a shard of a model to a coordinator (the node daemon).
    Node(commands::node::NodeArgs),
    /// The Jupyter kernel, and installing its kernelspec.
    Kernel(commands::kernel::KernelArgs),
    /// Install and list models in the cache.
    #[command(subcommand)]
    Models(commands::models::ModelsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => commands::shell::run(commands::shell::ShellArgs::default()),
        Some(Command::Shell(args)) => commands::shell::run(args),
        Some(Command::Replay(args)) => commands::replay::run(args),
        Some(Command::Run(args)) => commands::run::run(args),
        Some(Command::Serve(args)) => commands::serve::run(args),
        Some(Command::Synth(args)) => commands::synth::run(args),
        Some(Command::Bench(args)) => commands::bench::run(args),
        Some(Command::Plan(args)) => commands::plan::run(args),
        Some(Command::Node(args)) => commands::node::run(args),
        Some(Command::Probe(args)) => commands::probe::run(args),
        Some(Command::Perplexity(args)) => commands::perplexity::run(args),
        Some(Command::Models(cmd)) => commands::models::run(cmd),
        Some(Command::Kernel(args)) => commands::kernel::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error, then each cause its message does not already quote: many of
/// the engine's errors end with `{source}`, which `{:#}` printed twice
/// ("token file F: No such file ... (os error 2): No such file ...").
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::describe;
    use anyhow::Context;

    #[test]
    fn a_cause_the_message_already_quotes_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let quoted = shardlab_engine::net::TokenError::Io {
            path: "shared-token.txt".into(),
            source: io,
        };
        assert_eq!(
            describe(&anyhow::Error::new(quoted)),
            "token file shared-token.txt: no such file"
        );
        let bare: anyhow::Result<()> = Err(std::io::Error::other("disk full")).context("writing x");
        assert_eq!(describe(&bare.unwrap_err()), "writing x: disk full");
    }
}
