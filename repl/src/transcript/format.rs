//! The transcript file format (documented in transcripts/README.md):
//! comment lines at the top, then each command on `> ` lines followed by
//! the output it should print. Output lines that start with `>` or `\` are
//! stored behind a `\`.

use crate::lines::{LineAssembler, FENCE};

/// The prompt marker that starts an input line.
pub const MARKER: &str = "> ";

#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// Comment and blank lines before the first command, kept as written.
    pub header: Vec<String>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The input lines, without the marker (several for a `"""` prompt).
    pub input: Vec<String>,
    /// 1-based line number of the first input line, for messages.
    pub line: usize,
    pub expected: Vec<String>,
}

impl Entry {
    /// The input as one command, `"""` blocks joined.
    pub fn command(&self) -> String {
        let mut a = LineAssembler::new();
        let mut last = String::new();
        for l in &self.input {
            if let Some(done) = a.push(l) {
                last = done;
            }
        }
        last
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("line {line}: the multi-line prompt opened here is never closed with \"\"\"")]
    Unclosed { line: usize },
    #[error("line {line}: output before the first `> ` command line: '{text}'")]
    OutputFirst { line: usize, text: String },
}

pub fn parse(text: &str) -> Result<Transcript, FormatError> {
    let mut header = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut assembler = LineAssembler::new();
    let mut open_at = 0;
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        // `lines` drops the CR of a CRLF but keeps any other trailing CR
        // (at end of file, or doubled); drop those too, so writing a file
        // back with plain newlines cannot change it (found by fuzzing).
        let raw = raw.trim_end_matches('\r');
        let input = raw
            .strip_prefix(MARKER)
            .or_else(|| (raw.trim_end() == ">").then_some(""));
        match input {
            Some(cmd) => {
                if !assembler.pending() {
                    open_at = lineno;
                    entries.push(Entry {
                        input: Vec::new(),
                        line: lineno,
                        expected: Vec::new(),
                    });
                }
                if let Some(e) = entries.last_mut() {
                    e.input.push(cmd.to_string());
                }
                assembler.push(cmd);
            }
            None if assembler.pending() => return Err(FormatError::Unclosed { line: open_at }),
            None => match entries.last_mut() {
                Some(e) => e.expected.push(unescape(raw).trim_end().to_string()),
                None if raw.trim().is_empty() || raw.starts_with('#') => {
                    header.push(raw.to_string())
                }
                None => {
                    return Err(FormatError::OutputFirst {
                        line: lineno,
                        text: raw.to_string(),
                    })
                }
            },
        }
    }
    if assembler.pending() {
        return Err(FormatError::Unclosed { line: open_at });
    }
    for e in &mut entries {
        trim_trailing_blank(&mut e.expected);
    }
    Ok(Transcript { header, entries })
}

impl Transcript {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for h in &self.header {
            s.push_str(h);
            s.push('\n');
        }
        for e in &self.entries {
            for l in &e.input {
                s.push_str(MARKER);
                s.push_str(l);
                s.push('\n');
            }
            for l in &e.expected {
                s.push_str(&escape(l));
                s.push('\n');
            }
        }
        s
    }
}

/// Output text as transcript lines: trailing spaces and blank lines dropped.
pub fn output_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    trim_trailing_blank(&mut lines);
    lines
}

fn trim_trailing_blank(lines: &mut Vec<String>) {
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
}

/// The `> ` lines for one input; a multi-line prompt becomes a `"""` block.
pub fn input_lines(command: &str) -> Vec<String> {
    if !command.contains('\n') {
        return vec![format!("{MARKER}{command}")];
    }
    let body = command.strip_prefix('\\').unwrap_or(command);
    std::iter::once(FENCE)
        .chain(body.lines())
        .chain(std::iter::once(FENCE))
        .map(|l| format!("{MARKER}{l}"))
        .collect()
}

/// The first lines of a recorded transcript.
pub fn header() -> String {
    format!(
        "# shardlab {} transcript. Replay: shardlab replay FILE; rewrite: --bless.\n\
         # Format and placeholders: transcripts/README.md\n",
        env!("CARGO_PKG_VERSION")
    )
}

pub fn escape(line: &str) -> String {
    if line.starts_with('>') || line.starts_with('\\') {
        format!("\\{line}")
    } else {
        line.to_string()
    }
}

fn unescape(line: &str) -> &str {
    line.strip_prefix('\\').unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# a comment\n\n> :set temperature 0\n> \"\"\"\n> two\n> lines\n> \"\"\"\n text out\n\\> quoted\n\n\n> :quit\n";

    #[test]
    fn parses_entries_and_round_trips() {
        let t = parse(SAMPLE).unwrap();
        assert_eq!(t.header, vec!["# a comment", ""]);
        assert_eq!(t.entries.len(), 3);
        assert!(t.entries[0].expected.is_empty());
        assert_eq!(t.entries[1].command(), "two\nlines");
        assert_eq!(t.entries[1].line, 4);
        assert_eq!(t.entries[1].expected, vec![" text out", "> quoted"]);
        assert_eq!(t.entries[2].command(), ":quit");
        // Writing it back keeps every command and expectation; runs of
        // blank lines between entries collapse, so line numbers may move.
        let again = parse(&t.to_text()).unwrap();
        assert_eq!(again.header, t.header);
        let strip = |t: &Transcript| -> Vec<(Vec<String>, Vec<String>)> {
            t.entries
                .iter()
                .map(|e| (e.input.clone(), e.expected.clone()))
                .collect()
        };
        assert_eq!(strip(&again), strip(&t));
    }

    #[test]
    fn a_carriage_return_at_end_of_file_is_a_line_end() {
        // Fuzz regressions (fuzz/corpus/transcript/regress-*-cr): a lone or
        // doubled CR came back as "" after a rewrite.
        assert_eq!(parse("\r").unwrap().header, vec![""]);
        assert_eq!(parse("\r\r\n#\r\r").unwrap().header, vec!["", "#"]);
        let t = parse("> :nodes\r").unwrap();
        assert_eq!(t.entries[0].input, vec![":nodes"]);
        assert_eq!(parse(&t.to_text()).unwrap(), t);
    }

    #[test]
    fn malformed_files_name_the_line() {
        assert_eq!(
            parse("> \"\"\"\n> open\n").unwrap_err(),
            FormatError::Unclosed { line: 1 }
        );
        assert!(matches!(
            parse("stray\n> :nodes\n").unwrap_err(),
            FormatError::OutputFirst { line: 1, .. }
        ));
    }

    #[test]
    fn multi_line_inputs_become_fenced_blocks() {
        assert_eq!(input_lines(":nodes"), vec!["> :nodes"]);
        assert_eq!(
            input_lines("a\nb"),
            vec!["> \"\"\"", "> a", "> b", "> \"\"\""]
        );
        assert_eq!(output_lines("x  \ny\n\n"), vec!["x", "y"]);
    }
}
