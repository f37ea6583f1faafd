//! The one table of commands. The parser dispatches through it, `:help`
//! prints it, the shell completes and hints from it, and the notebook kernel
//! completes and shows help from it too.

use super::args::Args;
use super::parsers as p;
use super::{Command, ParseError};

/// What the shell offers when completing a command's first argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Nothing,
    Words(&'static [&'static str]),
    /// Model aliases and cached model files.
    Models,
    /// `local` and the node addresses used so far.
    Nodes,
    /// Command names.
    Commands,
    /// Node names of the connected cluster.
    NodeNames,
    Path,
}

#[derive(Debug)]
pub struct CommandSpec {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    /// One line: `:plan tensor|pipeline|hybrid TxP [--layers A..B,...]`.
    pub usage: &'static str,
    pub summary: &'static str,
    /// What `:help NAME` adds under the usage line.
    pub help: &'static str,
    /// Flags it accepts (all take a value), without the dashes.
    pub flags: &'static [&'static str],
    pub completion: Completion,
    /// Only for local clusters and debugging; listed apart in `:help`.
    pub debug: bool,
    pub parse: fn(&Args) -> Result<Command, ParseError>,
}

pub const LAYOUTS: &[&str] = &["tensor", "expert", "pipeline", "hybrid", "single"];

/// What `:plan` and `:shard` take first: a layout, or `best`.
pub const PLAN_WORDS: &[&str] = &["tensor", "expert", "pipeline", "hybrid", "single", "best"];

