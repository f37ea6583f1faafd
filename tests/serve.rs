//! `shardlab serve` as a real process on loopback, driven by real clients:
//! curl for the raw HTTP (every error a client can cause, auth, the queue
//! bound, a client that leaves), and the official `openai` Python package
//! (tests/serve/openai_client.py) on one process and on 2 tensor nodes.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http::{error_code, run_openai_client, Client};
use serde_json::Value;

/// A `shardlab serve` process; stopped with SIGTERM when dropped.
struct Server {
    child: Child,
    api: Client,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(args: &[&str], key: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardlab"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "-t", "1"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(key) = key {
            let path = dir.path().join("key");
            std::fs::write(&path, format!("{key}\n")).unwrap();
            cmd.arg("--api-key-file").arg(&path);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(rest) = line.split(" on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(300))
            .unwrap_or_else(|_| panic!("serve did not start:\n{}", stderr.lock().unwrap()));
        Server {
            child,
            api: Client {
                base: format!("http://{addr}"),
                key: key.map(str::to_string),
            },
            stderr,
        }
    }

    /// SIGTERM, then the exit status once in-flight requests finish.
    fn stop(mut self) -> bool {
        self.terminate()
    }

    fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

#[test]
fn curl_is_answered_and_every_bad_request_gets_an_openai_error() {
    let server = Server::start(&["--ctx", "128", "--max-body", "4096"], Some("sk-test"));
    let chat = r#"{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"temperature":0,"max_tokens":8}"#;

    let (status, text) = server
        .api
        .curl("/health", &["-H", "Authorization: Bearer wrong"]);
    assert_eq!(status, 200, "health needs no key: {text}");
    let anonymous = Client {
        key: None,
        ..server.api.clone()
    };
    let (status, text) = anonymous.curl("/v1/models", &[]);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("invalid_api_key"), "{text}");
    let (status, text) = anonymous.curl("/v1/models", &["-H", "Authorization: Bearer sk-wrong"]);
    assert_eq!(status, 401, "{text}");

    let (status, text) = server.api.curl("/v1/models", &[]);
    assert_eq!(status, 200, "{text}");
    let models: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(models["data"][0]["id"], "smollm2");

    let (status, body) = server.api.post("/v1/chat/completions", chat);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["usage"]["completion_tokens"], 8, "{body}");
    assert!(!body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());

    let (status, body) = server.api.post(
        "/v1/completions",
        r#"{"model":"smollm2","prompt":"Once upon a time","temperature":0}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert!(
        body["usage"]["completion_tokens"].as_u64().unwrap() <= 16,
        "{body}"
    );

    let cases: [(&str, &str, u16, &str); 7] = [
        ("/v1/chat/completions", "{not json", 400, ""),
        ("/v1/chat/completions", r#"{"model":"smollm2"}"#, 400, ""),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-9","messages":[{"role":"user","content":"Hi"}]}"#,
            404,
            "model_not_found",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"n":2}"#,
            400,
            "",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"temperature":7}"#,
            400,
            "",
        ),
        (
            "/v1/completions",
            r#"{"model":"smollm2","prompt":"Hi","max_tokens":0}"#,
            400,
            "",
        ),
        ("/v1/nowhere", "{}", 404, "unknown_url"),
    ];
    for (path, request, want, code) in cases {
        let (status, body) = server.api.post(path, request);
        assert_eq!(status, want, "{request} -> {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(body["error"]["type"].is_string(), "{body}");
        if !code.is_empty() {
            assert_eq!(error_code(&body), code, "{body}");
        }
    }
    // Over the 128-position context, under the 4096-byte body cap.
    let long = format!(
        r#"{{"model":"smollm2","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "tell me more ".repeat(100)
    );
    let (status, body) = server.api.post("/v1/chat/completions", &long);
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "context_length_exceeded", "{body}");
    let huge = format!(
        r#"{{"model":"smollm2","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(5000)
    );
    let (status, body) = server.api.post("/v1/chat/completions", &huge);
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_code(&body), "request_too_large", "{body}");

    // Still serving after all of that.
    let (status, body) = server.api.post("/v1/chat/completions", chat);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server
            .api
            .metric("shardlab_requests_total{outcome=\"done\"}"),
        3.0
    );
    assert_eq!(
        server
            .api
            .metric("shardlab_requests_total{outcome=\"failed\"}"),
        1.0
    );
    let log = server.log();
    assert!(server.stop(), "serve did not exit cleanly:\n{log}");
}

