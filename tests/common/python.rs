//! Running Python from the tests: the virtual environment
//! `scripts/jupyter-venv` makes (once, even when several tests or test
//! processes ask at the same time) with jupyter_client, nbclient and the
//! official `openai` client, and a bounded run of any command.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shardlab_engine::model::store::ModelStore;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` to completion or kills it after `limit`; (success, stdout, stderr).
pub fn run_bounded(mut cmd: Command, limit: Duration) -> (bool, String, String) {
    let out_dir = tempfile::tempdir().unwrap();
    let (out, err) = (out_dir.path().join("out"), out_dir.path().join("err"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let (stdout, mut stderr) = (read(&out), read(&err));
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {limit:?})"));
    }
    (status.is_some_and(|s| s.success()), stdout, stderr)
}

/// The venv's python, made on first use in the model store's home. The
/// tests of this binary ask once (the `OnceLock`); the script's own lock
/// covers other processes making or using the same venv.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let store = ModelStore::from_env().expect("the model store has a home");
        let mut cmd = Command::new(root().join("scripts/jupyter-venv"));
        cmd.arg(store.home().join("venv-jupyter"));
        let (ok, stdout, stderr) = run_bounded(cmd, Duration::from_secs(600));
        assert!(ok, "scripts/jupyter-venv failed:\n{stdout}\n{stderr}");
        PathBuf::from(
            stdout
                .trim()
                .lines()
                .last()
                .expect("the script prints the python"),
        )
    })
}
