//! One parser per command: the words of a line to a typed [`Command`].
//! Each names what is wrong in words a person can act on.

use std::path::PathBuf;
use std::time::Duration;

use shardlab_engine::discovery::DEFAULT_BROWSE_WINDOW;

use shardlab_engine::net::LinkProfile;
use shardlab_engine::orchestrator::report::Objective;
use shardlab_engine::shard::plan::speed::Workload;
use shardlab_engine::shard::plan::{parse_layers, LayoutRequest};

use super::args::{number, Args};
use super::table::{LAYOUTS, PLAN_WORDS, SETTINGS};
use super::{
    closest, lookup, BenchArgs, Command, ConnectTarget, LayoutChoice, ParseError, PlanArgs,
    ServeCommand, Setting, DEFAULT_SERVE_ADDR, DEFAULT_SERVE_PARALLEL,
};
use crate::size::parse_size;

fn err(message: impl Into<String>) -> ParseError {
    ParseError {
        message: message.into(),
        suggestion: None,
    }
}

fn no_args(a: &Args, cmd: Command) -> Result<Command, ParseError> {
    a.at_most(0)?;
    Ok(cmd)
}

pub fn disconnect(a: &Args) -> Result<Command, ParseError> {
    no_args(a, Command::Disconnect)
}
pub fn nodes(a: &Args) -> Result<Command, ParseError> {
    no_args(a, Command::Nodes)
}
pub fn links(a: &Args) -> Result<Command, ParseError> {
    match a.positional.first().map(String::as_str) {
        None => no_args(a, Command::Links),
        Some("emulate") => {
            a.at_most(2)?;
            let spec = a.positional.get(1).ok_or_else(|| {
                err("`:links emulate` needs a profile (tb5, 10gbe, 1gbe, wifi), key=value pairs such as latency=2ms,bandwidth=1gbit, or `off`")
            })?;
            LinkProfile::parse_or_off(spec)
                .map(Command::EmulateLinks)
                .map_err(|e| err(e.to_string()))
        }
        Some(other) => Err(ParseError {
            message: format!("`:links` takes nothing or `emulate PROFILE`, not '{other}'"),
            suggestion: closest(other, ["emulate"]),
        }),
    }
}
pub fn unload(a: &Args) -> Result<Command, ParseError> {
    no_args(a, Command::Unload)
}
pub fn model(a: &Args) -> Result<Command, ParseError> {
    no_args(a, Command::Model)
}
pub fn reset(a: &Args) -> Result<Command, ParseError> {
    no_args(a, Command::Reset)
}
pub fn stats(a: &Args) -> Result<Command, ParseError> {
    no_args(a, Command::Stats)
}
pub fn trace(a: &Args) -> Result<Command, ParseError> {
    no_args(a, Command::Trace)
}
pub fn quit(a: &Args) -> Result<Command, ParseError> {
    no_args(a, Command::Quit)
}