fn openai_client(server: &Server, key: &str) {
    let (ok, stdout, stderr) = run_openai_client(&server.api.base, key, 16);
    assert!(ok, "{stdout}\n{stderr}\nserver:\n{}", server.log());
}

#[test]
fn the_openai_client_is_served_by_one_process() {
    let server = Server::start(&["--parallel", "16"], None);
    // Without --api-key-file any key is accepted: clients always send one.
    openai_client(&server, "sk-anything");
    assert!(server.stop());
}

#[test]
fn the_openai_client_is_served_by_two_tensor_nodes() {
    let server = Server::start(
        &[
            "--parallel",
            "16",
            "--nodes",
            "local:2",
            "--layout",
            "tensor",
        ],
        Some("sk-cluster"),
    );
    openai_client(&server, "sk-cluster");
    assert!(server.stop());
}

#[test]
fn a_full_queue_gets_429_and_a_client_that_leaves_is_cancelled() {
    let server = Server::start(&["--parallel", "1", "--queue", "1"], None);
    let stream = r#"{"model":"smollm2","messages":[{"role":"user","content":"Write a long story."}],"max_tokens":2000,"stream":true}"#;
    // The one slot: a stream whose client will leave.
    let mut leaving = Command::new("curl")
        .args(["-s", "-N", "-d", stream])
        .arg(format!("{}/v1/chat/completions", server.api.base))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    server.api.wait_metric("shardlab_requests_in_flight", 1.0);
    // The one place in the queue.
    let waiting_body =
        r#"{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"max_tokens":4}"#;
    let waiting = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-d", waiting_body])
        .arg(format!("{}/v1/chat/completions", server.api.base))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    server.api.wait_metric("shardlab_requests_queued", 1.0);
    let (status, body) = server.api.post("/v1/chat/completions", waiting_body);
    assert_eq!(status, 429, "{body}");
    assert_eq!(error_code(&body), "queue_full", "{body}");

    leaving.kill().unwrap();
    leaving.wait().unwrap();
    server
        .api
        .wait_metric("shardlab_requests_total{outcome=\"cancelled\"}", 1.0);
    let out = waiting.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n200"), "the queued request: {text}");
    assert_eq!(
        server
            .api
            .metric("shardlab_requests_total{outcome=\"done\"}"),
        1.0
    );
    assert!(server.stop());
}

/// The processes any thread of `pid` started (Linux: /proc).
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// A local node process of the server and its name (`--name nodeN` on
/// its command line).
fn node_of(server: &Server, i: usize, count: usize) -> (u32, String) {
    let nodes = children(server.child.id());
    assert_eq!(nodes.len(), count, "local node processes: {nodes:?}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", nodes[i])).unwrap();
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let name = args
        .iter()
        .position(|a| a == "--name")
        .and_then(|i| args.get(i + 1))
        .expect("a node has --name")
        .clone();
    (nodes[i], name)
}

/// A streamed chat answer read on its own thread: the text so far and how
/// many pieces, shared with the test.
struct Streaming {
    curl: std::process::Child,
    reader: std::thread::JoinHandle<()>,
    seen: Arc<Mutex<(String, usize)>>,
}

