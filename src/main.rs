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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt.
    Run(commands::run::RunArgs),
    /// Write a GGUF file with random weights in a given Llama/Qwen shape.
    Synth(commands::synth::SynthArgs),
    /// Measure prefill and decode speed of one layout.
    Bench(commands::bench::BenchArgs),
    /// Serve a shard of a model to a coordinator (the node daemon).
    Node(commands::node::NodeArgs),
    /// Install and list models in the cache.
    #[command(subcommand)]
    Models(commands::models::ModelsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Synth(args) => commands::synth::run(args),
        Command::Node(args) => commands::node::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Models(cmd) => commands::models::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
