//! `shardlab` / `shardlab shell [--script FILE]`: the workbench shell.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use shardlab_engine::model::store::ModelStore;
use shardlab_engine::net::LinkProfile;
use shardlab_repl::shell::{history_path, run_interactive, run_script};
use shardlab_repl::{Session, SessionConfig, DEFAULT_STEP_TIMEOUT};

#[derive(Args, Debug, Default)]
pub struct ShellArgs {
    /// Run the commands in FILE (`-` for stdin) without a terminal, echoing
    /// each; exits 1 if any command failed.
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// Worker threads per node started with `:connect local`.
    #[arg(long = "node-threads", default_value_t = 1)]
    pub node_threads: usize,
    /// Emulate a slower link on every connection of the clusters this
    /// shell drives: a profile (tb5, 10gbe, 1gbe, wifi) or
    /// latency=200us,bandwidth=10gbit,jitter=20us. See docs/LINKS.md.
    #[arg(long)]
    pub link: Option<LinkProfile>,
}

/// The session every front end of this binary starts from, configured
/// from the environment here, at the edge.
pub fn new_session(node_threads: usize) -> Result<Session> {
    new_session_with_link(node_threads, None)
}

/// [`new_session`] emulating `link` on its clusters from the start.
pub fn new_session_with_link(node_threads: usize, link: Option<LinkProfile>) -> Result<Session> {
    let store = ModelStore::from_env()?;
    let node_exe = std::env::current_exe().context("finding the shardlab binary")?;
    Ok(Session::new(SessionConfig {
        store,
        node_exe,
        threads_per_node: node_threads.max(1),
        step_timeout: step_timeout_from_env()?,
        link,
    }))
}

/// `SHARDLAB_STEP_TIMEOUT` (seconds): how long a generation step may take
/// across the cluster before the node that went quiet is named.
pub fn step_timeout_from_env() -> Result<std::time::Duration> {
    match std::env::var("SHARDLAB_STEP_TIMEOUT") {
        Err(_) => Ok(DEFAULT_STEP_TIMEOUT),
        Ok(text) => match text.trim().parse::<f64>() {
            Ok(secs) if secs > 0.0 && secs.is_finite() => {
                Ok(std::time::Duration::from_secs_f64(secs))
            }
            _ => bail!("SHARDLAB_STEP_TIMEOUT must be a positive number of seconds, not '{text}'"),
        },
    }
}

pub fn run(args: ShellArgs) -> Result<()> {
    let mut session = new_session_with_link(args.node_threads, args.link.clone())?;
    match &args.script {
        Some(path) => {
            let stdout = std::io::stdout();
            let ok = run_script(&mut session, path, &mut stdout.lock())?;
            if !ok {
                bail!("a command in {} failed", path.display());
            }
            Ok(())
        }
        None => {
            let history = history_path(&session.config().store);
            run_interactive(&mut session, &history)?;
            Ok(())
        }
    }
}