pub const SETTINGS: &[&str] = &[
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "seed",
    "max_tokens",
    "context",
    "chat",
    "system",
    "ignore_eos",
    "recover",
    "wire",
    "kv",
];

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "connect",
        aliases: &[],
        usage: ":connect ADDR... [--token-file F] | :connect auto [3s] --token-file F | :connect local N [--mem-limit SIZE[,SIZE...]] [--threads T]",
        summary: "connect to running nodes, find them on the LAN, or start N local node processes",
        help: "`:connect local 2` starts two `shardlab node` processes on loopback ports with a fresh token.\n\
               --mem-limit gives each local node a memory budget (one size for all, or one per node), e.g. 300M.\n\
               --threads sets worker threads per local node (default 1).\n\
               With addresses, --token-file names the nodes' shared token (the node prints where it is).\n\
               `:connect auto` looks for nodes on the LAN (mDNS) for 3 s (`:connect auto 5s`: longer), lists\n\
               them, connects those that accept the token and says why the others refused.\n\
               Connected already, `:connect ADDR...` adds those nodes (a restarted node joins under its old\n\
               name); what was loaded is dropped and the next `:shard` spreads the model over all of them.",
        flags: &["token-file", "mem-limit", "threads"],
        completion: Completion::Nodes,
        debug: false,
        parse: p::connect,
    },
    CommandSpec {
        name: "disconnect",
        aliases: &[],
        usage: ":disconnect",
        summary: "release the nodes (local node processes stop)",
        help: "The model stays open, so `:connect` and `:shard` again resume.",
        flags: &[],
        completion: Completion::Nothing,
        debug: false,
        parse: p::disconnect,
    },
    CommandSpec {
        name: "nodes",
        aliases: &[],
        usage: ":nodes",
        summary: "the connected nodes: cores, memory, budget, version, round trip",
        help: "Asks every node for fresh figures and pings it once.",
        flags: &[],
        completion: Completion::Nothing,
        debug: false,
        parse: p::nodes,
    },
    CommandSpec {
        name: "links",
        aliases: &[],
        usage: ":links | :links emulate PROFILE|off",
        summary: "the links: measured latency and bandwidth, and any emulated profile",
        help: "`:links` pings each node a few times (min and median round trip), times a transfer each way,\n\
               and shows the all-reduce and hop latencies the nodes measured between themselves while generating.\n\
               `:links emulate wifi` makes every link behave like Wi-Fi (also tb5, 10gbe, 1gbe, or\n\
               latency=2ms,jitter=1ms,bandwidth=1gbit): the coordinator's sends and each node's sends to the\n\
               coordinator and its peers. `:links emulate off` stops it. See docs/LINKS.md.",
        flags: &[],
        completion: Completion::Words(&["emulate"]),
        debug: false,
        parse: p::links,
    },
    CommandSpec {
        name: "load",
        aliases: &[],
        usage: ":load MODEL",
        summary: "open a model: an alias (smollm2), a .gguf file or a Hugging Face directory",
        help: "Opening reads the header only; `:shard` (or the first prompt, with no nodes) loads the weights.",
        flags: &[],
        completion: Completion::Models,
        debug: false,
        parse: p::load,
    },
    CommandSpec {
        name: "unload",
        aliases: &[],
        usage: ":unload",
        summary: "drop the model from this process and every node",
        help: "",
        flags: &[],
        completion: Completion::Nothing,
        debug: false,
        parse: p::unload,
    },
    CommandSpec {
        name: "model",
        aliases: &[],
        usage: ":model",
        summary: "the open model: architecture, layers, heads, dimensions, quantization, size",
        help: "",
        flags: &[],
        completion: Completion::Nothing,
        debug: false,
        parse: p::model,
    },
    CommandSpec {
        name: "plan",
        aliases: &[],
        usage: ":plan tensor|expert|pipeline|hybrid TxP|single [--layers A..B,B..C] | best [decode|prefill] [--prompt N] [--gen N] [--parallel K]",
        summary: "show how a layout would split the model, the memory it needs and its predicted speed",
        help: "Nothing loads. Per node: layers, Q/KV heads, FFN columns, vocabulary rows, predicted\n\
               memory (weights + KV cache + scratch + runtime) against the node's budget, and predicted compute\n\
               per decoded token. Under the table: predicted prefill and decode tok/s and the time to the first\n\
               token, then where a decoded token's time goes (compute, all-reduce, hand-off per stage).\n\
               The prediction comes from each node's calibration at :connect and the measured links.\n\
               A layout that does not fit names the node, the shortfall, and a layout over the same nodes that fits.\n\
               `:plan best` ranks every layout of the connected nodes by predicted decode tok/s (`best prefill`:\n\
               prompt tok/s); layouts that do not fit come last with the reason.\n\
               --prompt N, --gen N, --parallel K: the workload predicted for (prompt tokens, tokens generated,\n\
               sequences in flight), for this command only; without them 64, 64 and 1.",
        flags: &["layers", "prompt", "gen", "parallel"],
        completion: Completion::Words(PLAN_WORDS),
        debug: false,
        parse: p::plan,
    },
    CommandSpec {
        name: "shard",
        aliases: &[],
        usage: ":shard tensor|expert|pipeline|hybrid TxP|single [--layers A..B,B..C] | best [decode|prefill] [--prompt N] [--gen N] [--parallel K]",
        summary: "apply a layout: load (or re-shard) the model across the nodes",
        help: "Plans, checks memory, then streams each node only its slices. Nodes that left the cluster\n\
               are dropped first, so after a failure `:shard` re-plans on the survivors.\n\
               With no nodes connected, `:shard single` loads the model into this process.\n\
               `:shard best` loads the layout `:plan best` ranks first (by decode, or `best prefill`) and says\n\
               which won; --prompt, --gen and --parallel set the workload it is ranked for, as for :plan.",
        flags: &["layers", "prompt", "gen", "parallel"],
        completion: Completion::Words(PLAN_WORDS),
        debug: false,
        parse: p::shard,
    },
    CommandSpec {
        name: "set",
        aliases: &[],
        usage: ":set [temperature|top_k|top_p|min_p|repeat_penalty|seed|max_tokens|context VALUE | chat|ignore_eos|recover on|off | system TEXT | wire f64|f32|f16|bf16|q8 | kv f16|f32|q8_0]",
        summary: "change a generation setting; alone, list them",
        help: "temperature 0 decodes greedily (deterministic). context takes effect at the next :shard.\n\
               chat on renders prompts through the model's chat template and keeps the turns until :reset.\n\
               `:set system` with no text clears the system message. ignore_eos on generates past end of text.\n\
               wire sets the precision of activations between nodes from the next :shard: f64 is exact\n\
               (every layout gives one node's tokens); f32, f16, bf16 and q8 send fewer bytes.\n\
               kv sets the KV cache's precision from the next :shard: f16 (default, as llama.cpp), f32 or q8_0.\n\
               recover on (default): a node lost mid-generation is dropped, the layout re-planned on the\n\
               survivors, the caches rebuilt by replaying their tokens, and the generation goes on.",
        flags: &[],
        completion: Completion::Words(SETTINGS),
        debug: false,
        parse: p::set,
    },
    CommandSpec {
        name: "reset",
        aliases: &[],
        usage: ":reset",
        summary: "forget the chat turns so far",
        help: "",
        flags: &[],
        completion: Completion::Nothing,
        debug: false,
        parse: p::reset,
    },
    CommandSpec {
        name: "stats",
        aliases: &[],
        usage: ":stats",
        summary: "per node: memory, compute vs wait, traffic per token, all-reduce and hop latency",
        help: "Counters run from the last :shard. The last line is the last generation's prefill and\n\
               decode rates and time to first token.",
        flags: &[],
        completion: Completion::Nothing,
        debug: false,
        parse: p::stats,
    },
    CommandSpec {
        name: "trace",
        aliases: &[],
        usage: ":trace",
        summary: "the last step as a per-node timeline (compute, wait, send, receive)",
        help: "",
        flags: &[],
        completion: Completion::Nothing,
        debug: false,
        parse: p::trace,
    },
    CommandSpec {
        name: "bench",
        aliases: &[],
        usage: ":bench [--prompt N] [--gen M] [LAYOUT...]",
        summary: "run one workload under several layouts; tok/s and the ratio to one node",
        help: "Layouts are written tensor, pipeline, hybrid:2x2, pipeline:0..10,10..30; the default is\n\
               tensor and pipeline over the connected nodes. The baseline is the whole model in this\n\
               process with one node's thread count. Decoding is greedy and ignores end of text.\n\
               The layout in place before the bench is restored after it.",
        flags: &["prompt", "gen"],
        completion: Completion::Words(LAYOUTS),
        debug: false,
        parse: p::bench,
    },
    CommandSpec {
        name: "serve",
        aliases: &[],
        usage: ":serve [ADDR] [--parallel N] [--api-key-file F] | :serve off",
        summary: "serve this session's model over the OpenAI API while you keep working",
        help: "Listens on ADDR (default 127.0.0.1:8080; port 0 picks a free one) with /v1/models,\n\
               /v1/chat/completions, /v1/completions, /health and /metrics. Up to N requests (default 8)\n\
               are generated together, a step of all of them at a time; more wait, and past 64 waiting get a 429.\n\
               The server runs between your commands: :stats shows its requests, :trace and :links work as\n\
               before, and a prompt you type runs while the clients wait. :shard re-plans (requests in flight\n\
               fail); :load, :unload, :connect, :disconnect and :bench wait for `:serve off`, which stops\n\
               taking requests, finishes those in flight and closes the port.",
        flags: &["parallel", "api-key-file"],
        completion: Completion::Words(&["off"]),
        debug: false,
        parse: p::serve,
    },
    CommandSpec {
        name: "record",
        aliases: &[],
        usage: ":record FILE | :record off",
        summary: "write this session from here on as a replayable transcript",
        help: "Measured values are written as placeholders ({time}, {bytes}...), so the file replays\n\
               with `shardlab replay FILE`.",
        flags: &[],
        completion: Completion::Path,
        debug: false,
        parse: p::record,
    },
    CommandSpec {
        name: "help",
        aliases: &["h", "?"],
        usage: ":help [COMMAND]",
        summary: "list the commands, or explain one",
        help: "",
        flags: &[],
        completion: Completion::Commands,
        debug: false,
        parse: p::help,
    },
    CommandSpec {
        name: "quit",
        aliases: &["exit", "q"],
        usage: ":quit",
        summary: "leave (nodes are released); Ctrl-D does the same",
        help: "",
        flags: &[],
        completion: Completion::Nothing,
        debug: false,
        parse: p::quit,
    },
    CommandSpec {
        name: "kill",
        aliases: &[],
        usage: ":kill NODE [after STEPS]",
        summary: "kill a local node process, to see how the session copes (local clusters only)",
        help: "A debugging aid: only nodes started by `:connect local` can be killed. The node drops out\n\
               of the cluster. With recover on (`:set recover`, the default) the next step re-plans on the\n\
               survivors, replays the caches and goes on; off, `:shard LAYOUT` re-plans by hand.\n\
               `after STEPS` kills it once that many steps of the next generation have run (the prompt's\n\
               prefill is one), to show a node dying mid-generation.",
        flags: &[],
        completion: Completion::NodeNames,
        debug: true,
        parse: p::kill,
    },
];

/// The command called `name` (without the colon), by name or alias.
pub fn lookup(name: &str) -> Option<&'static CommandSpec> {
    let name = name.to_ascii_lowercase();
    COMMANDS
        .iter()
        .find(|c| c.name == name || c.aliases.contains(&name.as_str()))
}
