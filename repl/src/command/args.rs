//! The words after a command's name: quoting, positional words and
//! `--flag VALUE` pairs, checked against the flags the command declares.

use super::{closest, CommandSpec, ParseError};

/// Splits on whitespace; single or double quotes group words.
pub fn split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unclosed {q} quote"));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// A command's arguments, flags separated from positional words.
#[derive(Debug)]
pub struct Args<'a> {
    pub spec: &'static CommandSpec,
    /// The text after the command name, as typed.
    pub raw: &'a str,
    pub positional: Vec<String>,
    flags: Vec<(String, String)>,
    /// The first malformed flag, reported by [`Args::check`].
    problem: Option<ParseError>,
}

impl<'a> Args<'a> {
    pub fn new(spec: &'static CommandSpec, raw: &'a str, words: Vec<String>) -> Self {
        let mut positional = Vec::new();
        let mut flags = Vec::new();
        let mut problem = None;
        let mut it = words.into_iter();
        while let Some(w) = it.next() {
            let Some(name) = w.strip_prefix("--") else {
                positional.push(w);
                continue;
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (name.to_string(), None),
            };
            if !spec.flags.contains(&name.as_str()) {
                problem.get_or_insert(ParseError {
                    message: if spec.flags.is_empty() {
                        format!("takes no flags, found --{name}")
                    } else {
                        format!("unknown flag --{name}")
                    },
                    suggestion: closest(&name, spec.flags.iter().copied())
                        .map(|f| format!("--{f}")),
                });
                continue;
            }
            match value.or_else(|| it.next()) {
                Some(v) => flags.push((name, v)),
                None => {
                    problem.get_or_insert(ParseError::new(format!("--{name} needs a value")));
                }
            }
        }
        Args {
            spec,
            raw,
            positional,
            flags,
            problem,
        }
    }

    /// Fails on the first malformed flag.
    pub fn check(&self) -> Result<(), ParseError> {
        match &self.problem {
            Some(p) => Err(p.clone()),
            None => Ok(()),
        }
    }

    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A flag's value parsed as a number.
    pub fn number_flag(&self, name: &str) -> Result<Option<usize>, ParseError> {
        self.flag(name)
            .map(|v| number(v, &format!("--{name}")))
            .transpose()
    }

    /// Refuses more than `n` positional words.
    pub fn at_most(&self, n: usize) -> Result<(), ParseError> {
        self.check()?;
        if self.positional.len() > n {
            let extra = &self.positional[n..].join(" ");
            return Err(ParseError::new(if n == 0 {
                format!("takes no arguments, found '{extra}'")
            } else {
                format!("unexpected '{extra}'")
            }));
        }
        Ok(())
    }
}

/// A whole number, or an error naming `what`.
pub fn number(text: &str, what: &str) -> Result<usize, ParseError> {
    text.trim()
        .replace('_', "")
        .parse()
        .map_err(|_| ParseError::new(format!("{what} must be a whole number, got '{text}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_and_quotes() {
        assert_eq!(split(" a  'b c' \"d\"e ").unwrap(), vec!["a", "b c", "de"]);
        assert_eq!(split("''").unwrap(), vec![""]);
        assert!(split("\"open").unwrap_err().contains("unclosed"));
    }
}
