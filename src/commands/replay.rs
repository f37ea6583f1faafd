//! `shardlab replay FILE... [--bless]`: runs each transcript in a fresh
//! session; a mismatch prints a unified diff and fails.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use shardlab_repl::transcript::replay::replay;

use super::shell::new_session;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Transcript files (transcripts/*.txt).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Rewrite each file with the output this run printed.
    #[arg(long)]
    pub bless: bool,
    /// Worker threads per node started with `:connect local`.
    #[arg(long = "node-threads", default_value_t = 1)]
    pub node_threads: usize,
}

pub fn run(args: ReplayArgs) -> Result<()> {
    let mut failed = Vec::new();
    for path in &args.files {
        let outcome = replay(path, new_session(args.node_threads)?, args.bless)?;
        let verdict = match (outcome.passed, outcome.rewritten) {
            (true, _) => "ok",
            (false, true) => "blessed",
            (false, false) => "FAILED",
        };
        println!(
            "{verdict:7} {} ({} commands, {:.1} s)",
            outcome.path.display(),
            outcome.commands,
            outcome.seconds
        );
        if !outcome.passed && !args.bless {
            print!("{}", outcome.diff);
            failed.push(path.display().to_string());
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} transcript(s) did not match: {} (rerun with --bless to accept the new output)",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
