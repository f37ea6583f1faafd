//! Joining input lines into commands: a line of `"""` opens a multi-line
//! prompt and another closes it. The shell, `--script` files and
//! transcripts all read input through this.

/// The marker line that opens and closes a multi-line prompt.
pub const FENCE: &str = "\"\"\"";

#[derive(Debug, Default)]
pub struct LineAssembler {
    open: Option<Vec<String>>,
}

impl LineAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one line; returns the complete input once there is one.
    pub fn push(&mut self, line: &str) -> Option<String> {
        let is_fence = line.trim() == FENCE;
        match (&mut self.open, is_fence) {
            (None, true) => {
                self.open = Some(Vec::new());
                None
            }
            (None, false) => Some(line.to_string()),
            (Some(lines), false) => {
                lines.push(line.to_string());
                None
            }
            (Some(_), true) => {
                let text = self.open.take().unwrap_or_default().join("\n");
                // A multi-line input is always a prompt, even if it starts with a
                // colon, also after blank lines or spaces, which the command
                // parser trims (found by fuzzing).
                let start = text.trim_start();
                Some(if start.starts_with(':') {
                    format!("\\{start}")
                } else {
                    text
                })
            }
        }
    }

    /// Whether a multi-line prompt is open.
    pub fn pending(&self) -> bool {
        self.open.is_some()
    }

    /// Drops a half-typed multi-line prompt (Ctrl-C).
    pub fn clear(&mut self) {
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_join_lines_into_one_prompt() {
        let mut a = LineAssembler::new();
        assert_eq!(a.push(":nodes").as_deref(), Some(":nodes"));
        assert_eq!(a.push("\"\"\""), None);
        assert!(a.pending());
        assert_eq!(a.push("first"), None);
        assert_eq!(a.push(""), None);
        assert_eq!(a.push("third"), None);
        assert_eq!(a.push(" \"\"\" ").as_deref(), Some("first\n\nthird"));
        assert!(!a.pending());
        a.push(FENCE);
        a.push(":not a command");
        assert_eq!(a.push(FENCE).as_deref(), Some("\\:not a command"));
        a.push(FENCE);
        a.clear();
        assert_eq!(a.push("x").as_deref(), Some("x"));
    }

    #[test]
    fn a_colon_after_leading_blanks_is_still_a_prompt() {
        // Fuzz regression (fuzz/corpus/command/regress-blank-then-colon): a
        // block opening with a blank line ran its ':' line as a command.
        let mut a = LineAssembler::new();
        for line in [FENCE, "", "  :quit", "bye"] {
            assert_eq!(a.push(line), None);
        }
        let text = a.push(FENCE).unwrap_or_default();
        assert_eq!(text, "\\:quit\nbye");
        assert_eq!(
            crate::parse(&text),
            Ok(crate::Command::Prompt(":quit\nbye".into()))
        );
        a.push(FENCE);
        a.clear();
        assert_eq!(a.push("x").as_deref(), Some("x"));
    }
}
