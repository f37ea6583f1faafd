//! The interactive shell driven through a pseudo-terminal, as a person
//! would: tab completion, Ctrl-C during a generation and at the prompt,
//! history across restarts, Ctrl-D to leave.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

const PROMPT: &str = "shardlab> ";

fn shell(home: &Path) -> PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardlab"));
    cmd.env("SHARDLAB_HOME", home).env("TERM", "xterm");
    let mut p = spawn_with_options(
        cmd,
        Options::new()
            .timeout_ms(Some(60_000))
            .strip_ansi_escape_codes(true),
    )
    .unwrap();
    p.exp_string("Ctrl-D leaves").unwrap();
    p.exp_string(PROMPT).unwrap();
    p
}

#[test]
fn tab_completes_a_command_name() {
    let home = tempfile::tempdir().unwrap();
    let mut p = shell(home.path());
    p.send(":sha").unwrap();
    p.send("\t").unwrap();
    p.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    p.send_line("").unwrap();
    // `:shard` with no layout: proof the line held the whole name.
    p.exp_string(":shard: which layout?").unwrap();
    p.exp_string(PROMPT).unwrap();
    p.send_control('d').unwrap();
    p.exp_string("bye").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn ctrl_c_stops_a_generation_and_the_session_goes_on() {
    let model = shardlab_engine::model::store::default_model_path().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut p = shell(home.path());
    p.send_line(&format!(":load {}", model.display())).unwrap();
    p.exp_string("opened").unwrap();
    p.exp_string(PROMPT).unwrap();
    // Each command's own output says it ran: the prompt is redrawn while
    // typing, so it alone would not.
    p.send_line(":set ignore_eos on").unwrap();
    p.exp_string("ignore_eos = on").unwrap();
    p.send_line(":set max_tokens 3000").unwrap();
    p.exp_string("max_tokens = 3000").unwrap();
    p.send_line("Once upon a time").unwrap();
    p.exp_string("into this process").unwrap();
    // Let it load and stream a while, then interrupt.
    std::thread::sleep(Duration::from_secs(4));
    p.send_control('c').unwrap();
    p.exp_string("cancelled]").unwrap();
    p.exp_string(PROMPT).unwrap();
    p.send_line(":set max_tokens 2").unwrap();
    p.exp_string("max_tokens = 2").unwrap();
    p.send_line("Hello").unwrap();
    p.exp_string("[2 tokens").unwrap();
    p.exp_string("max_tokens reached]").unwrap();
    p.exp_string(PROMPT).unwrap();
    p.send_control('d').unwrap();
    p.exp_string("bye").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn history_survives_a_restart_and_ctrl_c_clears_the_line() {
    let home = tempfile::tempdir().unwrap();
    let mut p = shell(home.path());
    // Ctrl-C at the prompt drops what was typed.
    p.send("garbage").unwrap();
    p.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    p.send_control('c').unwrap();
    p.exp_string(PROMPT).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    p.send_line(":help quit").unwrap();
    p.exp_string("leave (nodes are released)").unwrap();
    p.exp_string(PROMPT).unwrap();
    p.send_control('d').unwrap();
    p.exp_string("bye").unwrap();
    p.exp_eof().unwrap();
    let history = std::fs::read_to_string(home.path().join("history")).unwrap();
    assert!(history.contains(":help quit"), "{history}");
    assert!(!history.contains("garbage"), "{history}");

    let mut p = shell(home.path());
    p.send("\x1b[A").unwrap(); // Up: the last command of the previous run
    p.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    p.send_line("").unwrap();
    p.exp_string("leave (nodes are released)").unwrap();
    p.exp_string(PROMPT).unwrap();
    p.send_line(":quit").unwrap();
    p.exp_string("bye").unwrap();
    p.exp_eof().unwrap();
}