pub fn connect(a: &Args) -> Result<Command, ParseError> {
    a.check()?;
    match a.positional.first().map(String::as_str) {
        None => Err(err("give node addresses, `local N`, or `auto`")),
        Some("auto") => {
            a.at_most(2)?;
            if a.flag("mem-limit").is_some() || a.flag("threads").is_some() {
                return Err(err(
                    "--mem-limit and --threads apply to `local` nodes; running nodes take them at start",
                ));
            }
            let window = match a.positional.get(1) {
                None => DEFAULT_BROWSE_WINDOW,
                Some(w) => browse_window(w)?,
            };
            Ok(Command::Connect(ConnectTarget::Auto {
                window,
                token_file: a.flag("token-file").map(PathBuf::from),
            }))
        }
        Some("local") => {
            a.at_most(2)?;
            if a.flag("token-file").is_some() {
                return Err(err(
                    "local nodes make their own token; --token-file is for addresses",
                ));
            }
            let n = a
                .positional
                .get(1)
                .ok_or_else(|| err("`local` needs a node count, e.g. `:connect local 2`"))?;
            let nodes = number(n, "the node count")?;
            if nodes == 0 {
                return Err(err("the node count must be at least 1"));
            }
            let mem_limits = match a.flag("mem-limit") {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(|s| parse_size(s).map_err(|e| err(format!("--mem-limit: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?,
            };
            if mem_limits.len() > 1 && mem_limits.len() != nodes {
                return Err(err(format!(
                    "--mem-limit lists {} sizes for {nodes} nodes (give one for all, or one per node)",
                    mem_limits.len()
                )));
            }
            let threads = a.number_flag("threads")?;
            if threads == Some(0) {
                return Err(err("--threads must be at least 1"));
            }
            Ok(Command::Connect(ConnectTarget::Local {
                nodes,
                mem_limits,
                threads,
            }))
        }
        Some(_) => {
            if a.flag("mem-limit").is_some() || a.flag("threads").is_some() {
                return Err(err(
                    "--mem-limit and --threads apply to `local` nodes; running nodes take them at start",
                ));
            }
            let addrs: Vec<String> = a
                .positional
                .iter()
                .flat_map(|w| w.split(','))
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(bad) = addrs.iter().find(|s| !s.contains(':')) {
                return Err(err(format!(
                    "'{bad}' is not an address (HOST:PORT); for local nodes write `local {bad}`"
                )));
            }
            Ok(Command::Connect(ConnectTarget::Remote {
                addrs,
                token_file: a.flag("token-file").map(PathBuf::from),
            }))
        }
    }
}

/// `3s` or `3`: how long `:connect auto` browses.
fn browse_window(text: &str) -> Result<Duration, ParseError> {
    let secs: f64 = text
        .strip_suffix('s')
        .unwrap_or(text)
        .parse()
        .map_err(|_| {
            err(format!(
                "`auto` takes how long to look, e.g. `3s`, not '{text}'"
            ))
        })?;
    if !(secs > 0.0 && secs <= 600.0) {
        return Err(err(format!(
            "look for between 0 and 600 seconds, not '{text}'"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn load(a: &Args) -> Result<Command, ParseError> {
    a.at_most(1)?;
    match a.positional.first() {
        Some(m) => Ok(Command::Load(m.clone())),
        None => Err(err(
            "which model? e.g. `:load smollm2` or `:load path/to/model.gguf`",
        )),
    }
}

/// `tensor`, `hybrid 2x2`, `hybrid:2x2`, `pipeline --layers 0..10,10..30`.
fn layout(a: &Args) -> Result<LayoutRequest, ParseError> {
    a.check()?;
    if a.positional.is_empty() {
        return Err(err(
            "which layout? tensor, expert, pipeline, hybrid TxP, single, or best (the fastest that fits)",
        ));
    }
    let text = a.positional.join(" ");
    let mut request: LayoutRequest = text.parse().map_err(|e| ParseError {
        message: format!("{e}"),
        suggestion: closest(
            a.positional[0].split(':').next().unwrap_or(""),
            PLAN_WORDS.iter().copied(),
        ),
    })?;
    if let Some(layers) = a.flag("layers") {
        let ranges = parse_layers(layers).map_err(|e| err(e.to_string()))?;
        request = match request {
            LayoutRequest::Pipeline { layers: None } => LayoutRequest::Pipeline {
                layers: Some(ranges),
            },
            other => return Err(err(format!("--layers applies to pipeline, not {other}"))),
        };
    }
    Ok(request)
}

pub fn plan(a: &Args) -> Result<Command, ParseError> {
    plan_args(a).map(Command::Plan)
}

pub fn shard(a: &Args) -> Result<Command, ParseError> {
    plan_args(a).map(Command::Shard)
}

/// A layout, or `best [decode|prefill]`, and the workload flags.
fn plan_args(a: &Args) -> Result<PlanArgs, ParseError> {
    a.check()?;
    let workload = workload(a)?;
    let choice = match a.positional.first().map(|w| w.to_ascii_lowercase()) {
        Some(w) if w == "best" => {
            if a.flag("layers").is_some() {
                return Err(err(
                    "--layers names a pipeline's split; `best` picks the layout itself",
                ));
            }
            a.at_most(2)?;
            LayoutChoice::Best(objective(a.positional.get(1).map(String::as_str))?)
        }
        _ => LayoutChoice::Given(layout(a)?),
    };
    Ok(PlanArgs { choice, workload })
}

/// What `best` ranks by: decode (the default) or prefill.
fn objective(word: Option<&str>) -> Result<Objective, ParseError> {
    match word.map(str::to_ascii_lowercase).as_deref() {
        None | Some("decode") => Ok(Objective::Decode),
        Some("prefill") => Ok(Objective::Prefill),
        Some(other) => Err(ParseError {
            message: format!(
                "`best` ranks by decode (tokens generated per second, the default) or prefill (prompt tokens per second), not '{other}'"
            ),
            suggestion: closest(other, ["decode", "prefill"]),
        }),
    }
}

/// `--prompt N --gen N --parallel K`; the default workload where not given.
fn workload(a: &Args) -> Result<Workload, ParseError> {
    let d = Workload::default();
    let w = Workload {
        prompt_tokens: a.number_flag("prompt")?.unwrap_or(d.prompt_tokens),
        gen_tokens: a.number_flag("gen")?.unwrap_or(d.gen_tokens),
        in_flight: a.number_flag("parallel")?.unwrap_or(d.in_flight),
    };
    if w.prompt_tokens == 0 || w.gen_tokens == 0 || w.in_flight == 0 {
        return Err(err("--prompt, --gen and --parallel must be at least 1"));
    }
    Ok(w)
}

fn float(text: &str, what: &str) -> Result<f32, ParseError> {
    text.trim()
        .parse::<f32>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| err(format!("{what} must be a number, got '{text}'")))
}

pub fn set(a: &Args) -> Result<Command, ParseError> {
    a.check()?;
    let Some(key) = a.positional.first() else {
        return Ok(Command::Set(None));
    };
    let key_lc = key.to_ascii_lowercase();
    if key_lc == "system" {
        let text = a.raw.trim_start()[key.len()..].trim();
        let text = strip_quotes(text);
        return Ok(Command::Set(Some(Setting::System(
            (!text.is_empty()).then(|| text.to_string()),
        ))));
    }
    if !SETTINGS.contains(&key_lc.as_str()) {
        return Err(ParseError {
            message: format!("no setting '{key}' (settings: {})", SETTINGS.join(", ")),
            suggestion: closest(&key_lc, SETTINGS.iter().copied()),
        });
    }
    a.at_most(2)?;
    let Some(value) = a.positional.get(1) else {
        return Err(err(format!("`:set {key_lc}` needs a value")));
    };
    let n = |what| number(value, what);
    let setting = match key_lc.as_str() {
        "temperature" => Setting::Temperature(float(value, "temperature")?),
        "top_k" => Setting::TopK(n("top_k")?),
        "top_p" => Setting::TopP(float(value, "top_p")?),
        "min_p" => Setting::MinP(float(value, "min_p")?),
        "repeat_penalty" => Setting::RepeatPenalty(float(value, "repeat_penalty")?),
        "seed" => Setting::Seed(n("seed")? as u64),
        "max_tokens" => Setting::MaxTokens(n("max_tokens")?),
        "context" => match n("context")? {
            0 => return Err(err("context must be at least 1 token")),
            c => Setting::Context(c),
        },
        "chat" => Setting::Chat(on_off(value, "chat")?),
        "recover" => Setting::Recover(on_off(value, "recover")?),
        "wire" => Setting::Wire(value.parse().map_err(|e: String| err(e))?),
        "kv" => Setting::Kv(value.parse().map_err(|e: String| err(e))?),
        _ => Setting::IgnoreEos(on_off(value, "ignore_eos")?),
    };
    Ok(Command::Set(Some(setting)))
}

fn on_off(value: &str, what: &str) -> Result<bool, ParseError> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        other => Err(err(format!("{what} is on or off, got '{other}'"))),
    }
}

fn strip_quotes(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

pub fn bench(a: &Args) -> Result<Command, ParseError> {
    a.check()?;
    let prompt_tokens = a.number_flag("prompt")?.unwrap_or(32);
    let gen_tokens = a.number_flag("gen")?.unwrap_or(32);
    if prompt_tokens == 0 || gen_tokens == 0 {
        return Err(err("--prompt and --gen must be at least 1"));
    }
    let layouts = a
        .positional
        .iter()
        .map(|w| {
            w.parse::<LayoutRequest>().map_err(|e| ParseError {
                message: e.to_string(),
                suggestion: closest(w.split(':').next().unwrap_or(""), LAYOUTS.iter().copied()),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Command::Bench(BenchArgs {
        prompt_tokens,
        gen_tokens,
        layouts,
    }))
}

pub fn record(a: &Args) -> Result<Command, ParseError> {
    a.at_most(1)?;
    match a.positional.first().map(String::as_str) {
        None => Err(err("give a file to write, or `off`")),
        Some("off") => Ok(Command::Record(None)),
        Some(path) => Ok(Command::Record(Some(PathBuf::from(path)))),
    }
}

pub fn help(a: &Args) -> Result<Command, ParseError> {
    a.at_most(1)?;
    match a.positional.first() {
        None => Ok(Command::Help(None)),
        Some(name) => {
            let name = name.trim_start_matches(':');
            match lookup(name) {
                Some(spec) => Ok(Command::Help(Some(spec.name.to_string()))),
                None => Err(ParseError {
                    message: format!("no command ':{name}'"),
                    suggestion: closest(name, super::COMMANDS.iter().map(|c| c.name))
                        .map(|n| format!(":help {n}")),
                }),
            }
        }
    }
}

pub fn serve(a: &Args) -> Result<Command, ParseError> {
    a.check()?;
    a.at_most(1)?;
    let first = a.positional.first().map(String::as_str);
    if first == Some("off") {
        if a.flag("parallel").is_some() || a.flag("api-key-file").is_some() {
            return Err(err("`:serve off` takes no flags"));
        }
        return Ok(Command::Serve(ServeCommand::Off));
    }
    let text = first.unwrap_or(DEFAULT_SERVE_ADDR);
    let listen = text.parse().map_err(|_| {
        err(format!(
            "'{text}' is not an address to listen on (IP:PORT, e.g. 127.0.0.1:8080), or `off`"
        ))
    })?;
    let parallel = a.number_flag("parallel")?.unwrap_or(DEFAULT_SERVE_PARALLEL);
    let most = shardlab_engine::orchestrator::serving::MAX_PARALLEL;
    if parallel == 0 || parallel > most {
        return Err(err(format!("--parallel must be 1 to {most}")));
    }
    Ok(Command::Serve(ServeCommand::On {
        listen,
        parallel,
        api_key_file: a.flag("api-key-file").map(PathBuf::from),
    }))
}

pub fn kill(a: &Args) -> Result<Command, ParseError> {
    // NODE [after STEPS]; also refuses malformed flags.
    a.at_most(3)?;
    let node = a
        .positional
        .first()
        .ok_or_else(|| err("which node? e.g. `:kill node1`"))?
        .clone();
    match a.positional.get(1).map(String::as_str) {
        None => Ok(Command::Kill { node, after: None }),
        Some("after") => {
            let steps = a
                .positional
                .get(2)
                .ok_or_else(|| err("after how many steps? e.g. `:kill node1 after 4`"))?;
            Ok(Command::Kill {
                node,
                after: Some(number(steps, "steps")?),
            })
        }
        // Anything else after the node is one word too many.
        Some(_) => a.at_most(1).map(|()| Command::Kill { node, after: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Command};
    use shardlab_engine::net::LinkProfile;

    #[test]
    fn links_emulate_takes_a_profile_a_spec_or_off() {
        assert_eq!(parse(":links"), Ok(Command::Links));
        assert_eq!(
            parse(":links emulate wifi"),
            Ok(Command::EmulateLinks(LinkProfile::named("wifi")))
        );
        let Ok(Command::EmulateLinks(Some(p))) =
            parse(":links emulate latency=2ms,bandwidth=1gbit")
        else {
            panic!("a key=value spec parses");
        };
        assert_eq!(p.bandwidth_bps, 1_000_000_000);
        assert_eq!(parse(":links emulate off"), Ok(Command::EmulateLinks(None)));
    }

    #[test]
    fn serve_takes_an_address_flags_or_off() {
        use super::super::ServeCommand;
        let on = |line: &str| match parse(line) {
            Ok(Command::Serve(ServeCommand::On {
                listen, parallel, ..
            })) => (listen.to_string(), parallel),
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(on(":serve"), ("127.0.0.1:8080".into(), 8));
        assert_eq!(on(":serve 0.0.0.0:0 --parallel 4"), ("0.0.0.0:0".into(), 4));
        assert_eq!(parse(":serve off"), Ok(Command::Serve(ServeCommand::Off)));
        let err = |line: &str| parse(line).unwrap_err().to_string();
        assert!(err(":serve localhost").contains("'localhost' is not an address"));
        assert!(err(":serve --parallel 0").contains("--parallel must be 1 to 63"));
        assert!(err(":serve off --parallel 2").contains("takes no flags"));
        assert!(err(":serve 127.0.0.1:1 extra").contains("unexpected 'extra'"));
    }

    #[test]
    fn links_emulate_errors_name_the_problem() {
        let err = |line: &str| parse(line).unwrap_err().to_string();
        assert!(err(":links emulate").contains("needs a profile"));
        assert!(err(":links emulate bandwidth=10gbt")
            .contains("bandwidth=10gbt: unknown unit 'gbt', expected bit/kbit/mbit/gbit"));
        assert!(err(":links emulate lan").contains("unknown link profile 'lan'"));
        assert!(err(":links emulate wifi extra").contains("unexpected 'extra'"));
        assert!(err(":links emulat").ends_with("did you mean emulate?"));
    }
}
