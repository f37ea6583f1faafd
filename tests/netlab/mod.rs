//! Test hosts with their own addresses, and node processes the tests own.
//!
//! [`Lab`] makes one network namespace per node, each joined to a bridge in
//! the root namespace by a veth pair, so every node is a separate host with
//! its own IP (10.X.Y.2, .3, ...; the coordinator reaches them from the
//! bridge's .1). A host can be cut off (its veth set down) or rate-limited
//! (`tc ... tbf`, both directions). Names carry the owning process id, so a
//! lab left behind by a killed test run is removed by the next one, and
//! [`Lab`]'s `Drop` removes its own. Needs root (`ip netns`); see
//! tests/README.md.
//!
//! [`NodeProc`] starts `shardlab node` (optionally inside a namespace) at a
//! fixed address, so a test can kill, stop and restart it.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::channel;
use std::time::Duration;

pub mod model;
pub mod shell;

pub const EXE: &str = env!("CARGO_BIN_EXE_shardlab");

/// Runs a command; a failure says which command and why.
fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("`{}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("{e}");
    }
}

static LABS: AtomicU32 = AtomicU32::new(0);

pub struct Host {
    /// Network namespace name.
    pub ns: String,
    pub ip: String,
    /// The root-namespace end of its veth pair (on the bridge).
    pub veth: String,
}

pub struct Lab {
    pub bridge: String,
    pub hosts: Vec<Host>,
}

