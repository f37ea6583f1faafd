//! Discovery between network namespaces: nodes advertise `_shardlab._tcp`
//! on a test bridge, and a coordinator in a namespace of its own finds
//! them with `:connect auto` or `--nodes auto`. Every process, browser
//! included, runs inside a lab host, so mDNS goes out only on veths joined
//! to the lab's bridge, never on this machine's own interfaces.
//!
//! Browses last 2 s; the whole file takes well under a minute.

mod common;
mod netlab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use netlab::{Lab, NodeProc, NodeSpec, EXE};

const PROMPT: &str = "The capital of France is";

/// A fresh token in `dir/NAME`.
fn token(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    shardlab_engine::net::Token::generate()
        .write_file(&path)
        .expect("writes a token");
    path
}

/// Node `dn{i}` on lab host `i`, at its bridge address unless `listen`
/// says otherwise.
fn node(
    lab: &Lab,
    i: usize,
    dir: &Path,
    token: &Path,
    listen: Option<&str>,
    extra: &[&str],
) -> NodeProc {
    let host = &lab.hosts[i];
    let node = NodeProc::start(&NodeSpec {
        name: format!("dn{i}"),
        listen: listen.map_or_else(|| format!("{}:7070", host.ip), str::to_string),
        token_file: token.to_path_buf(),
        cache_dir: dir.join(format!("cache{i}")),
        log: dir.join(format!("dn{i}.log")),
        step_timeout: 30.0,
        ns: Some(host.ns.clone()),
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
    });
    // Its startup line comes once it has registered (or decided not to).
    assert!(logs(&node, ": listening on "), "{}", node.log());
    node
}

/// Whether the node's log says `text` within a few seconds (its startup
/// line on stderr follows the "listening on" line the start waits for).
fn logs(node: &NodeProc, text: &str) -> bool {
    for _ in 0..50 {
        if node.log().contains(text) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// `shardlab ARGS` inside namespace `ns`.
fn shardlab_in(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, EXE])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// Runs `lines` as a shell script in namespace `ns`: whether every line
/// succeeded, and everything printed.
fn shell_in(ns: &str, dir: &Path, lines: &[String]) -> (bool, String) {
    let script = dir.join("script.txt");
    std::fs::write(&script, lines.join("\n") + "\n").expect("writes the script");
    let script = script.display().to_string();
    let out = shardlab_in(ns, &["shell", "--script", &script])
        .output()
        .expect("runs the shell");
    (out.status.success(), printed(&out))
}

fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn connect_auto(token: &Path) -> String {
    format!(":connect auto 2s --token-file {}", token.display())
}

/// The `:nodes` row of node `name` ("node0"), if any.
fn row<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines()
        .rev()
        .find(|l| l.starts_with(&format!("│ {name} ┆")))
}

#[test]
fn three_nodes_in_three_namespaces_are_found_by_mdns_joined_and_generate() {
    common::smollm2();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::new(4);
    let t = token(dir.path(), "token");
    let _nodes: Vec<NodeProc> = (0..3)
        .map(|i| node(&lab, i, dir.path(), &t, None, &[]))
        .collect();
    let (ok, out) = shell_in(
        &lab.hosts[3].ns,
        dir.path(),
        &[
            connect_auto(&t),
            ":nodes".into(),
            ":load smollm2".into(),
            ":shard tensor".into(),
            ":set temperature 0".into(),
            ":set max_tokens 8".into(),
            PROMPT.into(),
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("3 nodes joined, 0 refused"), "{out}");
    // `:nodes` names each node as found by mDNS under its instance name,
    // at the address its host listens on.
    let rows: Vec<&str> = (0..3)
        .map(|i| row(&out, &format!("node{i}")).unwrap_or_else(|| panic!("no node{i}:\n{out}")))
        .collect();
    for (j, host) in lab.hosts[..3].iter().enumerate() {
        let r = rows
            .iter()
            .find(|r| r.contains(&format!("mDNS dn{j}@")))
            .unwrap_or_else(|| panic!("dn{j} not found by mDNS:\n{out}"));
        assert!(r.contains(&format!("{}:7070", host.ip)), "{r}");
        assert!(r.contains(" up "), "{r}");
    }
    assert!(out.contains(" Paris"), "{out}");
}

#[test]
fn discovery_with_one_node_that_has_the_wrong_token_refuses_it_and_runs_on_the_others() {
    common::smollm2();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::new(4);
    let right = token(dir.path(), "token");
    let wrong = token(dir.path(), "other-token");
    let _nodes = [
        node(&lab, 0, dir.path(), &right, None, &[]),
        node(&lab, 1, dir.path(), &wrong, None, &[]),
        node(&lab, 2, dir.path(), &right, None, &[]),
    ];
    let right_text = right.display().to_string();
    let generate = ["-p", PROMPT, "--temperature", "0", "-n", "8"];
    let mut auto = vec!["run", "--nodes", "auto", "--discover-for", "2"];
    auto.extend(["--token-file", &right_text, "--layout", "tensor"]);
    auto.extend(generate);
    let found = shardlab_in(&lab.hosts[3].ns, &auto).output().expect("runs");
    let told = String::from_utf8_lossy(&found.stderr).to_string();
    assert!(found.status.success(), "{told}");
    let refused = told
        .lines()
        .find(|l| l.contains("dn1@"))
        .unwrap_or_else(|| panic!("dn1 not listed:\n{told}"));
    assert!(refused.contains("refused: wrong token"), "{refused}");
    assert!(
        refused.contains(&format!("{}:7070", lab.hosts[1].ip)),
        "{refused}"
    );
    for i in [0, 2] {
        let line = told
            .lines()
            .find(|l| l.contains(&format!("dn{i}@")))
            .unwrap_or_else(|| panic!("dn{i} not listed:\n{told}"));
        assert!(line.contains("joined as node"), "{line}");
    }
    // The two that accepted hold the model and give one process's text.
    let mut alone = vec!["run"];
    alone.extend(generate);
    let one = Command::new(EXE)
        .args(&alone)
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert!(one.status.success(), "{}", printed(&one));
    assert_eq!(
        String::from_utf8_lossy(&found.stdout),
        String::from_utf8_lossy(&one.stdout)
    );
}

#[test]
fn a_node_started_with_no_advertise_is_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::new(3);
    let t = token(dir.path(), "token");
    let _seen = node(&lab, 0, dir.path(), &t, None, &[]);
    let quiet = node(&lab, 1, dir.path(), &t, None, &["--no-advertise"]);
    assert!(
        logs(&quiet, "not advertised on the LAN (--no-advertise)"),
        "{}",
        quiet.log()
    );
    let (ok, out) = shell_in(&lab.hosts[2].ns, dir.path(), &[connect_auto(&t)]);
    assert!(ok, "{out}");
    assert!(out.contains("1 node joined, 0 refused"), "{out}");
    assert!(out.contains("dn0@"), "{out}");
    assert!(!out.contains("dn1@"), "{out}");
    assert!(!out.contains(&lab.hosts[1].ip), "{out}");
}

#[test]
fn a_node_on_loopback_is_not_advertised_and_finding_nothing_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::new(2);
    let t = token(dir.path(), "token");
    let local = node(&lab, 0, dir.path(), &t, Some("127.0.0.1:7070"), &[]);
    assert!(
        logs(&local, "not advertised on the LAN: it listens on loopback"),
        "{}",
        local.log()
    );
    let (ok, out) = shell_in(&lab.hosts[1].ns, dir.path(), &[connect_auto(&t)]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("error: no shardlab node answered on the LAN within 2 s"),
        "{out}"
    );
}
