//! The command language: a line of text becomes a typed [`Command`].
//!
//! Every command is one row of [`table::COMMANDS`] (name, usage, help,
//! completion candidates, parser), and the parser, `:help`, tab completion
//! and the notebook kernel all read that one table, so they cannot drift
//! apart. A line that does not start with `:` is a prompt.

pub mod args;
mod distance;
mod parsers;
pub mod table;

use std::path::PathBuf;

use shardlab_engine::orchestrator::report::Objective;
use shardlab_engine::shard::plan::speed::Workload;
use shardlab_engine::shard::plan::LayoutRequest;

pub use distance::closest;
pub use table::{lookup, CommandSpec, Completion, COMMANDS};

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A blank line.
    Nothing,
    /// Any line that is not a command: text for the model.
    Prompt(String),
    Connect(ConnectTarget),
    Disconnect,
    Nodes,
    Links,
    /// Emulate a link profile on every link of the cluster (`None`: off).
    EmulateLinks(Option<shardlab_engine::net::LinkProfile>),
    /// Kill a local node process (debugging and fault demos): now, or once
    /// `after` steps of the next generation have run.
    Kill {
        node: String,
        after: Option<usize>,
    },
    Load(String),
    Unload,
    Model,
    Plan(PlanArgs),
    Shard(PlanArgs),
    /// `None` lists the settings.
    Set(Option<Setting>),
    Reset,
    Stats,
    Trace,
    Bench(BenchArgs),
    /// `None` stops recording.
    Record(Option<PathBuf>),
    /// Start or stop the OpenAI-compatible server on this session's model.
    Serve(ServeCommand),
    Help(Option<String>),
    Quit,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConnectTarget {
    Remote {
        addrs: Vec<String>,
        token_file: Option<PathBuf>,
    },
    /// The nodes that answer on the LAN (mDNS) within `window`.
    Auto {
        window: std::time::Duration,
        token_file: Option<PathBuf>,
    },
    Local {
        nodes: usize,
        /// One budget for every node, or one per node.
        mem_limits: Vec<u64>,
        threads: Option<usize>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    Temperature(f32),
    TopK(usize),
    TopP(f32),
    MinP(f32),
    RepeatPenalty(f32),
    Seed(u64),
    MaxTokens(usize),
    Context(usize),
    Chat(bool),
    IgnoreEos(bool),
    /// Recover from a node lost mid-generation (on by default).
    Recover(bool),
    /// Precision of activations between nodes, from the next `:shard`.
    Wire(shardlab_engine::parallel::WireDtype),
    /// Precision of the KV cache, from the next `:shard`.
    Kv(shardlab_engine::model::kv_type::KvType),
    /// `None` clears it.
    System(Option<String>),
}

impl Setting {
    /// The name `:set` takes it by.
    pub fn key(&self) -> &'static str {
        match self {
            Setting::Temperature(_) => "temperature",
            Setting::TopK(_) => "top_k",
            Setting::TopP(_) => "top_p",
            Setting::MinP(_) => "min_p",
            Setting::RepeatPenalty(_) => "repeat_penalty",
            Setting::Seed(_) => "seed",
            Setting::MaxTokens(_) => "max_tokens",
            Setting::Context(_) => "context",
            Setting::Chat(_) => "chat",
            Setting::IgnoreEos(_) => "ignore_eos",
            Setting::Recover(_) => "recover",
            Setting::System(_) => "system",
            Setting::Wire(_) => "wire",
            Setting::Kv(_) => "kv",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServeCommand {
    On {
        listen: std::net::SocketAddr,
        /// Sequences generated at once (default [`DEFAULT_SERVE_PARALLEL`]).
        parallel: usize,
        api_key_file: Option<PathBuf>,
    },
    Off,
}

/// Where `:serve` listens unless told: loopback, as `shardlab serve` does.
pub const DEFAULT_SERVE_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_SERVE_PARALLEL: usize = 8;

/// What `:plan` and `:shard` act on: a layout named, or the fastest one.
#[derive(Debug, Clone, PartialEq)]
pub enum LayoutChoice {
    Given(LayoutRequest),
    /// `best [decode|prefill]`: every layout ranked by predicted speed.
    Best(Objective),
}

/// `:plan` and `:shard` arguments: the layout and the workload the
/// predicted speed is for (`--prompt`, `--gen`, `--parallel`; this command
/// only, the defaults otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanArgs {
    pub choice: LayoutChoice,
    pub workload: Workload,
}

impl PlanArgs {
    /// `layout` for the default workload.
    pub fn given(layout: LayoutRequest) -> Self {
        PlanArgs {
            choice: LayoutChoice::Given(layout),
            workload: Workload::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BenchArgs {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    /// Empty: tensor and pipeline over the connected nodes.
    pub layouts: Vec<LayoutRequest>,
}

/// Why a line is not a valid command; it never ends a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", suggestion.as_ref().map(|s| format!("; did you mean {s}?")).unwrap_or_default())]
pub struct ParseError {
    pub message: String,
    pub suggestion: Option<String>,
}

impl ParseError {
    fn new(message: impl Into<String>) -> Self {
        ParseError {
            message: message.into(),
            suggestion: None,
        }
    }
}

/// One line (a multi-line prompt already joined) to a command.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(Command::Nothing);
    }
    // `\:` starts a prompt that begins with a colon.
    if let Some(rest) = trimmed.strip_prefix("\\:") {
        return Ok(Command::Prompt(format!(":{rest}")));
    }
    let Some(body) = trimmed.strip_prefix(':') else {
        return Ok(Command::Prompt(
            line.trim_end_matches(['\n', '\r']).to_string(),
        ));
    };
    let (name, rest) = match body.split_once(char::is_whitespace) {
        Some((n, r)) => (n, r.trim()),
        None => (body, ""),
    };
    let Some(spec) = lookup(name) else {
        let names = COMMANDS
            .iter()
            .flat_map(|c| std::iter::once(c.name).chain(c.aliases.iter().copied()));
        return Err(ParseError {
            message: format!("unknown command ':{name}' (:help lists them)"),
            suggestion: closest(name, names).map(|n| format!(":{n}")),
        });
    };
    let words = args::split(rest).map_err(ParseError::new)?;
    let parsed = args::Args::new(spec, rest, words);
    (spec.parse)(&parsed).map_err(|e| ParseError {
        message: format!(":{}: {}; usage: {}", spec.name, e.message, spec.usage),
        suggestion: e.suggestion,
    })
}

#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod tests;
