//! The Jupyter kernel driven by real Jupyter clients: jupyter_client and
//! nbclient, from the virtual environment `scripts/jupyter-venv` makes (once,
//! even when several tests or test processes ask at the same time).
//! Each test runs one script of tests/kernel/ against the built binary.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::python::{python, run_bounded};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_script(script: &str, args: &[&str], limit: Duration) -> String {
    let dir = root().join("tests/kernel");
    let mut cmd = Command::new(python());
    cmd.arg(dir.join(script))
        .args(args)
        .current_dir(root())
        .env("PYTHONPATH", &dir)
        .env("SHARDLAB_EXE", env!("CARGO_BIN_EXE_shardlab"));
    let (ok, stdout, stderr) = run_bounded(cmd, limit);
    assert!(ok, "{script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l == "ok"), "{stdout}\n{stderr}");
    stdout
}

#[test]
fn jupyter_client_runs_help_and_reports_errors_inspect_and_is_complete() {
    run_script("basic.py", &[], Duration::from_secs(120));
}

#[test]
fn a_badly_signed_message_is_dropped_not_executed() {
    run_script("bad_signature.py", &[], Duration::from_secs(120));
}

#[test]
fn completion_of_sh_offers_shard() {
    run_script("complete.py", &[], Duration::from_secs(120));
}

#[test]
fn interrupt_stops_a_long_generation_and_the_session_goes_on() {
    run_script("interrupt.py", &[], Duration::from_secs(240));
}

#[test]
fn a_cell_starts_the_server_which_serves_between_cells_until_serve_off() {
    run_script("serve.py", &[], Duration::from_secs(240));
}

#[test]
fn a_node_killed_mid_generation_in_a_cell_is_recovered_from_with_the_same_text() {
    run_script("recover.py", &[], Duration::from_secs(240));
}

#[test]
fn restart_answers_again_and_shutdown_exits_and_stops_local_nodes() {
    run_script("lifecycle.py", &[], Duration::from_secs(120));
}

#[test]
fn every_notebook_executes_without_errors_and_with_rich_output() {
    let mut notebooks: Vec<String> = std::fs::read_dir(root().join("notebooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipynb"))
        .map(|p| p.display().to_string())
        .collect();
    notebooks.sort();
    assert!(
        notebooks.iter().any(|n| n.ends_with("quickstart.ipynb")),
        "{notebooks:?}"
    );
    let args: Vec<&str> = notebooks.iter().map(String::as_str).collect();
    let out = run_script("notebooks.py", &args, Duration::from_secs(900));
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        notebooks.len(),
        "{out}"
    );
}

#[test]
fn install_and_uninstall_write_and_remove_the_kernelspec() {
    let prefix = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_shardlab");
    let run = |action: &str| {
        Command::new(exe)
            .args(["kernel", action, "--prefix"])
            .arg(prefix.path())
            .output()
            .unwrap()
    };
    assert!(run("install").status.success());
    let spec = prefix
        .path()
        .join("share/jupyter/kernels/shardlab/kernel.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&spec).unwrap()).unwrap();
    assert_eq!(v["argv"][0], exe);
    assert_eq!(v["argv"][1], "kernel");
    assert_eq!(v["display_name"], "shardlab");
    assert!(run("uninstall").status.success());
    assert!(!spec.exists());
    assert!(!run("uninstall").status.success(), "nothing left to remove");
}
