//! The parser from a line to a [`Command`]: every command kind, prompts and
//! blank lines, and the errors a person sees for unknown commands, bad
//! arguments and bad flags.

use std::path::PathBuf;

use shardlab_engine::parallel::WireDtype;
use shardlab_engine::shard::plan::LayoutRequest;

use super::*;

fn ok(line: &str) -> Command {
    parse(line).unwrap_or_else(|e| panic!("{line:?} did not parse: {e}"))
}

/// The error as the shell prints it.
fn error(line: &str) -> String {
    match parse(line) {
        Ok(c) => panic!("{line:?} parsed as {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn usage(name: &str) -> &'static str {
    lookup(name).unwrap().usage
}

fn set(line: &str) -> Setting {
    match ok(line) {
        Command::Set(Some(s)) => s,
        other => panic!("{line:?} parsed as {other:?}"),
    }
}

#[test]
fn blank_lines_are_nothing_and_other_text_is_a_prompt() {
    assert_eq!(ok(""), Command::Nothing);
    assert_eq!(ok("  \t \n"), Command::Nothing);
    assert_eq!(
        ok("The capital of France is\n"),
        Command::Prompt("The capital of France is".into())
    );
    // Inner and leading spaces are the user's; only the line end goes.
    assert_eq!(ok("  a\n  b\r\n"), Command::Prompt("  a\n  b".into()));
    assert_eq!(
        ok("\\:not a command"),
        Command::Prompt(":not a command".into())
    );
}

#[test]
fn commands_without_arguments() {
    let cases = [
        (":disconnect", Command::Disconnect),
        (":nodes", Command::Nodes),
        (":links", Command::Links),
        (":unload", Command::Unload),
        (":model", Command::Model),
        (":reset", Command::Reset),
        (":stats", Command::Stats),
        (":trace", Command::Trace),
        (":quit", Command::Quit),
        (":help", Command::Help(None)),
    ];
    for (line, expected) in cases {
        assert_eq!(ok(line), expected, "{line}");
        // Surrounding blanks do not matter.
        assert_eq!(ok(&format!("  {line}  \n")), expected, "{line}");
    }
}

#[test]
fn aliases_and_upper_case_names_find_their_command() {
    assert_eq!(ok(":exit"), Command::Quit);
    assert_eq!(ok(":q"), Command::Quit);
    assert_eq!(ok(":QUIT"), Command::Quit);
    assert_eq!(ok(":h"), Command::Help(None));
    assert_eq!(ok(":?"), Command::Help(None));
    assert_eq!(ok(":Stats"), Command::Stats);
}

#[test]
fn a_command_that_takes_nothing_refuses_words_and_flags() {
    assert_eq!(
        error(":nodes now"),
        format!(
            ":nodes: takes no arguments, found 'now'; usage: {}",
            usage("nodes")
        )
    );
    assert_eq!(
        error(":stats --all 1"),
        format!(
            ":stats: takes no flags, found --all; usage: {}",
            usage("stats")
        )
    );
    assert!(error(":quit now please").contains("found 'now please'"));
}

#[test]
fn unknown_commands_suggest_the_nearest_one() {
    let e = parse(":shrd tensor").unwrap_err();
    assert_eq!(e.message, "unknown command ':shrd' (:help lists them)");
    assert_eq!(e.suggestion.as_deref(), Some(":shard"));
    assert_eq!(
        e.to_string(),
        "unknown command ':shrd' (:help lists them); did you mean :shard?"
    );
    // A transposition is one edit; a unique prefix is enough.
    assert_eq!(
        parse(":sahrd").unwrap_err().suggestion.as_deref(),
        Some(":shard")
    );
    assert_eq!(
        parse(":disc").unwrap_err().suggestion.as_deref(),
        Some(":disconnect")
    );
    // Nothing near: no guess.
    let e = parse(":xyzzy").unwrap_err();
    assert_eq!(e.suggestion, None);
    assert_eq!(e.to_string(), "unknown command ':xyzzy' (:help lists them)");
}

#[test]
fn connect_to_local_nodes() {
    assert_eq!(
        ok(":connect local 2"),
        Command::Connect(ConnectTarget::Local {
            nodes: 2,
            mem_limits: vec![],
            threads: None,
        })
    );
    assert_eq!(
        ok(":connect local 3 --mem-limit 300M --threads 2"),
        Command::Connect(ConnectTarget::Local {
            nodes: 3,
            mem_limits: vec![300 << 20],
            threads: Some(2),
        })
    );
    assert_eq!(
        ok(":connect local 2 --mem-limit=256M,1G"),
        Command::Connect(ConnectTarget::Local {
            nodes: 2,
            mem_limits: vec![256 << 20, 1 << 30],
            threads: None,
        })
    );
}

#[test]
fn connect_to_running_nodes_by_address() {
    assert_eq!(
        ok(":connect node-a:7000,node-b:7000 node-c:7001 --token-file /etc/token"),
        Command::Connect(ConnectTarget::Remote {
            addrs: vec![
                "node-a:7000".into(),
                "node-b:7000".into(),
                "node-c:7001".into()
            ],
            token_file: Some(PathBuf::from("/etc/token")),
        })
    );
    assert_eq!(
        ok(":connect localhost:7000"),
        Command::Connect(ConnectTarget::Remote {
            addrs: vec!["localhost:7000".into()],
            token_file: None,
        })
    );
}

#[test]
fn connect_auto_browses_for_three_seconds_unless_told() {
    assert_eq!(
        ok(":connect auto --token-file /etc/token"),
        Command::Connect(ConnectTarget::Auto {
            window: std::time::Duration::from_secs(3),
            token_file: Some(PathBuf::from("/etc/token")),
        })
    );
    for window in ["5s", "5", "5.0s"] {
        assert_eq!(
            ok(&format!(":connect auto {window}")),
            Command::Connect(ConnectTarget::Auto {
                window: std::time::Duration::from_secs(5),
                token_file: None,
            })
        );
    }
    assert!(error(":connect auto soon").contains("`auto` takes how long to look, e.g. `3s`"));
    assert!(error(":connect auto 0s").contains("between 0 and 600 seconds"));
    assert!(error(":connect auto 2s --threads 2").contains("apply to `local` nodes"));
    assert!(error(":connect auto 2s extra").contains(":connect"));
}

#[test]
fn connect_errors_say_what_to_write() {
    let u = usage("connect");
    assert_eq!(
        error(":connect"),
        format!(":connect: give node addresses, `local N`, or `auto`; usage: {u}")
    );
    assert!(error(":connect local").contains("`local` needs a node count"));
    assert!(
        error(":connect local two").contains("the node count must be a whole number, got 'two'")
    );
    assert!(error(":connect local 0").contains("the node count must be at least 1"));
    assert!(error(":connect local 2 --mem-limit 1G,2G,3G")
        .contains("--mem-limit lists 3 sizes for 2 nodes"));
    assert!(
        error(":connect local 2 --mem-limit lots").contains("--mem-limit: 'lots' is not a size")
    );
    assert!(error(":connect local 2 --threads 0").contains("--threads must be at least 1"));
    assert!(error(":connect local 2 --token-file t").contains("local nodes make their own token"));
    assert!(error(":connect node1").contains("'node1' is not an address (HOST:PORT)"));
    assert!(error(":connect a:1 --threads 2").contains("apply to `local` nodes"));
    assert!(error(":connect local 2 3").contains("unexpected '3'"));
    assert!(error(":connect local 2 --threads").contains("--threads needs a value"));
}

#[test]
fn a_misspelt_flag_is_named_with_the_nearest_one() {
    let e = parse(":connect local 2 --thread 2").unwrap_err();
    assert_eq!(
        e.message,
        format!(
            ":connect: unknown flag --thread; usage: {}",
            usage("connect")
        )
    );
    assert_eq!(e.suggestion.as_deref(), Some("--threads"));
    assert!(error(":plan tensor --layer 0..3").ends_with("did you mean --layers?"));
}

#[test]
fn load_takes_one_model_quoted_if_it_has_spaces() {
    assert_eq!(ok(":load smollm2"), Command::Load("smollm2".into()));
    assert_eq!(
        ok(":load 'my models/tiny.gguf'"),
        Command::Load("my models/tiny.gguf".into())
    );
    assert!(error(":load").contains("which model? e.g. `:load smollm2`"));
    assert!(error(":load a b").contains("unexpected 'b'"));
    // A quote left open is reported before the command looks at its words.
    assert_eq!(error(":load 'tiny.gguf"), "unclosed ' quote");
}

#[test]
fn plan_and_shard_take_every_layout() {
    let pipeline = |layers: Option<Vec<std::ops::Range<usize>>>| LayoutRequest::Pipeline { layers };
    let cases = [
        ("tensor", LayoutRequest::Tensor),
        ("single", LayoutRequest::Single),
        ("pipeline", pipeline(None)),
        ("pipeline:0..10,10..30", pipeline(Some(vec![0..10, 10..30]))),
        (
            "pipeline --layers 0..12,12..30",
            pipeline(Some(vec![0..12, 12..30])),
        ),
        (
            "hybrid 2x2",
            LayoutRequest::Hybrid {
                tensor: 2,
                pipeline: 2,
            },
        ),
        (
            "hybrid:3x1",
            LayoutRequest::Hybrid {
                tensor: 3,
                pipeline: 1,
            },
        ),
        ("TENSOR", LayoutRequest::Tensor),
    ];
    for (words, layout) in cases {
        assert_eq!(
            ok(&format!(":plan {words}")),
            Command::Plan(PlanArgs::given(layout.clone()))
        );
        assert_eq!(
            ok(&format!(":shard {words}")),
            Command::Shard(PlanArgs::given(layout))
        );
    }
}

#[test]
fn layout_errors_name_the_problem() {
    assert_eq!(
        error(":shard"),
        format!(
            ":shard: which layout? tensor, expert, pipeline, hybrid TxP, single, or best (the fastest that fits); usage: {}",
            usage("shard")
        )
    );
    let e = parse(":plan tensr").unwrap_err();
    assert!(e.message.contains("unknown layout 'tensr'"), "{e}");
    assert_eq!(e.suggestion.as_deref(), Some("tensor"));
    assert!(error(":plan hybrid").contains("hybrid needs a shape"));
    assert!(error(":plan hybrid 2by2").contains("'2by2' is not a TxP shape"));
    assert!(error(":plan hybrid 0x2")
        .contains("the tensor factor '0' must be a whole number of at least 1"));
    assert!(
        error(":plan tensor --layers 0..10").contains("--layers applies to pipeline, not tensor")
    );
    assert!(error(":plan pipeline --layers 0..10,x").contains("'x' is not a range like 0..15"));
    assert!(error(":shard tensor 2").contains("tensor takes no argument, found '2'"));
}

#[test]
fn set_alone_lists_and_each_setting_parses_its_value() {
    assert_eq!(ok(":set"), Command::Set(None));
    assert_eq!(set(":set temperature 0.7"), Setting::Temperature(0.7));
    assert_eq!(set(":set TEMPERATURE 0"), Setting::Temperature(0.0));
    assert_eq!(set(":set top_k 40"), Setting::TopK(40));
    assert_eq!(set(":set top_p 0.9"), Setting::TopP(0.9));
    assert_eq!(set(":set min_p 0.05"), Setting::MinP(0.05));
    assert_eq!(set(":set repeat_penalty 1.1"), Setting::RepeatPenalty(1.1));
    assert_eq!(set(":set seed 42"), Setting::Seed(42));
    assert_eq!(set(":set max_tokens 1_000"), Setting::MaxTokens(1000));
    assert_eq!(set(":set context 512"), Setting::Context(512));
    assert_eq!(set(":set chat on"), Setting::Chat(true));
    assert_eq!(set(":set chat NO"), Setting::Chat(false));
    assert_eq!(set(":set ignore_eos true"), Setting::IgnoreEos(true));
    assert_eq!(set(":set ignore_eos 0"), Setting::IgnoreEos(false));
    assert_eq!(set(":set wire q8"), Setting::Wire(WireDtype::Q8));
    assert_eq!(set(":set wire f64"), Setting::Wire(WireDtype::F64));
    assert_eq!(
        set(":set kv f32"),
        Setting::Kv(shardlab_engine::model::kv_type::KvType::F32)
    );
}

#[test]
fn set_system_keeps_the_rest_of_the_line() {
    assert_eq!(
        set(":set system You are terse.  Answer in one line."),
        Setting::System(Some("You are terse.  Answer in one line.".into()))
    );
    assert_eq!(
        set(":set system \"Be brief\""),
        Setting::System(Some("Be brief".into()))
    );
    assert_eq!(set(":set system"), Setting::System(None));
    assert_eq!(set(":set system ''"), Setting::System(None));
}

#[test]
fn every_setting_reports_its_key_back() {
    for key in table::SETTINGS {
        let value = match *key {
            "chat" | "ignore_eos" | "recover" => "on",
            "wire" => "f32",
            "kv" => "q8_0",
            "system" => "hi",
            _ => "1",
        };
        assert_eq!(set(&format!(":set {key} {value}")).key(), *key);
    }
}

#[test]
fn set_errors_name_the_setting_and_the_value() {
    let e = parse(":set temprature 1").unwrap_err();
    assert!(
        e.message
            .starts_with(":set: no setting 'temprature' (settings: temperature, top_k"),
        "{e}"
    );
    assert_eq!(e.suggestion.as_deref(), Some("temperature"));
    assert!(error(":set seed").contains("`:set seed` needs a value"));
    assert!(error(":set top_k many").contains("top_k must be a whole number, got 'many'"));
    assert!(error(":set top_k -1").contains("top_k must be a whole number, got '-1'"));
    assert!(error(":set temperature warm").contains("temperature must be a number, got 'warm'"));
    assert!(error(":set top_p NaN").contains("top_p must be a number, got 'NaN'"));
    assert!(error(":set context 0").contains("context must be at least 1 token"));
    assert!(error(":set chat maybe").contains("chat is on or off, got 'maybe'"));
    assert!(error(":set seed 1 2").contains("unexpected '2'"));
    assert!(error(":set wire f8").starts_with(":set: "));
}

#[test]
fn bench_defaults_flags_and_layouts() {
    assert_eq!(
        ok(":bench"),
        Command::Bench(BenchArgs {
            prompt_tokens: 32,
            gen_tokens: 32,
            layouts: vec![],
        })
    );
    assert_eq!(
        ok(":bench --prompt 64 --gen=16 tensor hybrid:2x1 pipeline:0..10,10..30"),
        Command::Bench(BenchArgs {
            prompt_tokens: 64,
            gen_tokens: 16,
            layouts: vec![
                LayoutRequest::Tensor,
                LayoutRequest::Hybrid {
                    tensor: 2,
                    pipeline: 1
                },
                LayoutRequest::Pipeline {
                    layers: Some(vec![0..10, 10..30])
                },
            ],
        })
    );
    assert!(error(":bench --gen 0").contains("--prompt and --gen must be at least 1"));
    assert!(error(":bench --prompt x").contains("--prompt must be a whole number, got 'x'"));
    assert!(error(":bench --gen").contains("--gen needs a value"));
    let e = parse(":bench tensr").unwrap_err();
    assert!(e.message.contains("unknown layout 'tensr'"), "{e}");
    assert_eq!(e.suggestion.as_deref(), Some("tensor"));
}

#[test]
fn record_a_file_or_off() {
    assert_eq!(
        ok(":record session.txt"),
        Command::Record(Some(PathBuf::from("session.txt")))
    );
    assert_eq!(ok(":record off"), Command::Record(None));
    assert!(error(":record").contains("give a file to write, or `off`"));
    assert!(error(":record a b").contains("unexpected 'b'"));
}

#[test]
fn help_names_a_command_by_name_or_alias() {
    assert_eq!(ok(":help shard"), Command::Help(Some("shard".into())));
    assert_eq!(ok(":help :shard"), Command::Help(Some("shard".into())));
    assert_eq!(ok(":help q"), Command::Help(Some("quit".into())));
    assert_eq!(ok(":? set"), Command::Help(Some("set".into())));
    let e = parse(":help shrd").unwrap_err();
    assert!(e.message.contains("no command ':shrd'"), "{e}");
    assert_eq!(e.suggestion.as_deref(), Some(":help shard"));
}

#[test]
fn kill_takes_one_node() {
    assert_eq!(
        ok(":kill node1"),
        Command::Kill {
            node: "node1".into(),
            after: None
        }
    );
    assert_eq!(
        ok(":kill 2 after 5"),
        Command::Kill {
            node: "2".into(),
            after: Some(5)
        }
    );
    assert!(error(":kill node1 after").contains("after how many steps?"));
    assert!(error(":kill node1 after x").contains("steps must be a whole number"));
    assert!(error(":kill node1 after 3 4").contains("unexpected '4'"));
    assert!(error(":kill").contains("which node? e.g. `:kill node1`"));
    assert!(error(":kill node1 node2").contains("unexpected 'node2'"));
}

#[test]
fn links_emulate_reaches_its_parser() {
    assert_eq!(ok(":links emulate off"), Command::EmulateLinks(None));
    let e = parse(":links status").unwrap_err();
    assert!(
        e.message.contains("takes nothing or `emulate PROFILE`"),
        "{e}"
    );
}

#[test]
fn every_command_in_the_table_parses_and_reports_its_own_usage() {
    for spec in COMMANDS {
        for name in std::iter::once(&spec.name).chain(spec.aliases) {
            assert!(
                std::ptr::eq(lookup(name).unwrap(), spec),
                "{name} looks up another command"
            );
            // A bogus flag is refused by every command, with its usage.
            let e = parse(&format!(":{name} --no-such-flag x")).unwrap_err();
            assert!(e.message.starts_with(&format!(":{}: ", spec.name)), "{e}");
            assert!(
                e.message.ends_with(&format!("; usage: {}", spec.usage)),
                "{e}"
            );
        }
    }
}
