//! Tab completion and hints, both read from the command table: command
//! names, each command's first-argument words, flags, model aliases and
//! cached models, node addresses and names used this session, file paths.

use std::borrow::Cow;

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::{Hint, Hinter};
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use crate::command::{lookup, Completion, COMMANDS};

/// What completion knows beyond the table; refreshed after each command.
#[derive(Default)]
pub struct ShellHelper {
    pub models: Vec<String>,
    pub addresses: Vec<String>,
    pub node_names: Vec<String>,
    files: FilenameCompleter,
}

impl ShellHelper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Candidates for the word being typed, with where it starts.
    pub fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<Pair>) {
        let before = &line[..pos];
        let Some(body) = before.strip_prefix(':') else {
            return (pos, Vec::new());
        };
        let word_start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[word_start..];
        if word_start == 0 {
            let pairs = COMMANDS
                .iter()
                .filter(|c| c.name.starts_with(body))
                .map(|c| Pair {
                    display: format!(":{}", c.name),
                    replacement: format!(":{} ", c.name),
                })
                .collect();
            return (0, pairs);
        }
        let name = body.split_whitespace().next().unwrap_or("");
        let Some(spec) = lookup(name) else {
            return (pos, Vec::new());
        };
        if let Some(flag) = word.strip_prefix("--") {
            return (
                word_start,
                words(
                    spec.flags.iter().map(|f| format!("--{f}")),
                    &format!("--{flag}"),
                ),
            );
        }
        let arg_index = before[..word_start].split_whitespace().count() - 1;
        let pool: Vec<String> = match (spec.completion, arg_index) {
            (Completion::Path, _) => {
                return self
                    .files
                    .complete_path(line, pos)
                    .unwrap_or((pos, Vec::new()))
            }
            (Completion::Words(ws), 0) => ws.iter().map(|w| w.to_string()).collect(),
            (Completion::Words(["temperature", ..]), 1) if before.contains(" chat ") => {
                vec!["on".into(), "off".into()]
            }
            (Completion::Models, 0) => {
                let (start, mut files) = self
                    .files
                    .complete_path(line, pos)
                    .unwrap_or((pos, Vec::new()));
                if word.contains('/') {
                    return (start, files);
                }
                let mut pairs = words(self.models.iter().cloned(), word);
                pairs.append(&mut files);
                return (word_start, pairs);
            }
            (Completion::Nodes, _) => std::iter::once("local".to_string())
                .chain(self.addresses.iter().cloned())
                .collect(),
            (Completion::Commands, 0) => COMMANDS.iter().map(|c| c.name.to_string()).collect(),
            (Completion::NodeNames, 0) => self.node_names.clone(),
            _ => Vec::new(),
        };
        (word_start, words(pool.into_iter(), word))
    }

    /// Usage after a complete command name, or the rest of a unique prefix.
    pub fn hint_for(&self, line: &str) -> Option<CommandHint> {
        let body = line.strip_prefix(':')?;
        if !body.contains(char::is_whitespace) {
            let matching: Vec<_> = COMMANDS
                .iter()
                .filter(|c| c.name.starts_with(body))
                .collect();
            return match matching.as_slice() {
                [only] if only.name == body => usage_args(only.usage).map(|u| CommandHint {
                    display: format!(" {u}"),
                    completion: None,
                }),
                [only] if !body.is_empty() => Some(CommandHint {
                    display: only.name[body.len()..].to_string(),
                    completion: Some(only.name[body.len()..].to_string()),
                }),
                _ => None,
            };
        }
        let (name, rest) = body.split_once(char::is_whitespace)?;
        let spec = lookup(name)?;
        if rest.trim().is_empty() {
            return usage_args(spec.usage).map(|u| CommandHint {
                display: if line.ends_with(' ') {
                    u
                } else {
                    format!(" {u}")
                },
                completion: None,
            });
        }
        None
    }
}

/// The part of a usage line after the command name.
fn usage_args(usage: &str) -> Option<String> {
    let (_, args) = usage.split_once(' ')?;
    Some(args.to_string())
}

fn words(pool: impl Iterator<Item = String>, prefix: &str) -> Vec<Pair> {
    let mut v: Vec<Pair> = pool
        .filter(|w| w.starts_with(prefix))
        .map(|w| Pair {
            display: w.clone(),
            replacement: w,
        })
        .collect();
    v.dedup_by(|a, b| a.replacement == b.replacement);
    v
}

pub struct CommandHint {
    display: String,
    completion: Option<String>,
}

impl Hint for CommandHint {
    fn display(&self) -> &str {
        &self.display
    }
    fn completion(&self) -> Option<&str> {
        self.completion.as_deref()
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(self.candidates(line, pos))
    }
}

impl Hinter for ShellHelper {
    type Hint = CommandHint;

    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<CommandHint> {
        (pos == line.len()).then(|| self.hint_for(line)).flatten()
    }
}

impl Highlighter for ShellHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        false
    }
}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn replacements(h: &ShellHelper, line: &str) -> (usize, Vec<String>) {
        let (start, pairs) = h.candidates(line, line.len());
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn completes_commands_arguments_and_flags() {
        let mut h = ShellHelper::new();
        h.models = vec!["smollm2".into()];
        h.addresses = vec!["10.0.0.2:7070".into()];
        assert_eq!(replacements(&h, ":sha"), (0, vec![":shard ".to_string()]));
        assert_eq!(replacements(&h, ":shard pi").1, vec!["pipeline"]);
        assert_eq!(replacements(&h, ":plan tensor --la").1, vec!["--layers"]);
        assert_eq!(replacements(&h, ":plan be").1, vec!["best"]);
        assert_eq!(replacements(&h, ":shard best --par").1, vec!["--parallel"]);
        assert_eq!(
            replacements(&h, ":load smo"),
            (6, vec!["smollm2".to_string()])
        );
        assert_eq!(replacements(&h, ":connect 10.").1, vec!["10.0.0.2:7070"]);
        assert_eq!(replacements(&h, ":set chat o").1, vec!["on", "off"]);
        assert_eq!(replacements(&h, ":help st").1, vec!["stats"]);
        assert!(replacements(&h, "plain prompt").1.is_empty());
    }

    #[test]
    fn hints_show_usage_and_unique_prefixes() {
        let h = ShellHelper::new();
        let hint = h.hint_for(":plan ").unwrap();
        assert!(
            hint.display().starts_with("tensor|expert|pipeline"),
            "{}",
            hint.display()
        );
        assert_eq!(hint.completion(), None);
        let prefix = h.hint_for(":dis").unwrap();
        assert_eq!(prefix.display(), "connect");
        assert_eq!(prefix.completion(), Some("connect"));
        assert!(h.hint_for(":s").is_none(), "ambiguous");
        assert!(h.hint_for("hello").is_none());
    }
}
