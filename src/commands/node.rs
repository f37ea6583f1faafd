//! `shardlab node`: the long-running daemon that holds one shard.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use shardlab_engine::cluster::node::{serve, NodeOptions};
use shardlab_engine::discovery::{advertise, NodeAdvert};
use shardlab_engine::net::{LinkProfile, Token, PROTOCOL_VERSION};

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Address to listen on. Loopback unless told otherwise.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// File holding the shared token. Without it, a fresh token is written
    /// to <cache-dir>/token and its path printed.
    #[arg(long = "token-file")]
    pub token_file: Option<PathBuf>,
    /// Memory budget, e.g. 512M or 8G (default: free memory).
    #[arg(long = "mem-limit")]
    pub mem_limit: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Where received shards are kept (default: <shardlab home>/node).
    #[arg(long = "cache-dir")]
    pub cache_dir: Option<PathBuf>,
    /// A directory of model files this node may slice locally.
    #[arg(long = "model-dir")]
    pub model_dir: Option<PathBuf>,
    /// A name for this node in logs and messages.
    #[arg(long, default_value = "node")]
    pub name: String,
    /// Seconds to wait for a peer's activations before failing a step (a
    /// step of more rows, as a prefill's, gets this per 16 rows).
    #[arg(long = "step-timeout", default_value_t = 60.0)]
    pub step_timeout: f64,
    /// Emulate a slower link on everything this node sends (to the
    /// coordinator and to peers): a profile (tb5, 10gbe, 1gbe, wifi) or
    /// latency=200us,bandwidth=10gbit,jitter=20us. See docs/LINKS.md.
    #[arg(long)]
    pub link: Option<LinkProfile>,
    /// Do not advertise this node on the LAN (mDNS, `_shardlab._tcp`). A
    /// node on loopback is never advertised.
    #[arg(long = "no-advertise")]
    pub no_advertise: bool,
    /// Exit when standard input closes. A coordinator that starts its own
    /// nodes (`local:N`) passes this and holds the pipe's other end, so its
    /// nodes end with it however it ends, killed included.
    #[arg(long = "exit-with-stdin")]
    pub exit_with_stdin: bool,
}

pub fn run(args: NodeArgs) -> Result<()> {
    if args.exit_with_stdin {
        exit_when_stdin_closes(args.name.clone());
    }
    let home = shardlab_engine::model::store::ModelStore::from_env()?
        .home()
        .to_path_buf();
    let cache_dir = args.cache_dir.unwrap_or_else(|| home.join("node"));
    std::fs::create_dir_all(&cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    let token = match &args.token_file {
        Some(path) => Token::from_file(path)?,
        None => {
            let path = cache_dir.join("token");
            let token = Token::generate();
            token.write_file(&path)?;
            eprintln!(
                "no --token-file given: wrote a new token to {}",
                path.display()
            );
            token
        }
    };
    let mem_limit = args
        .mem_limit
        .as_deref()
        .map(shardlab_repl::size::parse_size)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--mem-limit: {e}"))?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    if !(args.step_timeout > 0.0 && args.step_timeout.is_finite()) {
        bail!("--step-timeout must be a positive number of seconds");
    }
    let opts = NodeOptions {
        listen: args.listen,
        name: args.name.clone(),
        token,
        mem_limit,
        threads,
        cache_dir,
        model_dir: args.model_dir,
        step_deadline: Duration::from_secs_f64(args.step_timeout),
        link: args.link.clone(),
        calibration_dir: Some(home.join("calibration")),
    };
    if let Some(link) = &args.link {
        eprintln!("{}: emulating link {}", args.name, link.describe());
    }
    // Held while the node serves; dropping it withdraws the advertisement.
    let mut advertisement = None;
    serve(opts, |addr| {
        // Local clusters read this line to learn the port.
        println!("listening on {addr}");
        let advertised = if args.no_advertise {
            "not advertised on the LAN (--no-advertise)".to_string()
        } else {
            match advertise(addr, &node_advert(&args.name, threads)) {
                Ok(a) => {
                    let line = a.to_string();
                    advertisement = Some(a);
                    line
                }
                Err(e) => format!("not advertised on the LAN: {e}"),
            }
        };
        eprintln!("{}: listening on {addr}; {advertised}", args.name);
    })?;
    drop(advertisement);
    Ok(())
}

/// What this node tells browsers about itself (never the token).
fn node_advert(name: &str, threads: usize) -> NodeAdvert {
    NodeAdvert {
        name: name.to_string(),
        protocol: PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION").to_string(),
        threads,
    }
}

/// Ends this process once stdin reaches its end or fails: the coordinator
/// that started the node, holding the other end, has gone.
fn exit_when_stdin_closes(name: String) {
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        eprintln!(
            "{name}: the coordinator that started this node has gone (its stdin closed); exiting"
        );
        std::process::exit(0);
    });
}
