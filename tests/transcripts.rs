//! Every transcript in transcripts/ replays green: each starts real node
//! processes on loopback (`:connect local N`) and checks the session's
//! output against the recorded one (README there for the format).

use std::path::PathBuf;
use std::process::Command;

fn transcripts() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("transcripts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_transcript_replays_without_a_diff() {
    let files = transcripts();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    for required in [
        "quickstart",
        "pipeline",
        "uneven-tensor",
        "too-big",
        "bad-input",
        "node-killed",
        "moe",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "transcripts/{required}.txt is missing"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_shardlab"))
        .arg("replay")
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "replay failed:\n{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        files.len(),
        "{stdout}"
    );
}

#[test]
fn a_changed_expectation_fails_with_a_unified_diff_and_bless_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.txt");
    // No nodes: the parser and the session's own messages only.
    std::fs::write(
        &path,
        "# a test\n> :set temprature 0\nerror: wrong\n> :help quit\n",
    )
    .unwrap();
    let run = |bless: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shardlab"));
        c.arg("replay").arg(&path);
        if bless {
            c.arg("--bless");
        }
        c.output().unwrap()
    };
    let failed = run(false);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(!failed.status.success());
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("-error: wrong"), "{stdout}");
    assert!(
        stdout.contains("+error: :set: no setting 'temprature'"),
        "{stdout}"
    );
    assert!(stdout.contains("did you mean temperature?"), "{stdout}");
    assert!(run(true).status.success());
    let blessed = std::fs::read_to_string(&path).unwrap();
    assert!(blessed.starts_with("# a test\n> :set temprature 0\nerror: :set"));
    assert!(blessed.contains("> :help quit\n:quit — leave"), "{blessed}");
    assert!(run(false).status.success(), "a blessed file replays green");
}

#[test]
fn script_mode_runs_commands_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.txt");
    std::fs::write(&script, ":help load\n:set max_tokens 3\n:set\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shardlab"))
        .args(["shell", "--script"])
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("> :help load\n:load — open a model"),
        "{stdout}"
    );
    assert!(stdout.contains("│ max_tokens     ┆ 3 "), "{stdout}");
    std::fs::write(&script, ":nope\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shardlab"))
        .args(["shell", "--script"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a failed command fails the script");
}
