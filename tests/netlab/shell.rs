//! `shardlab shell --script -` as a child process fed one line at a time:
//! a coordinator that a test can talk to, and kill.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ShellProc {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Everything the shell printed (stdout and stderr), as it arrives.
    pub out: Arc<Mutex<String>>,
}

impl ShellProc {
    /// `env`: extra environment (e.g. SHARDLAB_STEP_TIMEOUT).
    pub fn start(env: &[(&str, &str)]) -> ShellProc {
        let mut cmd = Command::new(super::EXE);
        cmd.args(["shell", "--script", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starts the shell");
        let out = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for r in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(r);
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if let Ok(mut o) = out.lock() {
                        o.push_str(&line);
                    }
                    line.clear();
                }
            });
        }
        let stdin = child.stdin.take();
        ShellProc { child, stdin, out }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("the shell reads its input");
        stdin.flush().expect("flushes");
    }

    pub fn output(&self) -> String {
        self.out.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Waits (at most `limit`) until `done` holds for the output so far.
    pub fn wait_for(&self, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        wait_until(limit, || {
            let o = self.output();
            done(&o).then_some(o)
        })
        .unwrap_or_else(|| {
            panic!(
                "the shell did not get there in {limit:?}:\n{}",
                self.output()
            )
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes stdin and waits (at most 60 s) for the shell to exit.
    pub fn finish(&mut self) -> Option<std::process::ExitStatus> {
        self.stdin = None;
        wait_until(Duration::from_secs(60), || {
            self.child.try_wait().ok().flatten()
        })
    }
}

impl Drop for ShellProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every 50 ms until it returns something or `limit` passes.
pub fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if started.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the file at `path` satisfies `done`.
pub fn wait_for_file(path: &Path, limit: Duration, done: impl Fn(&str) -> bool) -> String {
    wait_until(limit, || {
        let text = std::fs::read_to_string(path).ok()?;
        done(&text).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "{} did not get there in {limit:?}:\n{}",
            path.display(),
            std::fs::read_to_string(path).unwrap_or_default()
        )
    })
}
