//! `:serve` in the workbench: a real `shardlab shell --script -` process,
//! fed one line at a time on a pipe, serves the official `openai` client
//! from its 2-node tensor cluster while `:stats` and `:trace` keep working;
//! commands that would change the served model wait for `:serve off`; a
//! node killed mid-serve gets its requests a 503 naming it until `:shard`
//! re-plans on the survivor; `:serve off` closes the port.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http::{run_openai_client, Client};

/// How long one command may take to show its line (loading included).
const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// A shell reading its script from a pipe; killed when dropped.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    log: Arc<Mutex<String>>,
}

impl Shell {
    fn start() -> Shell {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardlab"))
            .args(["shell", "--script", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the shell starts");
        let stdin = child.stdin.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for pipe in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let (tx, log) = (tx.clone(), log.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                    let _ = tx.send(line);
                }
            });
        }
        Shell {
            child,
            stdin,
            lines,
            log,
        }
    }

    /// Sends `command`, then returns its output up to and including the
    /// first line containing `marker`.
    fn run(&mut self, command: &str, marker: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let deadline = Instant::now() + COMMAND_LIMIT;
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if line.contains(marker) {
                        return seen;
                    }
                }
                Err(_) => panic!(
                    "`{command}` never printed '{marker}'; the shell said:\n{}",
                    self.log.lock().unwrap()
                ),
            }
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `:serve` on a free port, four at once: what it printed, and a
    /// client for the address it listens on.
    fn serve(&mut self) -> (String, Client) {
        let started = self.run(
            ":serve 127.0.0.1:0 --parallel 4",
            "serving smollm2 on http://",
        );
        let addr = started
            .split("on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the address it listens on")
            .to_string();
        let api = Client {
            base: format!("http://{addr}"),
            key: None,
        };
        (started, api)
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The number just before `label` in `line` ("... 13 done ...").
fn count_before(line: &str, label: &str) -> u64 {
    let head = line
        .split(label)
        .next()
        .unwrap_or_else(|| panic!("no '{label}' in {line}"));
    head.split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before '{label}' in {line}"))
}

#[test]
fn the_workbench_serves_recovers_from_a_dead_node_and_without_recovery_waits_for_shard() {
    let mut shell = Shell::start();
    // Budgets that leave KV room for a few thousand positions in all.
    shell.run(":connect local 2 --mem-limit 300M", "connected 2 nodes");
    shell.run(":load smollm2", "opened smollm2");
    shell.run(":shard tensor", "sharded tensor over 2 nodes");
    let (started, api) = shell.serve();
    assert!(
        started.contains("positions for all requests together (node0 ("),
        "{started}"
    );

    // The openai client, served between the shell's lines.
    let (ok, stdout, stderr) = run_openai_client(&api.base, "sk-any", 4);
    assert!(ok, "{stdout}\n{stderr}\nshell:\n{}", shell.log());

    // :stats adds the requests: 3 single ones, 2 conversation turns, and
    // 4 prompts asked alone and then together (the 404 never queued).
    let stats = shell.run(":stats", "requests");
    let line = stats
        .lines()
        .find(|l| l.starts_with("server http://"))
        .unwrap_or_else(|| panic!("no server line in:\n{stats}"));
    assert_eq!(count_before(line, " done"), 13, "{line}");
    assert_eq!(count_before(line, " failed"), 0, "{line}");
    assert_eq!(count_before(line, " in flight"), 0, "{line}");
    assert!(count_before(line, " tokens generated") >= 13 * 8, "{line}");
    assert_eq!(
        count_before(line, " of "),
        0,
        "nothing reserved when idle: {line}"
    );
    // The nodes' per-token traffic counts the served tokens.
    assert!(stats.contains("node0"), "{stats}");

    let trace = shell.run(":trace", "node1");
    assert!(!trace.contains("error"), "{trace}");
    let refused = shell.run(":load smollm2", "error");
    assert!(refused.contains("`:serve off` first"), "{refused}");

    // A node dies: the request that meets it is answered anyway, by the
    // survivor (recovery is on), and the next command tells what happened.
    shell.run(":kill node1", "killed node1");
    let chat = r#"{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"temperature":0,"max_tokens":6}"#;
    let (status, body) = api.post("/v1/chat/completions", chat);
    assert_eq!(status, 200, "{body}\n{}", shell.log());
    assert_eq!(body["usage"]["completion_tokens"], 6, "{body}");
    let told = shell.run(":nodes", "node0");
    assert!(
        told.contains("the server recovered: node1") && told.contains("now tensor over 1 node"),
        "the next command tells what happened: {told}"
    );

    // With recovery off, a node that dies fails the request that meets it
    // with a 503 naming it, until :shard re-plans.
    let stopped = shell.run(":serve off", "stopped serving on");
    assert!(stopped.contains("14 requests done, 0 failed"), "{stopped}");
    shell.run(":set recover off", "recover = off");
    shell.run(":disconnect", "released 1 node");
    shell.run(":connect local 2 --mem-limit 300M", "connected 2 nodes");
    shell.run(":shard tensor", "sharded tensor over 2 nodes");
    let (_, api) = shell.serve();
    shell.run(":kill node1", "killed node1");
    let (status, body) = api.post("/v1/chat/completions", chat);
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("node1"), "{body}");
    let (status, body) = api.post("/v1/chat/completions", chat);
    assert_eq!(status, 503, "{body}");
    let replanned = shell.run(":shard tensor", "sharded tensor over 1 node");
    assert!(
        replanned.contains("the server's step failed") && replanned.contains("node1"),
        "the next command tells what happened: {replanned}"
    );
    let (status, body) = api.post("/v1/chat/completions", chat);
    assert_eq!(status, 200, "{body}\n{}", shell.log());
    assert_eq!(body["usage"]["completion_tokens"], 6, "{body}");

    let stopped = shell.run(":serve off", "stopped serving on");
    assert!(stopped.contains("1 requests done, 2 failed"), "{stopped}");
    let (status, _) = api.curl("/health", &[]);
    assert_eq!(status, 0, "the port is closed after :serve off");

    writeln!(shell.stdin, ":quit").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while shell.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the shell did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    // `:load` failed on purpose, so the script as a whole failed.
    assert!(!shell.child.wait().unwrap().success());
}
