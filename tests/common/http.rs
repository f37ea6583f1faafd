//! What the server tests share: requests over curl, and the official
//! `openai` client script (tests/serve/openai_client.py).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::python::{python, run_bounded};

/// Requests to a server's address, with a key or without.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub key: Option<String>,
}

impl Client {
    /// `curl` with the key (if any) and `extra` arguments: (status, body).
    pub fn curl(&self, path: &str, extra: &[&str]) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-S", "--max-time", "300", "-w", "\n%{http_code}"]);
        if let Some(key) = &self.key {
            cmd.args(["-H", &format!("Authorization: Bearer {key}")]);
        }
        let out = cmd
            .args(extra)
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let (status, text) = self.curl(path, &["-H", "Content-Type: application/json", "-d", body]);
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON ({e}): {text}"));
        (status, value)
    }

    /// One sample of `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.curl("/metrics", &[]);
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }

    /// Polls `/metrics` until `name` reaches `value` (bounded).
    pub fn wait_metric(&self, name: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.metric(name) < value {
            assert!(Instant::now() < deadline, "{name} never reached {value}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs tests/serve/openai_client.py against the server at `base`, with
/// `clients` concurrent clients at the end: (passed, stdout, stderr).
pub fn run_openai_client(base: &str, key: &str, clients: usize) -> (bool, String, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/serve/openai_client.py");
    let mut cmd = Command::new(python());
    cmd.arg(script)
        .arg(format!("{base}/v1"))
        .arg(key)
        .arg("smollm2")
        .arg(clients.to_string());
    let (ok, stdout, stderr) = run_bounded(cmd, Duration::from_secs(900));
    (ok && stdout.lines().any(|l| l == "ok"), stdout, stderr)
}

/// The `code` of an OpenAI error body.
pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}
