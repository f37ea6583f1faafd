//! Replaying a transcript: each file runs in one fresh session; each command's
//! output is rendered with placeholders and compared line by line with
//! what the file expects. A mismatch yields a unified diff; `bless`
//! rewrites the file with what the session printed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use similar::TextDiff;

use super::format::{self, output_lines, FormatError, Transcript};
use super::pattern::LinePattern;
use super::Transcriber;
use crate::output::Output;
use crate::session::Session;

#[derive(Debug)]
pub struct ReplayOutcome {
    pub path: PathBuf,
    pub commands: usize,
    pub passed: bool,
    /// Unified diff, expected against actual; empty when passed.
    pub diff: String,
    pub seconds: f64,
    /// Whether `bless` rewrote the file.
    pub rewritten: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Format { path: PathBuf, source: FormatError },
}

/// Runs `path` against `session` (fresh, owned: it is shut down after).
pub fn replay(
    path: &Path,
    mut session: Session,
    bless: bool,
) -> Result<ReplayOutcome, ReplayError> {
    let io = |source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let expected = format::parse(&text).map_err(|source| ReplayError::Format {
        path: path.to_path_buf(),
        source,
    })?;
    let started = Instant::now();
    let mut actual = Transcript {
        header: expected.header.clone(),
        entries: Vec::new(),
    };
    let mut passed = true;
    let mut quit = false;
    for entry in &expected.entries {
        let lines = if quit {
            Vec::new()
        } else {
            let mut t = Transcriber::new(true);
            let out = session.exec_line(&entry.command(), &mut t);
            quit = matches!(out, Output::Quit);
            t.output(&out);
            output_lines(&t.finish())
        };
        let merged = merge(&entry.expected, lines);
        passed &= merged == entry.expected;
        let mut e = entry.clone();
        e.expected = merged;
        actual.entries.push(e);
    }
    session.shutdown();
    let (want, got) = (expected.to_text(), actual.to_text());
    let diff = if passed {
        String::new()
    } else {
        TextDiff::from_lines(&want, &got)
            .unified_diff()
            .context_radius(3)
            .header(&path.display().to_string(), "actual")
            .to_string()
    };
    let rewritten = bless && got != text;
    if rewritten {
        std::fs::write(path, &got).map_err(io)?;
    }
    Ok(ReplayOutcome {
        path: path.to_path_buf(),
        commands: expected.entries.len(),
        passed,
        diff,
        seconds: started.elapsed().as_secs_f64(),
        rewritten,
    })
}

/// The actual lines, except that a line matching its expected line (with
/// placeholders) is reported as the expected one, so diffs and blessed
/// files show only real changes and keep hand-written placeholders.
fn merge(expected: &[String], actual: Vec<String>) -> Vec<String> {
    actual
        .into_iter()
        .enumerate()
        .map(|(i, line)| match expected.get(i) {
            Some(want) if LinePattern::new(want).matches(&line) => want.clone(),
            _ => line,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_lines_keep_their_placeholders() {
        let expected = vec!["took {time}".to_string(), "exact".to_string()];
        let merged = merge(
            &expected,
            vec!["took 5 ms".into(), "exakt".into(), "extra".into()],
        );
        assert_eq!(merged, vec!["took {time}", "exakt", "extra"]);
    }
}