impl Lab {
    /// `n` hosts on a fresh bridge.
    pub fn new(n: usize) -> Lab {
        if !cfg!(target_os = "linux") {
            panic!("test hosts are Linux network namespaces; this platform has none");
        }
        assert!(n < 200, "a lab holds at most 199 hosts");
        remove_stale();
        let pid = std::process::id();
        let k = LABS.fetch_add(1, Ordering::SeqCst);
        // One /24 per lab: the process and the lab number pick it.
        let subnet = format!("10.{}.{}", 200 + k % 50, pid % 250 + 1);
        let mut lab = Lab {
            bridge: format!("slb{pid}x{k}"),
            hosts: Vec::new(),
        };
        must(&["ip", "link", "add", &lab.bridge, "type", "bridge"]);
        must(&["ip", "link", "set", &lab.bridge, "up"]);
        must(&[
            "ip",
            "addr",
            "add",
            &format!("{subnet}.1/24"),
            "dev",
            &lab.bridge,
        ]);
        for i in 0..n {
            let host = Host {
                ns: format!("slab-{pid}-{k}-{i}"),
                ip: format!("{subnet}.{}", i + 2),
                veth: format!("slv{pid}x{k}h{i}"),
            };
            must(&["ip", "netns", "add", &host.ns]);
            let (ns, veth, ip) = (host.ns.clone(), host.veth.clone(), host.ip.clone());
            // Pushed before it is wired, so Drop removes a half-made host.
            lab.hosts.push(host);
            must(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            must(&["ip", "link", "set", &veth, "master", &lab.bridge]);
            must(&["ip", "link", "set", &veth, "up"]);
            must(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    /// Cuts host `i` off: nothing reaches it or leaves it.
    pub fn cut(&self, i: usize) {
        must(&["ip", "link", "set", &self.hosts[i].veth, "down"]);
    }

    pub fn restore(&self, i: usize) {
        must(&["ip", "link", "set", &self.hosts[i].veth, "up"]);
    }

    /// Limits host `i`'s traffic to `rate` (tc syntax, e.g. "8mbit") both
    /// ways: its own egress inside the namespace, and what the bridge sends it.
    pub fn limit_rate(&self, i: usize, rate: &str) {
        let h = &self.hosts[i];
        let tbf = ["tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"];
        let mut inside = vec![
            "ip", "netns", "exec", &h.ns, "tc", "qdisc", "replace", "dev", "eth0", "root",
        ];
        inside.extend_from_slice(&tbf);
        must(&inside);
        let mut outside = vec!["tc", "qdisc", "replace", "dev", &h.veth, "root"];
        outside.extend_from_slice(&tbf);
        must(&outside);
    }

    pub fn unlimit(&self, i: usize) {
        let h = &self.hosts[i];
        must(&[
            "ip", "netns", "exec", &h.ns, "tc", "qdisc", "del", "dev", "eth0", "root",
        ]);
        must(&["tc", "qdisc", "del", "dev", &h.veth, "root"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The veth pair goes explicitly: a deleted namespace lives on (with
        // its veth) while the kernel drains sockets left in it.
        for h in &self.hosts {
            let _ = run(&["ip", "link", "del", &h.veth]);
            let _ = run(&["ip", "netns", "del", &h.ns]);
        }
        let _ = run(&["ip", "link", "del", &self.bridge]);
    }
}

fn pid_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

/// Removes namespaces and links left by test processes that are gone.
pub fn remove_stale() {
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix("slab-") else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or("");
            if !pid.is_empty() && !pid_alive(pid) {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "12: slb1234x0: <...>" or "13: slv1234x0h1@if2: <...>"
            let Some(name) = line.split(':').nth(1).map(str::trim) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or("");
            let Some(rest) = name
                .strip_prefix("slb")
                .or_else(|| name.strip_prefix("slv"))
            else {
                continue;
            };
            let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !pid.is_empty() && rest[pid.len()..].starts_with('x') && !pid_alive(&pid) {
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    }
}

/// How to start one node.
#[derive(Clone)]
pub struct NodeSpec {
    pub name: String,
    pub listen: String,
    pub token_file: PathBuf,
    pub cache_dir: PathBuf,
    pub log: PathBuf,
    /// The node's own deadline for a peer's activations, in seconds.
    pub step_timeout: f64,
    /// Run inside this network namespace.
    pub ns: Option<String>,
    /// More `shardlab node` flags (e.g. `--no-advertise`).
    pub extra_args: Vec<String>,
}

/// A node process; killed when dropped.
pub struct NodeProc {
    pub spec: NodeSpec,
    pub addr: String,
    child: Child,
}

impl NodeProc {
    pub fn start(spec: &NodeSpec) -> NodeProc {
        match Self::try_start(spec) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts the node and waits (up to 20 s) for it to listen. The address
    /// is retried for up to 2 s: a restarted node may find its port still
    /// held for a moment.
    pub fn try_start(spec: &NodeSpec) -> Result<NodeProc, String> {
        let mut last = String::new();
        for _ in 0..20 {
            match Self::start_once(spec) {
                Ok(p) => return Ok(p),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }

    fn start_once(spec: &NodeSpec) -> Result<NodeProc, String> {
        std::fs::create_dir_all(&spec.cache_dir).map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|e| format!("{}: {e}", spec.log.display()))?;
        let mut cmd = match &spec.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, EXE]);
                c
            }
            None => Command::new(EXE),
        };
        cmd.args(["node", "--listen", &spec.listen, "--name", &spec.name])
            .arg("--token-file")
            .arg(&spec.token_file)
            .args(["--threads", "1", "--step-timeout"])
            .arg(spec.step_timeout.to_string())
            .arg("--cache-dir")
            .arg(&spec.cache_dir)
            .args(&spec.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd.spawn().map_err(|e| format!("starting {EXE}: {e}"))?;
        let stdout = child.stdout.take().ok_or("stdout not captured")?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut sent = false;
            // Drain until the node exits, so it never blocks on stdout.
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if let (false, Some(addr)) = (sent, line.trim().strip_prefix("listening on ")) {
                    let _ = tx.send(addr.to_string());
                    sent = true;
                }
                line.clear();
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => {
                // A node asked for port 0 keeps the port it got, so a
                // restart from this spec comes back at the same address.
                let mut spec = spec.clone();
                if spec.listen.ends_with(":0") {
                    spec.listen = addr.clone();
                }
                Ok(NodeProc { spec, addr, child })
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&spec.log).unwrap_or_default();
                Err(format!(
                    "{} did not start: {}",
                    spec.name,
                    log.lines().last().unwrap_or("no output")
                ))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.spec.log).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        signal(self.pid(), "CONT");
        self.kill();
    }
}

/// Sends a signal by name ("STOP", "CONT", "KILL") to a process.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Nodes on loopback (or in `lab`'s hosts) sharing a fresh token.
pub struct Nodes {
    pub procs: Vec<NodeProc>,
    pub token_file: PathBuf,
}

impl Nodes {
    pub fn start(dir: &Path, n: usize, step_timeout: f64, lab: Option<&Lab>) -> Nodes {
        let token_file = dir.join("token");
        shardlab_engine::net::Token::generate()
            .write_file(&token_file)
            .expect("writes the token");
        let procs = (0..n)
            .map(|i| {
                let (listen, ns) = match lab {
                    Some(l) => (
                        format!("{}:7070", l.hosts[i].ip),
                        Some(l.hosts[i].ns.clone()),
                    ),
                    // The node picks its own port: a port found free here
                    // and released could be taken before the node binds it.
                    None => ("127.0.0.1:0".to_string(), None),
                };
                NodeProc::start(&NodeSpec {
                    name: format!("node{i}"),
                    listen,
                    token_file: token_file.clone(),
                    cache_dir: dir.join(format!("cache{i}")),
                    log: dir.join(format!("node{i}.log")),
                    step_timeout,
                    ns,
                    extra_args: Vec::new(),
                })
            })
            .collect();
        Nodes { procs, token_file }
    }

    pub fn addrs(&self) -> Vec<String> {
        self.procs.iter().map(|p| p.addr.clone()).collect()
    }

    pub fn token(&self) -> shardlab_engine::net::Token {
        shardlab_engine::net::Token::from_file(&self.token_file).expect("reads the token")
    }

    /// The token file's text, to look for in logs.
    pub fn token_text(&self) -> String {
        std::fs::read_to_string(&self.token_file)
            .expect("reads the token")
            .trim()
            .to_string()
    }
}