impl Streaming {
    fn start(server: &Server, body: &str) -> Streaming {
        let mut curl = Command::new("curl")
            .args(["-s", "-N", "--max-time", "300", "-d", body])
            .arg(format!("{}/v1/chat/completions", server.api.base))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let seen = Arc::new(Mutex::new((String::new(), 0)));
        let out = curl.stdout.take().unwrap();
        let shared = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let Some(data) = line.strip_prefix("data: ") else {
                    continue;
                };
                if data == "[DONE]" {
                    break;
                }
                let chunk: Value = serde_json::from_str(data).unwrap();
                if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
                    let mut s = shared.lock().unwrap();
                    s.0.push_str(piece);
                    s.1 += 1;
                }
            }
        });
        Streaming { curl, reader, seen }
    }

    fn pieces(&self) -> usize {
        self.seen.lock().unwrap().1
    }

    fn finish(mut self) -> String {
        assert!(self.curl.wait().unwrap().success());
        self.reader.join().unwrap();
        let text = self.seen.lock().unwrap().0.clone();
        text
    }
}

#[test]
fn a_node_killed_while_requests_stream_is_recovered_from_and_the_answers_finish() {
    let server = Server::start(
        &[
            "--nodes",
            "local:3",
            "--layout",
            "tensor",
            "--parallel",
            "4",
        ],
        None,
    );
    let body = |topic: &str, stream: bool| {
        format!(
            r#"{{"model":"smollm2","messages":[{{"role":"user","content":"Write a story about {topic}."}}],"temperature":0,"max_tokens":48,"stream":{stream}}}"#
        )
    };
    let topics = ["a lighthouse", "a dragon"];
    let expected: Vec<String> = topics
        .iter()
        .map(|t| {
            let (status, whole) = server.api.post("/v1/chat/completions", &body(t, false));
            assert_eq!(status, 200, "{whole}");
            assert_eq!(whole["usage"]["completion_tokens"], 48, "{whole}");
            whole["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    let (pid, name) = node_of(&server, 1, 3);
    let streams: Vec<Streaming> = topics
        .iter()
        .map(|t| Streaming::start(&server, &body(t, true)))
        .collect();
    // Mid-answer: a few pieces of each are out, most are still to come.
    let deadline = Instant::now() + Duration::from_secs(120);
    while streams.iter().any(|s| s.pieces() < 4) {
        assert!(Instant::now() < deadline, "the streams did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let got: Vec<String> = streams.into_iter().map(Streaming::finish).collect();
    assert_eq!(got, expected, "the streamed answers after the recovery");
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("recovered: "))
        .unwrap_or_else(|| panic!("no recovery line:\n{log}"));
    assert!(line.contains(&format!("{name} (")), "{line}");
    assert!(line.contains("now tensor over 2 nodes"), "{line}");
    assert_eq!(
        server
            .api
            .metric("shardlab_requests_total{outcome=\"failed\"}"),
        0.0
    );
    // Served by the survivors from now on.
    let (status, again) = server
        .api
        .post("/v1/chat/completions", &body(topics[0], false));
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["choices"][0]["message"]["content"],
        expected[0].as_str()
    );
    assert!(server.stop());
}

#[test]
fn without_recovery_a_dead_node_gets_a_503_naming_it_then_the_server_replans_on_the_survivor() {
    let server = Server::start(
        &["--nodes", "local:2", "--layout", "tensor", "--no-recover"],
        None,
    );
    let chat = r#"{"model":"smollm2","messages":[{"role":"user","content":"Hi"}],"temperature":0,"max_tokens":8}"#;
    let (status, before) = server.api.post("/v1/chat/completions", chat);
    assert_eq!(status, 200, "{before}");
    let (pid, name) = node_of(&server, 0, 2);
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let (status, body) = server.api.post("/v1/chat/completions", chat);
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(&name), "{name}: {body}");
    // The server re-plans on the survivor by itself and answers as before.
    let (status, again) = server.api.post("/v1/chat/completions", chat);
    assert_eq!(status, 200, "{again}\n{}", server.log());
    assert_eq!(
        again["choices"][0]["message"]["content"], before["choices"][0]["message"]["content"],
        "greedy text after the re-plan"
    );
    assert!(
        server
            .log()
            .contains("re-planned tensor on 1 surviving nodes"),
        "{}",
        server.log()
    );
    assert_eq!(
        server
            .api
            .metric("shardlab_requests_total{outcome=\"failed\"}"),
        1.0
    );
    assert!(server.stop());
}
