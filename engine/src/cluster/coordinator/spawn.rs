//! Local nodes: `:connect local N` and `--nodes local:N` start N node
//! processes of this same binary on loopback ports with a fresh token.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

use crate::net::Token;

#[derive(Debug, Clone)]
pub struct LocalNodeOptions {
    /// The `shardlab` binary to run as `shardlab node`.
    pub exe: PathBuf,
    /// Cache root: node i keeps its shards in `<home>/nodes/local-<i>`.
    pub home: PathBuf,
    pub threads_per_node: usize,
    /// Per-node thread counts, overriding `threads_per_node` (missing
    /// entries: `threads_per_node`): nodes of unequal speed on one machine.
    pub threads_each: Vec<usize>,
    /// Per-node `--mem-limit` in bytes (missing entries: none).
    pub mem_limits: Vec<Option<u64>>,
    /// Pin each node to its own cores, node 0 from core 0 on, each next
    /// node after the last one's (taskset; refused where the platform
    /// cannot pin).
    pub pin_cores: bool,
    /// Extra flags for every node.
    pub extra_args: Vec<String>,
}

impl LocalNodeOptions {
    /// Worker threads of node `i`.
    pub fn threads_of(&self, i: usize) -> usize {
        self.threads_each
            .get(i)
            .copied()
            .unwrap_or(self.threads_per_node)
            .max(1)
    }
}

/// Node processes owned by this coordinator; killed when dropped.
pub struct LocalNodes {
    pub addrs: Vec<String>,
    pub token: Token,
    pub token_file: PathBuf,
    pub pids: Vec<u32>,
    children: Vec<Child>,
    dir: PathBuf,
}

const START_DEADLINE: Duration = Duration::from_secs(20);

impl LocalNodes {
    pub fn spawn(n: usize, opts: &LocalNodeOptions) -> Result<Self, String> {
        if n == 0 {
            return Err("a local cluster needs at least 1 node".into());
        }
        let dir = opts.home.join("run").join(format!(
            "local-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let token = Token::generate();
        let token_file = dir.join("token");
        token
            .write_file(&token_file)
            .map_err(|e| format!("writing {}: {e}", token_file.display()))?;
        let mut nodes = Self {
            addrs: Vec::new(),
            token,
            token_file,
            pids: Vec::new(),
            children: Vec::new(),
            dir,
        };
        for i in 0..n {
            let (child, addr) = nodes.start_one(i, opts)?;
            nodes.pids.push(child.id());
            nodes.children.push(child);
            nodes.addrs.push(addr);
        }
        Ok(nodes)
    }

    fn start_one(&self, i: usize, opts: &LocalNodeOptions) -> Result<(Child, String), String> {
        let cache = opts.home.join("nodes").join(format!("local-{i}"));
        std::fs::create_dir_all(&cache)
            .map_err(|e| format!("creating {}: {e}", cache.display()))?;
        let log_path = self.dir.join(format!("node{i}.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let threads = opts.threads_of(i);
        let mut cmd = if opts.pin_cores {
            let first: usize = (0..i).map(|j| opts.threads_of(j)).sum();
            crate::platform::pinned_command(opts.exe.as_os_str(), first, first + threads - 1)?
        } else {
            Command::new(&opts.exe)
        };
        cmd.arg("node")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--name")
            .arg(format!("node{i}"))
            .arg("--token-file")
            .arg(&self.token_file)
            .arg("--threads")
            .arg(threads.to_string())
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--exit-with-stdin")
            .args(&opts.extra_args);
        if let Some(Some(limit)) = opts.mem_limits.get(i) {
            cmd.arg("--mem-limit").arg(limit.to_string());
        }
        // Its own process group: a Ctrl-C at the coordinator's terminal
        // (cancelling a generation) must not kill the nodes too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        // Its stdin is a pipe whose write end stays in `child` and so in
        // this process: however the coordinator ends (a kill it cannot catch
        // included), the node reads end-of-file and exits (`--exit-with-stdin`).
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("starting {} node: {e}", opts.exe.display()))?;
        // The node prints "listening on ADDR" once bound.
        let stdout = child.stdout.take().ok_or("node stdout was not captured")?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(_) => {
                        if let Some(addr) = line.trim().strip_prefix("listening on ") {
                            let addr = addr.split_whitespace().next().unwrap_or("").to_string();
                            let _ = tx.send(Some(addr));
                            // Keep draining so the node never blocks on stdout.
                            let mut sink = String::new();
                            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                                sink.clear();
                            }
                            return;
                        }
                    }
                }
            }
        });
        match rx.recv_timeout(START_DEADLINE) {
            Ok(Some(addr)) => Ok((child, addr)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                Err(format!(
                    "node{i} did not start within {START_DEADLINE:?}: {}",
                    log.lines().last().unwrap_or("no output")
                ))
            }
        }
    }

    /// Kills node `i` (for fault tests and demos).
    pub fn kill(&mut self, i: usize) -> Result<(), String> {
        let child = self
            .children
            .get_mut(i)
            .ok_or_else(|| format!("no local node {i}"))?;
        child.kill().map_err(|e| format!("killing node{i}: {e}"))?;
        let _ = child.wait();
        Ok(())
    }

    /// Where node `i` writes its log.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}.log"))
    }
}

impl Drop for LocalNodes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
